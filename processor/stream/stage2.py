"""Stage-2 agent: cross-partner detectors over the repartition topic (keyed by order / customer).

Stage 1 sends its forwards in bundles, one message per stage-2 partition per batch, each record
with its key (`forwarding.py`); a message of one record keyed by its stage-2 key is read too.

Findings are appended to `partner-events` as Avro `AnomalyDetected` events keyed by the partner,
so stage 1 applies them (holds, alerts) and a replay of the log sees exactly what happened live.

State: one record per order / customer key (bounded: an order's claimants, a customer's partner
status and its open deals only, `processor/domain/crosspartner.py`) and one meta record per
partition with the watermark, written last; records go to the changelog first (`state_store.py`).
Each key's record is written whole, and re-applying a forwarded record after a crash is a no-op
(claims by partner, deals by id, findings with deterministic ids), so a batch whose records reached
the changelog only in part is safe to redo from the watermark.
"""
from __future__ import annotations

import json
import pickle
from typing import Any

from processor import topics
from processor.codec import encode
from processor.domain import crosspartner
from processor.stream import forwarding, metrics
from processor.stream.app import app, crosspartner_table, program, repartition, settings
from processor.stream.batching import by_held_partition, run_batches
from processor.stream.delivery import deliver
from processor.stream.folding import Contiguous, Message, OutRecord, dead_letter, dlq_headers
from processor.stream.log_check import LogWentBackwards, check_highwater
from processor.stream.partition_state import FORMAT
from processor.stream.rewind import Rewinder, StallWatch, resume_from_state
from processor.stream.stage1 import refuse
from processor.stream.state_store import TableRecords

rewinder = Rewinder(app)
stall_watch = StallWatch(app)
_PICKLE = pickle.HIGHEST_PROTOCOL


def _key(*parts: Any) -> bytes:
    return json.dumps([FORMAT, *parts], separators=(",", ":"), ensure_ascii=False).encode()


def records(partition: int) -> TableRecords:
    return TableRecords(app, crosspartner_table, partition, settings.max_message_bytes)


def stored_watermark(partition: int) -> int:
    raw = records(partition).get(_key("meta", partition))
    return -1 if raw is None else int(pickle.loads(raw))


resume_from_state(repartition.get_topic_name(), stored_watermark)

#: The writer epoch of each partition this worker holds (state_store.py), fixed when it is taken.
epochs: dict[int, int] = {}


@app.on_partitions_assigned.connect  # type: ignore[arg-type]
async def forget_epochs(sender, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    epochs.clear()


async def epoch(partition: int) -> int:
    """This worker's writer epoch for the partition; the first time since the assignment, it takes
    the partition over (`state_store.TableRecords.take_over`) before any state is read."""
    if partition not in epochs:
        epochs[partition] = await records(partition).take_over(app.consumer_generation_id)
    return epochs[partition]


@app.timer(interval=5.0)
async def watch_stalls() -> None:
    """A partition whose tail is never delivered again after a seek back is read again
    (`rewind.StallWatch`; stage 1's lag timer does the same for its partitions)."""
    topic = repartition.get_topic_name()
    for tp in app.consumer.assignment():
        if tp.topic == topic:
            await stall_watch.check(tp, stored_watermark(tp.partition), app.consumer.highwater(tp))


@app.agent(repartition)
async def stage2(stream):  # type: ignore[no-untyped-def]
    await run_batches(stream, process_batch, "stage 2")


def _poison(msg: Message, exc: Exception, item: int | None = None) -> OutRecord:
    """A forwarded message (or one record of a bundle, `item`, 0-based) that stage 2 cannot read:
    dead-lettered with where it came from and why; a bundle's other records are applied."""
    where = msg.where if item is None else f"{msg.where}#{item}"
    rejection = {"event_id": where, "reason": "undecodable", "partner_id": None, "event_type": None,
                 "occurred_at": None}
    metrics.DLQ.labels(reason="undecodable").inc()
    metrics.EVENTS.labels(event_type="undecodable", outcome="undecodable").inc()
    headers = dlq_headers(msg, rejection, type(exc).__name__, str(exc)[:1000], "stage2")
    if item is not None:
        headers.append(("bundle.item", str(item).encode()))
    return dead_letter(msg, headers)


async def process_batch(stream, events) -> None:  # type: ignore[no-untyped-def]
    by_partition = by_held_partition(events)
    outputs, writes = [], []
    for partition, evs in by_partition.items():
        tp = evs[0].message.tp
        writer = await epoch(partition)
        store = records(partition)
        watermark = stored_watermark(partition)
        try:
            check_highwater(tp.topic, partition, watermark, app.consumer.highwater(tp))
        except LogWentBackwards as exc:
            refuse(exc)
        cache: dict[bytes, Any] = {}
        messages = [Message(e.message.topic, partition, e.message.offset, e.message.value, None, e.message.key)
                    for e in evs]
        run = Contiguous(messages, watermark)
        for msg in run:
            try:
                bundled, items = forwarding.read(msg.key, msg.value)
            except forwarding.NotStage2Input as exc:
                outputs.append(_poison(msg, exc))
                continue
            for n, (fwd_key, record) in enumerate(items):
                try:
                    if fwd_key is None:
                        raise forwarding.NotStage2Input(f"bundled record {n} is not a [key, record] pair")
                    key = _key("k", fwd_key)
                    if key not in cache:
                        raw = store.get(key)
                        cache[key] = None if raw is None else pickle.loads(raw)
                    cache[key], findings = crosspartner.apply(program, cache[key], record)
                except Exception as exc:  # noqa: BLE001 - bad input, never a reason to stop
                    outputs.append(_poison(msg, exc, n if bundled else None))
                    continue
                for finding in findings:
                    outputs.append(OutRecord(topics.PARTNER_EVENTS, finding["partner_id"].encode(),
                                             encode(finding)))
        writes.append((tp, writer, run.watermark, cache, run.jumped_to))
    await deliver(app, outputs, limit=settings.max_message_bytes)
    for tp, writer, watermark, cache, jumped_to in writes:
        if jumped_to is not None:        # read the skipped offsets again, in order
            watermark = await rewinder.rewind(tp, watermark, jumped_to)
        if tp not in app.consumer.assignment():
            continue
        state = [(k, pickle.dumps(v, _PICKLE)) for k, v in cache.items()]
        await records(tp.partition).write(state + [(_key("meta", tp.partition), pickle.dumps(watermark, _PICKLE))],
                                          writer)
