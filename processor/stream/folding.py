"""Stage-1 batch folding, independent of Faust: bytes in, state changes and output records out.

The agent hands over one partition's messages of a batch; this module decodes them, folds them
through the domain core into the partition's `PartitionState` (`partition_state.py`: how the state
is stored) and returns the records to send, the stage-2 forwards (sent in bundles:
`forwarding.py`) and which partners changed. The partition's meta holds
the offset of the last message applied (a message at or below it is a redelivery and is skipped)
and the scope of `PeriodClosed`. The replays fold the same log through the same domain core
(`processor.replay.Replayer`), so live and replay cannot drift.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from processor import topics
from processor.codec import InvalidEvent, decode
from processor.codec.compact_json import dumps_sorted
from processor.collector import collector_paused
from processor.domain.engine import Stage1
from processor.domain.outcome import Outcome
from processor.stream.log_check import digest
from processor.stream.partition_state import PartitionMeta, PartitionState

__all__ = ["BatchResult", "Contiguous", "Message", "OutRecord", "PartitionMeta", "PartitionState",
           "fold_partition", "outcome_records"]

@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes | None                 # None: a record without a value (a tombstone)
    timestamp_ms: int | None = None
    key: bytes | None = None

    @property
    def where(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None        # None: by the key (a bundle of forwards names its own)


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
        self.last: Any = None                # the last item handed out

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
            self.last = item
            yield item


@dataclass
class BatchResult:
    records: list[OutRecord] = field(default_factory=list)
    dirty: dict[str, int] = field(default_factory=dict)   # partner -> offset of its last message
    outcomes: list[tuple[str, Outcome]] = field(default_factory=list)     # (event_type, outcome)
    #: (stage-2 key, record) in order: sent in bundles (`forwarding.bundles`), not in `records`
    forwards: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    skipped: int = 0
    #: the offset of a message beyond watermark + 1, where the fold stopped: the partition must be
    #: read again from watermark + 1 (see `processor.stream.rewind`)
    jumped_to: int | None = None


def _json(record: dict[str, Any]) -> bytes:
    """Compact JSON with sorted keys (`json.dumps(record, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`, byte for byte: `compact_json`)."""
    return dumps_sorted(record)


def dlq_headers(msg: Message, rejection: dict[str, Any], error_class: str, error_text: str,
                stage: str = "stage1") -> list[tuple[str, bytes]]:
    """Where a dead letter came from and why, as Kafka Connect's dead-letter headers do (the stage
    that refused it: `stage1` for partner events, `stage2` for forwarded records), plus the
    rejection itself (read by the ClickHouse sink)."""
    return [("reason", rejection["reason"].encode()), ("source", msg.where.encode()), ("stage", stage.encode()),
            ("event_id", (rejection["event_id"] or "").encode()), ("rejection", _json(rejection)),
            ("error.class", error_class.encode()), ("error.message", error_text.encode(errors="replace")),
            ("source.topic", msg.topic.encode()), ("source.partition", str(msg.partition).encode()),
            ("source.offset", str(msg.offset).encode())]


#: A dead letter carries the original key and value up to this size; a larger one (the broker may
#: hold a record larger than the worker may produce) is cut, with headers giving the original size:
#: the whole record stays in the source topic at the offset the headers name.
DLQ_MAX_PART_BYTES = 256 * 1024


def dead_letter(msg: Message, headers: list[tuple[str, bytes]]) -> OutRecord:
    key, value = msg.key, msg.value
    if key is not None and len(key) > DLQ_MAX_PART_BYTES:
        headers = [*headers, ("key.truncated.from", str(len(key)).encode())]
        key = key[:DLQ_MAX_PART_BYTES]
    if value is not None and len(value) > DLQ_MAX_PART_BYTES:
        headers = [*headers, ("value.truncated.from", str(len(value)).encode())]
        value = value[:DLQ_MAX_PART_BYTES]
    return OutRecord(topics.DLQ, key, value, headers)


def outcome_records(out: Outcome, msg: Message, error: InvalidEvent | None = None) -> list[OutRecord]:
    """The output records of one message's outcome (its stage-2 forwards aside: they go in bundles).
    A rejection goes to the dead-letter topic with the original key and value (None stays None) and
    headers saying where it came from and why: `error` is the codec's refusal, else the rules
    refused a valid event."""
    records: list[OutRecord] = []
    _add_records(records, out, msg, error)
    return records


def _add_records(records: list[OutRecord], out: Outcome, msg: Message, error: InvalidEvent | None) -> None:
    add = records.append
    if out.ledger:
        for e, encoded in zip(out.ledger, out.ledger_json, strict=True):
            add(OutRecord(topics.POINTS_LEDGER, e["partner_id"].encode(), encoded))
    for t in out.tier_changes:
        add(OutRecord(topics.TIER_CHANGES, t["partner_id"].encode(), dumps_sorted(t)))
    for r in out.redemptions:
        add(OutRecord(topics.REDEMPTION_DECISIONS, r["partner_id"].encode(), dumps_sorted(r)))
    for a in out.alerts:
        add(OutRecord(topics.ANOMALY_ALERTS, a["partner_id"].encode(), dumps_sorted(a)))
    for rej in out.rejections:
        if error is not None:
            headers = dlq_headers(msg, rej, type(error).__name__, str(error))
        else:
            headers = dlq_headers(msg, rej, "RuleRejection", f"refused by the program rules: {rej['reason']}")
        add(dead_letter(msg, headers))


def fold_partition(stage1: Stage1, part: PartitionState, messages: Sequence[Message]) -> BatchResult:
    """Fold one partition's messages (in offset order) into the partition's partners: those
    `Contiguous` hands out from the partition's watermark, which follows each one."""
    with collector_paused():
        return _fold(stage1, part, messages)


def _fold(stage1: Stage1, part: PartitionState, messages: Sequence[Message]) -> BatchResult:
    result = BatchResult()
    meta = part.meta
    store = part.store()
    run = Contiguous(messages, meta.watermark)
    for msg in run:
        meta.watermark = store.offset = msg.offset
        try:
            event = decode(msg.value)
        except InvalidEvent as exc:
            out = stage1.reject(store, exc.event_id, exc.partner_id, exc.event_type, exc.reason, None, msg.where)
            label = "undecodable" if exc.reason == "undecodable" else exc.event_type or "undecodable"
            result.outcomes.append((label, out))
            _add_records(result.records, out, msg, exc)
            continue
        out = stage1.apply(store, meta.scope, event)
        result.outcomes.append((event["event_type"], out))
        _add_records(result.records, out, msg, None)
        if out.forwards:
            result.forwards += out.forwards
    if run.last is not None:
        meta.digest = digest(run.last.key, run.last.value)
    result.dirty = store.dirty
    result.skipped, result.jumped_to = run.skipped, run.jumped_to
    return result
