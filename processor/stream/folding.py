"""Stage-1 batch folding, independent of Faust: bytes in, state changes and output records out.

The agent hands over one partition's messages of a batch; this module decodes them, folds them
through the domain core and returns the records to send and the states to write back (once per
partner per batch). Every partition keeps a `PartitionMeta` next to its partners: the offset of the
last message it applied (a message at or below it is a redelivery and is skipped) and the scope of
`PeriodClosed` (which periods this partition's partners have closed). The replays fold the same
log through the same domain core (`processor.replay.Replayer`), so live and replay cannot drift.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
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


class Contiguous:
    """The messages of one partition a state applies next, given the offset of the last one it
    applied (`watermark`). Offsets of a partition are contiguous, so that is exactly
    `watermark + 1`, then the one after, and so on: a message at or below the watermark is a
    redelivery (counted in `skipped`), and one beyond `watermark + 1` means messages in between
    were not delivered (Faust's seek to a committed offset, messages still queued from before a
    seek back): iteration stops there and `jumped_to` says where, rather than step over them.
    After iteration `watermark` is the last offset handed out. Both stage agents use it."""

    def __init__(self, items: Iterable[Any], watermark: int,
                 offset_of: Callable[[Any], int] = lambda item: item.offset) -> None:
        self._items, self._offset_of = items, offset_of
        self.watermark = watermark
        self.skipped = 0
        self.jumped_to: int | None = None

    def __iter__(self) -> Iterator[Any]:
        for item in self._items:
            offset = self._offset_of(item)
            if offset <= self.watermark:
                self.skipped += 1
                continue
            if offset > self.watermark + 1:
                self.jumped_to = offset
                return
            self.watermark = offset
            yield item


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
    """Fold one partition's messages (in offset order) into the partition's partners: those
    `Contiguous` hands out from the partition's watermark, which follows each one."""
    result = BatchResult()
    store = BatchStore(load, meta, result.dirty)
    run = Contiguous(messages, meta.watermark)
    for msg in run:
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
    result.skipped, result.jumped_to = run.skipped, run.jumped_to
    return result
