"""The ClickHouse sink as a task of the Faust worker, registered only when INCENTIVES_SINK_IN_WORKER
is true (the default, so a bare `faust -A processor.stream.app worker` still projects into
ClickHouse). With the setting false the worker leaves the sink to its own process, `incentives sink`
(`incentives dev up` and docker-compose.yml run it so).

What the sink does and guarantees is in `processor.stream.sink_runner` (writer, consumer factory,
the loop) and `processor.stream.sink_consumer` (records to rows, the group consumer, backwards
checks, the supervisor); this module binds them to the worker's settings and program, and a log
that went backwards stops the whole worker (`crash_stop`, exit 70).
"""
from __future__ import annotations

from aiokafka import TopicPartition

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
from processor.stream.sink_runner import SinkWriter, consume
from processor.stream.sink_runner import make_consumer as _make_consumer
from processor.stream.wiring import app, program, settings

_write = SinkWriter(settings, program)
_COMMITTED: dict[TopicPartition, int] = {}   # what this process committed, across rebuilt consumers


def make_consumer() -> SinkConsumer:
    return _make_consumer(settings, _COMMITTED)


if settings.sink_in_worker:
    @app.task
    async def clickhouse_sink() -> None:
        """The supervised sink (see `supervise`)."""
        await supervise(lambda: consume(make_consumer(), _write), stop=crash_stop)
