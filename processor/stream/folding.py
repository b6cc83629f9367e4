"""Stage-1 batch folding, independent of Faust: bytes in, state changes and output records out.

The agent hands over one partition's messages of a batch; this module decodes them, folds them
through the domain core and returns the records to send and the states to write back (once per
partner per batch). Every partition keeps a `PartitionMeta` next to its partners: the offset of the
last message it applied (a message at or below it is a redelivery and is skipped) and the scope of
`PeriodClosed` (which periods this partition's partners have closed). The Kafka replay uses this
same code, so live and replay cannot drift.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from processor import topics
from processor.codec import InvalidEvent, decode
from processor.domain.engine import Scope, Stage1
from processor.domain.outcome import Outcome
from processor.domain.state import PartnerState

META_PREFIX = "__partition__:"


def meta_key(partition: int) -> str:
    return f"{META_PREFIX}{partition}"


@dataclass
class PartitionMeta:
    partition: int
    watermark: int = -1                     # offset of the last applied message
    scope: Scope = field(default_factory=Scope)
    partners: set[str] = field(default_factory=set)


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes
    timestamp_ms: int | None = None


@dataclass
class OutRecord:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class BatchResult:
    records: list[OutRecord] = field(default_factory=list)
    dirty: dict[str, PartnerState] = field(default_factory=dict)
    outcomes: list[tuple[str, Outcome]] = field(default_factory=list)     # (event_type, outcome)
    skipped: int = 0
    #: the offset of a message beyond watermark + 1, where the fold stopped: the partition must be
    #: read again from watermark + 1 (see `processor.stream.rewind`)
    jumped_to: int | None = None


def _json(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class BatchStore:
    """A PartnerStore over the table: reads each partner once per batch, writes back once."""

    def __init__(self, load: Callable[[str], PartnerState | None], meta: PartitionMeta,
                 dirty: dict[str, PartnerState]) -> None:
        self._load = load
        self.meta = meta
        self.dirty = dirty

    def get(self, partner_id: str) -> PartnerState | None:
        st = self.dirty.get(partner_id)
        return st if st is not None else self._load(partner_id)

    def put(self, state: PartnerState) -> None:
        self.dirty[state.partner_id] = state
        self.meta.partners.add(state.partner_id)

    def partner_ids(self) -> Iterable[str]:
        return sorted(self.meta.partners)


def outcome_records(out: Outcome, original: bytes, where: str) -> list[OutRecord]:
    """The output records of one event's outcome; a rejection carries the original bytes."""
    records: list[OutRecord] = []
    for e, encoded in zip(out.ledger, out.ledger_json, strict=True):
        records.append(OutRecord(topics.POINTS_LEDGER, e["partner_id"].encode(), encoded))
    for t in out.tier_changes:
        records.append(OutRecord(topics.TIER_CHANGES, t["partner_id"].encode(), _json(t)))
    for r in out.redemptions:
        records.append(OutRecord(topics.REDEMPTION_DECISIONS, r["partner_id"].encode(), _json(r)))
    for a in out.alerts:
        records.append(OutRecord(topics.ANOMALY_ALERTS, a["partner_id"].encode(), _json(a)))
    for rej in out.rejections:
        headers = [("reason", rej["reason"].encode()), ("source", where.encode()),
                   ("event_id", (rej["event_id"] or "").encode()),
                   ("rejection", _json(rej))]
        records.append(OutRecord(topics.DLQ, (rej.get("partner_id") or "").encode(), original, headers))
    for key, fwd in out.forwards:
        records.append(OutRecord(topics.REPARTITION, key.encode(), _json(fwd)))
    return records


def fold_partition(stage1: Stage1, meta: PartitionMeta, load: Callable[[str], PartnerState | None],
                   messages: Sequence[Message]) -> BatchResult:
    """Fold one partition's messages (in offset order) into the partition's partners.

    Offsets of a partition are contiguous, so the state applies exactly `watermark + 1` next: a
    message at or below the watermark is a redelivery (skipped), and one beyond `watermark + 1`
    means messages in between were not delivered (a seek after a restart, a stale fetch after a
    rewind): the fold stops there and says where to resume, rather than step over them."""
    result = BatchResult()
    store = BatchStore(load, meta, result.dirty)
    for msg in messages:
        if msg.offset <= meta.watermark:
            result.skipped += 1          # applied before a restart: state already has it
            continue
        if msg.offset > meta.watermark + 1:
            result.jumped_to = msg.offset
            break
        meta.watermark = msg.offset
        where = f"{msg.topic}:{msg.partition}:{msg.offset}"
        try:
            event = decode(msg.value)
        except InvalidEvent as exc:
            out = stage1.reject(store, exc.event_id, exc.partner_id, exc.event_type, exc.reason, None, where)
            result.outcomes.append((exc.event_type or "undecodable", out))
            result.records += outcome_records(out, msg.value, where)
            continue
        out = stage1.apply(store, meta.scope, event)
        result.outcomes.append((event["event_type"], out))
        result.records += outcome_records(out, msg.value, where)
    return result
