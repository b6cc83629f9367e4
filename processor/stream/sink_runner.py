"""The ClickHouse sink, runnable anywhere: the event log and every output topic into ClickHouse.

It runs either as a task of the Faust worker (`processor.stream.sink`, when
INCENTIVES_SINK_IN_WORKER is true, the default) or as its own process (`incentives sink`,
`processor/cli/sink.py`, via `run_sink`). Either way it is the same consumer in its own group
(`<app id>-sink`), reading with aiokafka's batch `getmany` rather than through Faust's per-message
consumer path: that path is the worker's throughput wall (STACK.md), and a group of its own means a
ClickHouse outage never stalls stage 1 or stage 2. This module does not import the Faust app (whose
import builds the app, its topics and tables), so the sink process carries none of it.

One batch: every table's rows written (one INSERT per table), then the KPI rollup rows of the
partner-months the batch touched rebuilt (projections/kpi.py), then the offsets committed. While
ClickHouse is down the writer keeps retrying the same batch (Kafka holds the backlog) and catches
up when it is back. Rows carry deterministic ids into ReplacingMergeTree tables, so the copies a
retry or a restart writes never change a `FINAL` sum. The program's point value is written once, before
the first batch.

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
which stops the process with a critical log naming topic, partition and offsets (the worker via
`crash_stop`, `incentives sink` with exit code 70): an operator resets explicitly. The lag of the
sink's group is `incentives_sink_lag{topic,partition}`.

Stopping (`run_sink`'s `stop` event, set by SIGTERM/SIGINT in `incentives sink`): the batch in hand
is finished (written and committed) if that takes less than `STOP_GRACE` seconds, the consumer
leaves the group, and nothing more is read. A batch that cannot finish in time (ClickHouse down) is
abandoned uncommitted: the next sink reads it again.

The consumer path itself is in `processor.stream.sink_consumer`.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from aiokafka import TopicPartition

from processor.stream.sink_consumer import TABLE_OF_TOPIC, SinkConsumer, project_batch, supervise
from projections import kpi
from projections import sink as projection

log = logging.getLogger(__name__)

#: seconds `run_sink` lets the batch in hand finish after `stop` is set
STOP_GRACE = 10.0
#: how long one ClickHouse write retries before `SinkUnavailable` (then the writer tries again)
WRITE_MAX_WAIT = 30.0


class SinkStopped(RuntimeError):
    """The sink is stopping: a write still retrying gives up (its batch stays uncommitted)."""


class SinkHalted(RuntimeError):
    """The sink stopped itself because a log went backwards (`LogWentBackwards`, logged CRITICAL)."""


class SinkWriter:
    """A batch's rows into ClickHouse, bound to the settings and the program: each table's rows,
    then the KPI rollup rows they touch (projections/kpi.py), both before the caller commits the
    batch's offsets, so a crash in between re-reads the batch and rebuilds again. The program's
    point value (`program_settings`) is written once, before the first batch.

    Called in an executor thread (`project_batch`). It keeps retrying while ClickHouse is
    unavailable, until `stop()`: then it raises `SinkStopped` at the next retry."""

    def __init__(self, settings: Any, program: Any, *, max_wait: float = WRITE_MAX_WAIT) -> None:
        self.settings = settings
        self.program = program
        self.max_wait = max_wait
        self._stopping = threading.Event()
        self._sink: projection.ClickHouseSink | None = None

    def __call__(self, rows: Mapping[str, list[projection.Row]]) -> None:
        if self._sink is None:
            sink = projection.ClickHouseSink(self.settings, max_wait=self.max_wait, sleep=self._sleep)
            self._keep_trying(lambda: sink.write_program_settings(self.program.version,
                                                                  self.program.point_value_cents))
            self._sink = sink
        current = self._sink
        for table, table_rows in rows.items():
            self._keep_trying(lambda: current.write(table, table_rows, mapped=True))  # noqa: B023 - called at once
        self._keep_trying(lambda: current.rebuild_kpis(kpi.touched(rows)))

    def stop(self) -> None:
        """Make a write that is still retrying give up (`SinkStopped`)."""
        self._stopping.set()

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()

    def _keep_trying(self, step: Callable[[], object]) -> None:
        while True:
            if self._stopping.is_set():
                raise SinkStopped("the sink is stopping; the batch stays uncommitted")
            try:
                step()
                return
            except projection.SinkUnavailable as exc:
                log.warning("ClickHouse unavailable (%s); keeping the batch and retrying", exc)

    def _sleep(self, seconds: float) -> None:
        """The ClickHouse client's backoff: `time.sleep`, cut short by `stop()`."""
        if self._stopping.wait(seconds):
            raise SinkStopped("the sink is stopping; the batch stays uncommitted")


