"""Stage-1 agent: partner events -> partner state, ledger, tier changes, decisions, alerts.

Per batch: group the events by partition, fold each partition with `folding.fold_partition`,
deliver every output, and only then write each changed partner once and the partition's meta
(its applied-offset watermark) last. Faust commits offsets after the agent body returns.
"""
from __future__ import annotations

import time

from processor.domain.engine import Stage1
from processor.domain.state import PartnerState
from processor.stream import metrics
from processor.stream.app import app, partner_events, partner_table, program
from processor.stream.batching import by_held_partition, run_batches
from processor.stream.delivery import deliver
from processor.stream.folding import Message, PartitionMeta, fold_partition, meta_key
from processor.stream.partition_context import on_partition_of
from processor.stream.rewind import Rewinder, resume_from_state

rewinder = Rewinder(app)
core = Stage1(program)   # live: deal-id uniqueness is checked per partner (see docs/decisions.md)

# The live objects of this worker's partners, so a batch does not unpickle what the previous batch
# wrote. Only this agent changes them, and only after the table has the same value; a rebalance
# forgets them all (the table, recovered from the changelog, is the truth).
live: dict[str, PartnerState] = {}
live_meta: dict[int, PartitionMeta] = {}


@app.on_partitions_assigned.connect  # type: ignore[arg-type]
async def forget_live_state(sender, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    live.clear()
    live_meta.clear()


def load(partner_id: str) -> PartnerState | None:
    state = live.get(partner_id)
    return state if state is not None else partner_table.get(partner_id)


def _observe(result) -> None:  # type: ignore[no-untyped-def]
    for event_type, out in result.outcomes:
        metrics.EVENTS.labels(event_type=event_type, outcome=out.status).inc()
        for rej in out.rejections:
            metrics.DLQ.labels(reason=rej["reason"]).inc()
        for alert in out.alerts:
            if alert["version"] == 1:
                metrics.ALERTS.labels(alert_type=alert["alert_type"]).inc()
        awarded = sum(e["delta_available"] for e in out.ledger
                      if e["kind"] in ("earn", "bonus", "spiff") and e["delta_available"] > 0)
        if awarded:
            metrics.POINTS_AWARDED.inc(awarded)
    if result.skipped:
        metrics.EVENTS.labels(event_type="any", outcome="redelivered").inc(result.skipped)


resume_from_state(partner_events.get_topic_name(), partner_table, lambda meta: meta.watermark if meta else -1)


@app.agent(partner_events)
async def stage1(stream):  # type: ignore[no-untyped-def]
    await run_batches(stream, process_batch, "stage 1")


async def process_batch(stream, events) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    by_partition = by_held_partition(events)
    records, writes = [], []
    for partition, evs in by_partition.items():
        messages = [Message(e.message.topic, partition, e.message.offset, e.message.value,
                            e.message.timestamp) for e in evs]
        with on_partition_of(stream, evs[-1]):      # table reads go to this partition
            meta = (live_meta.get(partition) or partner_table.get(meta_key(partition))
                    or PartitionMeta(partition))
            result = fold_partition(core, meta, load, messages)
        records += result.records
        writes.append((evs[-1], meta, result))
        _observe(result)
    await deliver(app, records)
    for last_event, meta, result in writes:
        if result.jumped_to is not None:            # offsets skipped: read them again, in order
            meta.watermark = await rewinder.rewind(last_event.message.tp, meta.watermark, result.jumped_to)
        with on_partition_of(stream, last_event):
            for partner_id, state in result.dirty.items():
                partner_table[partner_id] = state
                live[partner_id] = state
            partner_table[meta_key(meta.partition)] = meta     # last: the watermark follows the state
            live_meta[meta.partition] = meta
    now = time.time()
    for ev in events[:: max(1, len(events) // 50)]:
        if ev.message.timestamp:
            metrics.EVENT_LATENCY.observe(max(0.0, now - ev.message.timestamp))
    metrics.BATCH_SECONDS.observe(time.monotonic() - started)


@app.timer(interval=5.0)
async def report_lag() -> None:
    """Consumer lag of stage 1: records in each assigned partition beyond what the state has applied."""
    topic = partner_events.get_topic_name()
    for tp in app.consumer.assignment():
        if tp.topic != topic:
            continue
        highwater = app.consumer.highwater(tp)
        meta = live_meta.get(tp.partition)
        if highwater is not None and meta is not None:
            metrics.CONSUMER_LAG.labels(topic=topic, partition=str(tp.partition)).set(
                max(0, highwater - meta.watermark - 1))
