"""Sink task: the event log and every output topic into ClickHouse, one INSERT per table per batch.

It runs inside the worker as a Faust task with its own consumer group (`<app id>-sink`), reading with
aiokafka's batch `getmany` rather than through Faust's per-message consumer path: that path is the
worker's throughput wall (STACK.md), and a group of its own means a ClickHouse outage never stalls
stage 1 or stage 2. Offsets are committed only after ClickHouse has the batch; while ClickHouse is
down the task keeps retrying (Kafka holds the backlog) and catches up when it is back. Rows carry
deterministic ids into ReplacingMergeTree tables, so the copies a retry or a restart writes never
change a `FINAL` sum.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, IllegalStateError

from processor import topics
from processor.codec import InvalidEvent, decode
from processor.codec.timestamps import format_iso_millis
from processor.stream.app import app, settings
from processor.stream.metrics import SINK_STALLS
from projections import sink as projection

log = logging.getLogger(__name__)

TABLE_OF_TOPIC = {
    topics.POINTS_LEDGER: "ledger",
    topics.TIER_CHANGES: "tier_changes",
    topics.ANOMALY_ALERTS: "alerts",
    topics.REDEMPTION_DECISIONS: "redemptions",
}

SINK_BATCH = 20_000
_sink: projection.ClickHouseSink | None = None


def _json_line(event: dict) -> str:
    """The event's JSON line form; `decode` has validated it already, so no second validation."""
    return json.dumps({**event, "occurred_at": format_iso_millis(event["occurred_at"])}, ensure_ascii=False,
                      separators=(",", ":"))


def rows_of_batch(messages) -> dict[str, list[dict]]:  # type: ignore[no-untyped-def]
    """Group a batch's messages into rows per projection table."""
    rows: dict[str, list[dict]] = defaultdict(list)
    for m in messages:
        if m.topic == topics.PARTNER_EVENTS:
            try:
                event = decode(m.value)
            except InvalidEvent:
                continue                 # stage 1 dead-letters it; the DLQ projection records it
            rows["events"].append(projection.event_row(event, _json_line(event), m.topic, m.partition,
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


async def _project(consumer, loop, batch, messages) -> None:  # type: ignore[no-untyped-def]
    """Write one batch and commit its offsets; retry the same batch until it lands.

    ClickHouse being down is retried inside `_write`; anything else (a record the sink cannot map,
    a schema error) is logged and retried with backoff, without committing: the projections stall
    visibly (logs, `incentives_sink_failures_total`, growing sink lag) while stage 1 and stage 2,
    which do not depend on ClickHouse, keep running.
    """
    backoff = 1.0
    while True:
        try:
            rows = rows_of_batch(messages)
            await loop.run_in_executor(None, _write, rows)
            await consumer.commit({tp: part[-1].offset + 1 for tp, part in batch.items()})
            return
        except asyncio.CancelledError:
            raise
        except (CommitFailedError, IllegalStateError) as exc:
            # the group rebalanced under us: the rows are written; whoever holds the partitions now
            # re-reads from the last commit and writes the same ids again (harmless)
            log.warning("ClickHouse sink: offsets not committed after a rebalance (%r)", exc)
            return
        except Exception:
            SINK_STALLS.inc()
            log.exception("ClickHouse sink: batch of %d messages failed; retrying in %.0fs", len(messages), backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 60.0)


def _consumer() -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topics.PARTNER_EVENTS, *topics.OUTPUT_TOPICS,
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=f"{settings.app_id}-sink",
        enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=10_000,
        heartbeat_interval_ms=2_000, max_poll_records=SINK_BATCH, fetch_max_bytes=64 * 1024 * 1024)


async def _consume(consumer: AIOKafkaConsumer) -> None:
    loop = asyncio.get_running_loop()
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=SINK_BATCH)
            messages = [m for part in batch.values() for m in part]
            if not messages:
                continue
            await _project(consumer, loop, batch, messages)
    finally:
        await consumer.stop()


@app.task
async def clickhouse_sink() -> None:
    """Supervised: if the consumer itself fails (broker gone, a fetch error), it is rebuilt after a
    backoff and resumes from the group's last commit, instead of the projections silently stopping
    while the stages run on."""
    backoff = 1.0
    while True:
        started = time.monotonic()
        try:
            await _consume(_consumer())
        except asyncio.CancelledError:
            raise
        except Exception:
            if time.monotonic() - started > 60.0:
                backoff = 1.0            # it had been running fine: a fresh failure
            SINK_STALLS.inc()
            log.exception("ClickHouse sink: consumer failed; restarting it in %.0fs", backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 60.0)