def make_consumer(settings: Any, committed_memory: MutableMapping[TopicPartition, int]) -> SinkConsumer:
    """The sink's group consumer (`<app id>-sink`, every projected topic). Pass the same
    `committed_memory` to every consumer of one process (a rebuilt one after a failure included)."""
    return SinkConsumer(settings.kafka_bootstrap_servers, f"{settings.app_id}-sink", list(TABLE_OF_TOPIC),
                        committed_memory=committed_memory)


class Progress:
    """Where `consume` is, for a clean stop: inside a batch (`in_batch`), or gone (`left`: the
    consumer has left the group after `stop`)."""

    def __init__(self) -> None:
        self.in_batch = False
        self.left = asyncio.Event()


async def consume(reader: SinkConsumer, write: Callable[[Mapping[str, list[projection.Row]]], None],
                  stop: asyncio.Event | None = None, progress: Progress | None = None) -> None:
    """Read batches and project them (`project_batch`: write, then commit) until `stop` is set
    (never, without one); then leave the group, set `progress.left` and wait to be cancelled
    (returning would make `supervise` start the sink again)."""
    progress = progress or Progress()
    try:
        await reader.start()
        while stop is None or not stop.is_set():
            batch = await reader.next_batch(timeout_ms=500)
            if len(batch) and not (stop is not None and stop.is_set()):
                progress.in_batch = True
                try:
                    await project_batch(reader, batch, write)
                finally:
                    progress.in_batch = False
    finally:
        await reader.stop()
    progress.left.set()
    await asyncio.get_running_loop().create_future()      # until run_sink cancels the task


async def run_sink(settings: Any, program: Any, stop: asyncio.Event, *, grace: float = STOP_GRACE) -> None:
    """Run the sink (supervised: rebuilt after a failure, with backoff) until `stop` is set, then
    stop it cleanly: the batch in hand (if any) is finished and committed within `grace` seconds
    or abandoned uncommitted; the consumer leaves the group. Raises `SinkHalted` when a log went
    backwards (after `supervise` logged it CRITICAL)."""
    writer = SinkWriter(settings, program)
    committed: dict[TopicPartition, int] = {}      # what this process committed, across rebuilt consumers
    halted: list[str] = []
    progress = Progress()
    task = asyncio.create_task(
        supervise(lambda: consume(make_consumer(settings, committed), writer, stop, progress), stop=halted.append),
        name="clickhouse-sink")
    waiting = asyncio.create_task(stop.wait())
    abandoned = False
    try:
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and progress.in_batch:
            log.info("ClickHouse sink: stopping after the batch in hand (up to %g s)", grace)
            try:
                await asyncio.wait_for(progress.left.wait(), grace)
            except TimeoutError:
                abandoned = True
                log.warning("ClickHouse sink: the batch in hand did not finish within %g s; stopping without "
                            "committing it (the sink reads it again next time)", grace)
    finally:
        writer.stop()                 # a write still retrying gives up
        for pending in (waiting, task):
            pending.cancel()          # between batches: at once (nothing written is left uncommitted)
        await asyncio.wait({waiting, task})
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    if halted:
        raise SinkHalted(halted[0])
    if not abandoned:                 # (an abandoned write may still hold the client until it gives up)
        writer.close()
    log.info("ClickHouse sink: stopped")
