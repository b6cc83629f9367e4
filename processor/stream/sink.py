"""Sink agent: the event log and every output topic into ClickHouse, one INSERT per table per batch.

The batch is acked only after ClickHouse has it; while ClickHouse is down the agent keeps retrying
(Kafka holds the backlog) and catches up when it is back. Rows carry deterministic ids into
ReplacingMergeTree tables, so the copies a retry or a restart writes never change a `FINAL` sum.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict

from processor import topics
from processor.codec import InvalidEvent, decode, to_json_line
from processor.stream.app import BATCH_WITHIN, app, settings, sink_sources
from processor.stream.delivery import crash_stop
from projections import sink as projection

log = logging.getLogger(__name__)

TABLE_OF_TOPIC = {
    topics.POINTS_LEDGER: "ledger",
    topics.TIER_CHANGES: "tier_changes",
    topics.ANOMALY_ALERTS: "alerts",
    topics.REDEMPTION_DECISIONS: "redemptions",
}

_sink: projection.ClickHouseSink | None = None


def rows_of_batch(messages) -> dict[str, list[dict]]:  # type: ignore[no-untyped-def]
    """Group a batch's messages into rows per projection table."""
    rows: dict[str, list[dict]] = defaultdict(list)
    for m in messages:
        if m.topic == topics.PARTNER_EVENTS:
            try:
                event = decode(m.value)
            except InvalidEvent:
                continue                 # stage 1 dead-letters it; the DLQ projection records it
            rows["events"].append(projection.event_row(event, to_json_line(event), m.topic, m.partition,
                                                       m.offset))
        elif m.topic == topics.DLQ:
            headers = {k: v for k, v in (m.headers or [])}
            rejection = json.loads(headers.get("rejection", b"{}") or b"{}")
            source = headers.get("source", b"").decode() or f"{m.topic}:{m.partition}:{m.offset}"
            rows["rejections"].append(projection.rejection_row(rejection, source=source, raw=m.value))
        else:
            rows[TABLE_OF_TOPIC[m.topic]].append(json.loads(m.value))
    return rows


def _write(rows: dict[str, list[dict]]) -> None:
    global _sink
    if _sink is None:
        _sink = projection.ClickHouseSink(settings, max_wait=30.0)
    for table, table_rows in rows.items():
        while True:
            try:
                _sink.write(table, table_rows)
                break
            except projection.SinkUnavailable as exc:
                log.warning("ClickHouse unavailable (%s); keeping the batch and retrying", exc)


@app.agent(sink_sources)
async def clickhouse_sink(stream):  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    async for events in stream.take_events(20_000, within=BATCH_WITHIN * 2):
        try:
            rows = rows_of_batch([e.message for e in events])
            await loop.run_in_executor(None, _write, rows)
        except Exception:    # a bug: stop before Faust acks the batch (it would never reach ClickHouse)
            crash_stop("ClickHouse sink")
