"""Sink task: the event log and every output topic into ClickHouse, one INSERT per table per batch.

It runs inside the worker as a Faust task with its own consumer group (`<app id>-sink`), reading with
aiokafka's batch `getmany` rather than through Faust's per-message consumer path: that path is the
worker's throughput wall (STACK.md), and a group of its own means a ClickHouse outage never stalls
stage 1 or stage 2. Offsets are committed only after ClickHouse has the batch; while ClickHouse is
down the task keeps retrying (Kafka holds the backlog) and catches up when it is back. Rows carry
deterministic ids into ReplacingMergeTree tables, so the copies a retry or a restart writes never
change a `FINAL` sum. After each batch it rebuilds the KPI rollup rows of the partner-months the
batch touched (projections/kpi.py), also before the commit.

No record can halt it. An undecodable `partner-events` record is skipped (stage 1 dead-letters it
and the DLQ projection records it). A record of an output topic or of the DLQ that cannot be a row
(a tombstone, bad JSON, wrong fields, a value ClickHouse would refuse) becomes a `rejections` row
with reason `undecodable` and source `<topic>:<partition>:<offset>`, its bytes kept, and is counted
in `incentives_sink_unmappable_total`. A record the Kafka client itself cannot parse (aiokafka
refuses a header key that is not UTF-8) is isolated offset by offset (`SinkConsumer._isolate`) and
recorded the same way; aiokafka cannot read past it, so the records after it in the same record
batch are recorded so too, each with its own position.

No log can go backwards silently. The consumer never resets an offset by itself
(`auto_offset_reset="none"`): a partition the group has no offset for is read from the beginning
only if this process never committed one for it. After every fetch the position is checked against
the broker's high watermark (`check_log_not_behind`) and the first offset of an assignment against
what this process committed (`check_not_rewound`); a log that no longer holds the applied offsets
(broker restarted with an empty log, topic recreated, offsets reset) raises `LogWentBackwards`,
which stops the whole worker with a critical log naming topic, partition and offsets: an operator
resets explicitly. The lag of the sink's group is `incentives_sink_lag{topic,partition}`.

The consumer path is in `processor.stream.sink_consumer` (importable and testable without the Faust
app); this module binds it to the worker's settings and runs it as a task.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from aiokafka import TopicPartition

from processor.stream.app import app, program, settings
from processor.stream.delivery import crash_stop
from processor.stream.sink_consumer import (  # noqa: F401  (re-exported: the sink's pure parts)
    SINK_BATCH,
    SINK_LAG,
    SINK_UNMAPPABLE,
    TABLE_OF_TOPIC,
    Batch,
    LogWentBackwards,
    MappedBatch,
    SinkConsumer,
    Unreadable,
    check_log_not_behind,
    check_not_rewound,
    map_batch,
    project_batch,
    rows_of_batch,
    supervise,
)
from projections import kpi
from projections import sink as projection

log = logging.getLogger(__name__)

_sink: projection.ClickHouseSink | None = None


# ---------------------------------------------------------------------------------------------
# The task (bound to the worker's settings)


def _write(rows: Mapping[str, list[projection.Row]]) -> None:
    """Write a batch's rows, then rebuild the KPI rollup rows they touch (projections/kpi.py):
    both before the caller commits the batch's offsets, so a crash in between re-reads the batch
    and rebuilds again."""
    global _sink
    if _sink is None:
        sink = projection.ClickHouseSink(settings, max_wait=30.0)
        _keep_trying(lambda: sink.write_program_settings(program.version, program.point_value_cents))
        _sink = sink
    current = _sink
    for table, table_rows in rows.items():
        _keep_trying(lambda: current.write(table, table_rows, mapped=True))  # noqa: B023 - called at once
    _keep_trying(lambda: current.rebuild_kpis(kpi.touched(rows)))


def _keep_trying(step: Callable[[], object]) -> None:
    while True:
        try:
            step()
            return
        except projection.SinkUnavailable as exc:
            log.warning("ClickHouse unavailable (%s); keeping the batch and retrying", exc)


_COMMITTED: dict[TopicPartition, int] = {}   # what this process committed, across rebuilt consumers


def make_consumer() -> SinkConsumer:
    return SinkConsumer(settings.kafka_bootstrap_servers, f"{settings.app_id}-sink", list(TABLE_OF_TOPIC),
                        committed_memory=_COMMITTED)


async def _consume(reader: SinkConsumer) -> None:
    await reader.start()
    try:
        while True:
            batch = await reader.next_batch(timeout_ms=500)
            if len(batch):
                await project_batch(reader, batch, _write)
    finally:
        await reader.stop()


@app.task
async def clickhouse_sink() -> None:
    """The supervised sink (see `supervise`)."""
    await supervise(lambda: _consume(make_consumer()), stop=crash_stop)
