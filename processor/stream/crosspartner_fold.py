"""Stage-2 batch folding, independent of Faust: bytes in, findings and state records out.

The counterpart of stage 1's `folding.fold_partition`, over the same `PartitionMeta` (the offset of
the last message applied, the digest of that message for `log_check`). The agent (`stage2.py`)
hands over one partition's messages of a batch; each is a bundle of forwarded records or a single
one (`forwarding.read`), and each record is folded into its key's state by the cross-partner
detectors (`processor.domain.crosspartner`). Out come the findings, as Avro `AnomalyDetected`
events for `partner-events` (stage 1 applies them, so a replay of the log sees exactly what
happened live), a dead letter for each message or bundled record that cannot be read, and the
state records to write, the meta last (`commit.py` writes them in the batch commit order).

State: one record per order / customer key (bounded: an order's claimants, a customer's partner
status and its open deals only) and the partition meta. Each key's record is written whole, and
re-applying a forwarded record after a crash is a no-op (claims by partner, deals by id, findings
with deterministic ids), so a batch whose records reached the changelog only in part is safe to
redo from the watermark.
"""
from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from processor import topics
from processor.codec import encode
from processor.domain import crosspartner
from processor.domain.program import Program
from processor.stream import forwarding
from processor.stream.folding import Contiguous, Message, OutRecord, dead_letter, dlq_headers
from processor.stream.log_check import digest
from processor.stream.partition_state import FORMAT, PartitionMeta, RecordReader

_PICKLE = pickle.HIGHEST_PROTOCOL


def _key(*parts: Any) -> bytes:
    return json.dumps([FORMAT, *parts], separators=(",", ":"), ensure_ascii=False).encode()


def meta_key(partition: int) -> bytes:
    return _key("meta", partition)


def state_key(forward_key: str) -> bytes:
    return _key("k", forward_key)


def load_meta(partition: int, records: RecordReader) -> PartitionMeta:
    """The partition's stored meta (a bare watermark, as stored before the meta, reads as one)."""
    raw = records.get(meta_key(partition))
    if raw is None:
        return PartitionMeta(partition)
    meta = pickle.loads(raw)
    return meta if isinstance(meta, PartitionMeta) else PartitionMeta(partition, watermark=int(meta))


@dataclass
class Stage2Result:
    records: list[OutRecord] = field(default_factory=list)    # findings and dead letters, in order
    state: dict[bytes, Any] = field(default_factory=dict)     # every key the batch read -> its value
    meta: PartitionMeta = field(default_factory=lambda: PartitionMeta(-1))
    findings: int = 0
    dead_letters: int = 0
    skipped: int = 0
    jumped_to: int | None = None       # where the fold met a gap (`folding.Contiguous`)
    committed: int = -1                # the watermark the fold started from

    def state_records(self, watermark: int) -> list[tuple[bytes, bytes]]:
        """The records to write for a commit at `watermark`: every key read, then the meta; none
        when the batch applied nothing (all redeliveries)."""
        if not self.state and watermark == self.committed:
            return []
        if watermark != self.meta.watermark:     # a rewind past offsets the log no longer has
            self.meta.digest = None
        self.meta.watermark = watermark
        records = [(k, pickle.dumps(v, _PICKLE)) for k, v in self.state.items()]
        records.append((meta_key(self.meta.partition), pickle.dumps(self.meta, _PICKLE)))
        return records


def fold_crosspartner(program: Program, records: RecordReader, meta: PartitionMeta,
                      messages: Sequence[Message]) -> Stage2Result:
    """Fold one partition's messages (in offset order) from `meta`'s watermark on (a copy of `meta`
    follows each message applied; `meta` itself is left as it was)."""
    result = Stage2Result(meta=PartitionMeta(meta.partition, watermark=meta.watermark, digest=meta.digest),
                          committed=meta.watermark)
    cache = result.state
    run = Contiguous(messages, meta.watermark)
    for msg in run:
        try:
            bundled, items = forwarding.read(msg.key, msg.value)
        except forwarding.NotStage2Input as exc:
            result.records.append(_poison(msg, exc))
            result.dead_letters += 1
            continue
        for n, (fwd_key, record) in enumerate(items):
            try:
                if fwd_key is None:
                    raise forwarding.NotStage2Input(f"bundled record {n} is not a [key, record] pair")
                key = state_key(fwd_key)
                if key not in cache:
                    raw = records.get(key)
                    cache[key] = None if raw is None else pickle.loads(raw)
                cache[key], findings = crosspartner.apply(program, cache[key], record)
            except Exception as exc:  # noqa: BLE001 - bad input, never a reason to stop
                result.records.append(_poison(msg, exc, n if bundled else None))
                result.dead_letters += 1
                continue
            for finding in findings:
                result.records.append(OutRecord(topics.PARTNER_EVENTS, finding["partner_id"].encode(),
                                                encode(finding)))
                result.findings += 1
    result.meta.watermark = run.watermark
    if run.last is not None:
        result.meta.digest = digest(run.last.key, run.last.value)
    result.skipped, result.jumped_to = run.skipped, run.jumped_to
    return result


def _poison(msg: Message, exc: Exception, item: int | None = None) -> OutRecord:
    """A forwarded message (or one record of a bundle, `item`, 0-based) that stage 2 cannot read:
    dead-lettered with where it came from and why; a bundle's other records are applied."""
    where = msg.where if item is None else f"{msg.where}#{item}"
    rejection = {"event_id": where, "reason": "undecodable", "partner_id": None, "event_type": None,
                 "occurred_at": None}
    headers = dlq_headers(msg, rejection, type(exc).__name__, str(exc)[:1000], "stage2")
    if item is not None:
        headers.append(("bundle.item", str(item).encode()))
    return dead_letter(msg, headers)
