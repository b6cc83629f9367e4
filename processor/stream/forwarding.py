"""Stage-1 forwards to stage 2 travel in bundles: one message per stage-2 partition per batch.

Stage 1 forwards about 1.5 records an event to the cross-partner detectors (an order claim and a
sale by customer for every sale, partner status and deals), keyed by `order:<id>` or
`customer:<id>`. As one Kafka message each, they were more than half of everything the worker
produced, and each cost a produce, a key hash, a consume and a Faust event in stage 2
(docs/performance.md). Here a batch's forwards are grouped by the stage-2 partition their key hashes
to, with the Kafka default partitioner's murmur2 (so a key lands where a record keyed by it would),
and each group goes as one message, in the order stage 1 made them:

    {"bundle":[["order:O1",{...record...}],["customer:C7",{...}],...]}

A bundle is cut at `limit` bytes, so none outgrows a message. Its key names where it came from
(`stage1:<partitions>`); stage 2 reads each record's own key from the bundle.

Stage 2 reads both this and the earlier form, one record a message keyed by its stage-2 key, so a
log written before bundles (or by another producer) is still read. Anything else is refused with
the reason, one dead letter per unreadable message or bundled record (`stage2.py`).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from json.encoder import encode_basestring
from typing import Any

from processor import topics
from processor.codec.compact_json import dumps_sorted
from processor.stream.folding import OutRecord
from processor.topics import partition_of

#: a bundle is cut before it reaches this many bytes (of INCENTIVES_MAX_MESSAGE_BYTES, whichever is less)
BUNDLE_BYTES = 256 * 1024
_OPEN, _CLOSE = b'{"bundle":[', b"]}"


class NotStage2Input(ValueError):
    """A message on the repartition topic that is neither a bundle nor a single keyed record."""


def bundles(forwards: Iterable[tuple[str, dict[str, Any]]], partitions: int, source_partition: int | str,
            limit: int = BUNDLE_BYTES) -> list[OutRecord]:
    """The messages carrying `forwards` ((stage-2 key, record), in order): one per stage-2 partition,
    more when one would pass `limit` bytes."""
    limit = min(limit, BUNDLE_BYTES)
    key = f"stage1:{source_partition}".encode()
    open_: dict[int, tuple[list[bytes], int]] = {}
    out: list[OutRecord] = []
    for fwd_key, record in forwards:
        item = b"[" + encode_basestring(fwd_key).encode() + b"," + dumps_sorted(record) + b"]"
        p = partition_of(fwd_key.encode(), partitions)
        items, size = open_.get(p, ([], len(_OPEN) + len(_CLOSE)))
        if items and size + len(item) + 1 > limit:
            out.append(_bundle(key, items, p))
            items, size = [], len(_OPEN) + len(_CLOSE)
        items.append(item)
        open_[p] = (items, size + len(item) + 1)
    out += [_bundle(key, items, p) for p, (items, _) in sorted(open_.items())]
    return out


def _bundle(key: bytes, items: list[bytes], partition: int) -> OutRecord:
    return OutRecord(topics.REPARTITION, key, _OPEN + b",".join(items) + _CLOSE, partition=partition)


def read(key: bytes | None, value: bytes | None) -> tuple[bool, list[tuple[str | None, Any]]]:
    """Whether a repartition message is a bundle, and the (stage-2 key, record) pairs it carries.
    A bundled record is returned as it was read, with key None if it is not a `[key, record]` pair
    (stage 2 refuses such a record alone); a message that is neither form raises `NotStage2Input`."""
    if value is None:
        raise NotStage2Input("a record without a value (a tombstone)")
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotStage2Input(f"not JSON: {exc}") from exc
    if isinstance(doc, dict) and "bundle" in doc:
        items = doc["bundle"]
        if not isinstance(items, list) or not items:
            raise NotStage2Input("a bundle without records")
        return True, [(item[0], item[1]) if _is_pair(item) else (None, item) for item in items]
    if isinstance(doc, dict) and "kind" in doc:
        if key is None:
            raise NotStage2Input("a single stage-2 record without a key")
        try:
            return False, [(key.decode(), doc)]
        except UnicodeDecodeError as exc:
            raise NotStage2Input(f"a key that is not UTF-8: {exc}") from exc
    raise NotStage2Input("neither a bundle nor a stage-2 record")


def _is_pair(item: Any) -> bool:
    return isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and item[0] != ""
