"""Stage-2 agent: cross-partner detectors over the repartition topic (keyed by order / customer).

Stage 1 sends its forwards in bundles, one message per stage-2 partition per batch, each record
with its key (`forwarding.py`); a message of one record keyed by its stage-2 key is read too.

Findings are appended to `partner-events` as Avro `AnomalyDetected` events keyed by the partner,
so stage 1 applies them (holds, alerts) and a replay of the log sees exactly what happened live.

Per batch: group the events by partition, check each partition's log against its meta, fold it
(`crosspartner_fold.fold_crosspartner`: the same partition meta as stage 1, and the state records
it writes) and commit the batch in the order both stages share (`commit.py`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processor.stream import metrics
from processor.stream.batching import by_held_partition, run_batches
from processor.stream.commit import PartitionCommit, commit_batch
from processor.stream.crosspartner_fold import Stage2Result, fold_crosspartner, load_meta
from processor.stream.folding import Message
from processor.stream.log_check import LogWentBackwards, check_highwater, check_record
from processor.stream.rewind import Rewinder, StallWatch
from processor.stream.stage1 import refuse
from processor.stream.state_store import TableRecords
from processor.stream.wiring import app, crosspartner_table, program, repartition, settings

rewinder = Rewinder(app)
stall_watch = StallWatch(app)


def records(partition: int) -> TableRecords:
    return TableRecords(app, crosspartner_table, partition, settings.max_message_bytes)


def stored_watermark(partition: int) -> int:
    return load_meta(partition, records(partition)).watermark


#: The writer epoch of each partition this worker holds (state_store.py), fixed when it is taken.
epochs: dict[int, int] = {}


@app.on_partitions_assigned.connect  # type: ignore[arg-type]
async def forget_epochs(sender, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    epochs.clear()


async def epoch(tp: Any) -> int:
    """This worker's writer epoch for the partition; the first time since the assignment, it takes
    the partition over (`state_store.TableRecords.take_over`) and checks the stored meta against the
    log (it must still hold the message the state applied last), before any state is read."""
    if tp.partition not in epochs:
        epochs[tp.partition] = await records(tp.partition).take_over(app.consumer_generation_id)
        meta = load_meta(tp.partition, records(tp.partition))
        try:
            await check_record(settings.kafka_bootstrap_servers, tp.topic, tp.partition, meta.watermark, meta.digest)
        except LogWentBackwards as exc:
            refuse(exc)
    return epochs[tp.partition]


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


@dataclass
class _Commit(PartitionCommit):
    """A partition's folded batch; stage 2 keeps no live state between batches (the next one reads
    the store), so `written` and `lost` have nothing to do."""
    result: Stage2Result

    def state_records(self, watermark: int) -> list[tuple[bytes, bytes]]:
        return self.result.state_records(watermark)


async def process_batch(stream, events) -> None:  # type: ignore[no-untyped-def]
    outputs, commits = [], []
    for partition, evs in by_held_partition(events).items():
        tp = evs[0].message.tp
        writer = await epoch(tp)
        store = records(partition)
        meta = load_meta(partition, store)
        try:
            check_highwater(tp.topic, partition, meta.watermark, app.consumer.highwater(tp))
        except LogWentBackwards as exc:
            refuse(exc)
        messages = [Message(e.message.topic, partition, e.message.offset, e.message.value, None, e.message.key)
                    for e in evs]
        result = fold_crosspartner(program, store, meta, messages)
        if result.dead_letters:
            metrics.DLQ.labels(reason="undecodable").inc(result.dead_letters)
            metrics.EVENTS.labels(event_type="undecodable", outcome="undecodable").inc(result.dead_letters)
        outputs += result.records
        commits.append(_Commit(tp, writer, store, result.meta.watermark, result.jumped_to, result))
    await commit_batch(app, rewinder, outputs, commits, settings.max_message_bytes)
