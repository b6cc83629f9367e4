"""Stage-1 agent: partner events -> partner state, ledger, tier changes, decisions, alerts.

Per batch: group the events by partition, fold each partition with `folding.fold_partition` into
its `PartitionState`, and commit the batch in the order both stages share (`commit.py`: every
output delivered, the stage-2 forwards of the whole batch in one bundle per stage-2 partition
(`forwarding.py`), then each partition's state records, its watermark last, then the offsets).
How the records are laid out, and why a crash at any point leaves them consistent:
`partition_state.py`.
"""
from __future__ import annotations

import logging
import os
import pickle
import time
from dataclasses import dataclass

from processor.domain.engine import Stage1
from processor.stream import forwarding, metrics
from processor.stream.batching import by_held_partition, run_batches
from processor.stream.commit import PartitionCommit, commit_batch
from processor.stream.delivery import partition_count
from processor.stream.folding import BatchResult, Message, fold_partition
from processor.stream.log_check import LogWentBackwards, check_highwater, check_record
from processor.stream.partition_state import PartitionState, StateCorrupt, meta_key
from processor.stream.rewind import Rewinder, StallWatch
from processor.stream.state_store import TableRecords
from processor.stream.wiring import app, partner_events, partner_table, program, repartition, settings

log = logging.getLogger(__name__)
rewinder = Rewinder(app)
stall_watch = StallWatch(app)
core = Stage1(program)   # live: deal-id uniqueness is checked per partner (see docs/decisions.md)

#: The live state of this worker's partitions, kept between batches, and the writer epoch of each
#: (state_store.py: fixed when the partition is taken); a rebalance forgets it all (the table,
#: recovered from the changelog, is the truth).
parts: dict[int, PartitionState] = {}
epochs: dict[int, int] = {}


def records(partition: int) -> TableRecords:
    return TableRecords(app, partner_table, partition, settings.max_message_bytes)


@app.on_partitions_assigned.connect  # type: ignore[arg-type]
async def forget_live_state(sender, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    parts.clear()
    epochs.clear()
    topic = partner_events.get_topic_name()
    metrics.forget_lag(topic, {tp.partition for tp in app.consumer.assignment() if tp.topic == topic})


def refuse(exc: Exception) -> None:
    """The stored state contradicts itself: stop, with the reason, rather than run on it."""
    log.critical("refusing to run: %s", exc)
    logging.shutdown()
    os._exit(78)


async def partition_state(tp) -> PartitionState:  # type: ignore[no-untyped-def]
    """The partition's live state; the first time after an assignment, taken over (the writer
    fence, `state_store.TableRecords.take_over`), read from the store and checked: against itself
    (`check`) and against the log (it must still hold what was applied)."""
    part = parts.get(tp.partition)
    if part is None:
        epoch = epochs.get(tp.partition)
        if epoch is None:                         # first use since the assignment: fence it first
            epoch = epochs[tp.partition] = await records(tp.partition).take_over(app.consumer_generation_id)
        part = PartitionState(tp.partition, records(tp.partition))
        part.epoch = epoch
        try:
            part.check()
            await check_record(settings.kafka_bootstrap_servers, tp.topic, tp.partition,
                               part.meta.watermark, part.meta.digest)
        except (StateCorrupt, LogWentBackwards) as exc:
            refuse(exc)
        parts[tp.partition] = part
    return part


async def stage2_partitions() -> int:
    """How many partitions the repartition topic has (bundles are addressed by it)."""
    producer = app.producer._ensure_producer()  # type: ignore[attr-defined]  # aiokafka's, under Faust's
    return await partition_count(producer, repartition.get_topic_name())


def stored_watermark(partition: int) -> int:
    """The committed watermark as stored (read fresh: this runs right after a recovery)."""
    raw = records(partition).get(meta_key(partition))
    return -1 if raw is None else int(pickle.loads(raw).watermark)


def _observe(result) -> None:  # type: ignore[no-untyped-def]
    for event_type, out in result.outcomes:
        outcome = "undecodable" if event_type == "undecodable" else out.status
        metrics.EVENTS.labels(event_type=event_type, outcome=outcome).inc()
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



@app.agent(partner_events)
async def stage1(stream):  # type: ignore[no-untyped-def]
    await run_batches(stream, process_batch, "stage 1")


@dataclass
class _Commit(PartitionCommit):
    """A partition's folded batch, with the live state it commits."""
    part: PartitionState
    result: BatchResult

    def state_records(self, watermark: int) -> list[tuple[bytes, bytes]]:
        meta = self.part.meta
        if watermark != meta.watermark:         # a rewind past offsets the log no longer has
            meta.watermark, meta.digest = watermark, None
        if not self.result.dirty and watermark == self.part.committed_watermark:
            return []
        return self.part.batch_records(self.result.dirty)

    def written(self, ok: bool) -> None:
        if ok:
            self.part.committed(self.result.dirty)
        else:                                    # another writer's records merged in: reload
            parts.pop(self.tp.partition, None)

    def lost(self) -> None:                      # the new owner redoes it
        parts.pop(self.tp.partition, None)


async def process_batch(stream, events) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    by_partition = by_held_partition(events)
    outputs, forwards, commits = [], [], []
    for partition, evs in by_partition.items():
        messages = [Message(e.message.topic, partition, e.message.offset, e.message.value,
                            e.message.timestamp, e.message.key) for e in evs]
        tp = evs[0].message.tp
        part = await partition_state(tp)
        try:
            check_highwater(tp.topic, partition, part.committed_watermark, app.consumer.highwater(tp))
        except LogWentBackwards as exc:
            refuse(exc)
        result = fold_partition(core, part, messages)
        outputs += result.records
        forwards += result.forwards
        commits.append(_Commit(evs[-1].message.tp, part.epoch, records(partition), part.meta.watermark,
                               result.jumped_to, part, result))
        _observe(result)
    if forwards:
        outputs += forwarding.bundles(forwards, await stage2_partitions(), ",".join(map(str, by_partition)),
                                      settings.max_message_bytes // 2)
    await commit_batch(app, rewinder, outputs, commits, settings.max_message_bytes)
    now = time.time()
    for ev in events[:: max(1, len(events) // 50)]:
        if ev.message.timestamp:
            metrics.EVENT_LATENCY.observe(max(0.0, now - ev.message.timestamp))
    metrics.BATCH_SECONDS.observe(time.monotonic() - started)


@app.timer(interval=5.0)
async def report_lag() -> None:
    """Consumer lag of stage 1: records in each assigned partition beyond what the state has
    applied; reported from start-up, before any message arrives. Also the check that the log still
    reaches the watermark while no message arrives (a fetch beyond a shorter log returns nothing),
    and the watch for a partition whose tail is never delivered again (`rewind.StallWatch`)."""
    topic = partner_events.get_topic_name()
    for tp in app.consumer.assignment():
        if tp.topic != topic:
            continue
        part = parts.get(tp.partition)
        watermark = part.committed_watermark if part is not None else stored_watermark(tp.partition)
        highwater = app.consumer.highwater(tp)
        try:
            check_highwater(topic, tp.partition, watermark, highwater)
        except LogWentBackwards as exc:
            refuse(exc)
        if highwater is None:       # nothing fetched yet: the broker's end offset (can be short here)
            highwater = (await app.consumer.highwaters(tp)).get(tp, watermark + 1)
        else:
            await stall_watch.check(tp, watermark, highwater)
        metrics.CONSUMER_LAG.labels(topic=topic, partition=str(tp.partition)).set(max(0, highwater - watermark - 1))
