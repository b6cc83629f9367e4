"""The ClickHouse sink's consumer path, without Faust: records to rows, the group consumer with its
lag gauge and backwards checks, one batch's write-and-commit, and the supervisor.

`processor.stream.sink_runner` runs it, in the `incentives sink` process or (with
`INCENTIVES_SINK_IN_WORKER`) as a task of the Faust worker (`processor.stream.sink`, whose module
docstring says what it guarantees); it lives here so that it can be imported and tested without
the Faust app.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import (
    CommitFailedError,
    CorruptRecordException,
    IllegalStateError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
)
from prometheus_client import Counter, Gauge

from processor import topics
from processor.codec import InvalidEvent, decode
from processor.codec.timestamps import format_iso_millis
from processor.stream import log_check
from processor.stream.metrics import SINK_STALLS
from projections import sink as projection

log = logging.getLogger(__name__)

SINK_LAG = Gauge("incentives_sink_lag", "Records the ClickHouse sink's consumer group is behind the high watermark",
                 ["topic", "partition"])
SINK_UNMAPPABLE = Counter(
    "incentives_sink_unmappable",
    "Records the sink could not map to a row (or the Kafka client could not read), written to rejections "
    "as undecodable", ["topic"])

# The table each topic the sink reads is projected into.
TABLE_OF_TOPIC: dict[str, str] = {
    topics.PARTNER_EVENTS: "events",
    topics.POINTS_LEDGER: "ledger",
    topics.TIER_CHANGES: "tier_changes",
    topics.ANOMALY_ALERTS: "alerts",
    topics.REDEMPTION_DECISIONS: "redemptions",
    topics.DLQ: "rejections",
}

SINK_BATCH = 20_000
UNDECODABLE = "undecodable"
# What aiokafka raises from `getmany` when it cannot parse a fetched record.
_PARSE_ERRORS = (UnicodeError, CorruptRecordException)


# ---------------------------------------------------------------------------------------------
# Records -> rows (pure)


@dataclass(frozen=True)
class Unreadable:
    """A record the Kafka client could not parse; only its position is known."""
    topic: str
    partition: int
    offset: int
    error: str


@dataclass
class MappedBatch:
    """A batch's rows per table; every record is in exactly one of: a row, `skipped`, `unmappable`
    (which are also `rejections` rows)."""
    rows: dict[str, list[projection.Row]] = field(default_factory=lambda: defaultdict(list))
    skipped: list[str] = field(default_factory=list)      # undecodable partner-events: stage 1 dead-letters them
    unmappable: list[str] = field(default_factory=list)   # sources written to rejections as undecodable


def _where(topic: str, partition: int, offset: int) -> str:
    return f"{topic}:{partition}:{offset}"


def _json_line(event: dict) -> str:
    """The event's JSON line form; `decode` has validated it already, so no second validation."""
    return json.dumps({**event, "occurred_at": format_iso_millis(event["occurred_at"])}, ensure_ascii=False,
                      separators=(",", ":"))


def _dlq_rejection(headers: Mapping[str, bytes | None]) -> dict[str, Any]:
    """The rejection a dead letter's headers describe: the `rejection` JSON header, else the single
    `reason` / `event_id` / ... headers. Anything unreadable raises (the record is then unmappable)."""
    raw = headers.get("rejection")
    if raw:
        rejection = json.loads(raw)
        if not isinstance(rejection, dict):
            raise ValueError(f"rejection header is a JSON {type(rejection).__name__}, not an object")
        return rejection
    fields = {name: headers[name].decode("utf-8")  # type: ignore[union-attr]
              for name in ("reason", "event_id", "partner_id", "event_type", "occurred_at") if headers.get(name)}
    if "reason" not in fields:
        raise ValueError("dead letter without a rejection or reason header")
    return fields


def _map_message(m: ConsumerRecord, table: str) -> tuple[str, projection.Row] | None:
    """The (table, row) of one message; None for a partner event stage 1 dead-letters. Raises when
    the message cannot be a row."""
    if table == "events":
        if m.value is None:                  # a tombstone: decode() raises TypeError for None
            return None
        try:
            event = decode(m.value)
        except InvalidEvent:
            return None                      # stage 1 dead-letters it; the DLQ projection records it
        row = projection.event_row(event, _json_line(event), m.topic, m.partition, m.offset)
        projection.check_row(table, row)
        return table, row
    if table == "rejections":
        headers = {key: value for key, value in (m.headers or ())}
        rejection = _dlq_rejection(headers)
        source_header = headers.get("source")
        source = source_header.decode("utf-8") if source_header else _where(m.topic, m.partition, m.offset)
        row = projection.rejection_row(rejection, source=source, raw=m.value if m.value is not None else b"")
        projection.check_row(table, row)
        return table, row
    return table, projection.map_record(table, json.loads(m.value))


def unmappable_row(topic: str, partition: int, offset: int, raw: bytes | None) -> projection.Row:
    """The `rejections` row of a record the sink cannot map: reason `undecodable`, the record's own
    position as source and event id, its bytes as raw."""
    return projection.rejection_row({"reason": UNDECODABLE}, source=_where(topic, partition, offset),
                                    raw=raw if raw is not None else b"")


def map_batch(messages: Iterable[ConsumerRecord], unreadable: Iterable[Unreadable] = (),
              tables: Mapping[str, str] = TABLE_OF_TOPIC) -> MappedBatch:
    """Rows per projection table for a batch; never raises for a record's content.

    `tables` maps each topic to its table (tests use their own topic names)."""
    out = MappedBatch()
    problems: list[str] = []
    for m in messages:
        try:
            mapped = _map_message(m, tables[m.topic])
        except Exception as exc:  # noqa: BLE001 - whatever a record holds, it becomes a rejection row
            where = _where(m.topic, m.partition, m.offset)
            if len(problems) < 3:
                problems.append(f"{where} ({type(exc).__name__}: {str(exc)[:200]})")
            out.rows["rejections"].append(unmappable_row(m.topic, m.partition, m.offset, m.value))
            out.unmappable.append(where)
            SINK_UNMAPPABLE.labels(topic=m.topic).inc()
            continue
        if mapped is None:
            out.skipped.append(_where(m.topic, m.partition, m.offset))
        else:
            out.rows[mapped[0]].append(mapped[1])
    for u in unreadable:
        out.rows["rejections"].append(unmappable_row(u.topic, u.partition, u.offset, None))
        out.unmappable.append(_where(u.topic, u.partition, u.offset))
        SINK_UNMAPPABLE.labels(topic=u.topic).inc()
    if problems:   # one line per batch, not per record: a flood of poison must not flood the log
        log.warning("ClickHouse sink: %d records cannot be rows, written to rejections as %s; e.g. %s",
                    len(out.unmappable), UNDECODABLE, "; ".join(problems))
    return out


def rows_of_batch(messages: Iterable[ConsumerRecord],
                  tables: Mapping[str, str] = TABLE_OF_TOPIC) -> dict[str, list[projection.Row]]:
    """Group a batch's messages into rows per projection table (see `map_batch`)."""
    return map_batch(messages, tables=tables).rows


# ---------------------------------------------------------------------------------------------
# Logs that go backwards (pure checks)


class LogWentBackwards(log_check.LogWentBackwards):
    """A partition's log no longer holds the offsets the sink applied (the sink's wording of the
    stages' `log_check.LogWentBackwards`). Never retried: the worker stops."""

    def __init__(self, tp: TopicPartition, what: str) -> None:
        super().__init__(
            f"{tp.topic}[{tp.partition}]: the log went backwards: {what}. The broker restarted with an empty "
            f"log, the topic was recreated or the group's offsets were reset; refusing to skip or re-read "
            f"silently. Reset the sink group's offsets (and the projections) explicitly, then restart.")
        self.topic = tp.topic
        self.partition = tp.partition


def check_log_not_behind(tp: TopicPartition, applied: int | None, highwater: int | None,
                         committed: int | None = None) -> None:
    """LogWentBackwards if the broker's high watermark (after a fetch) is below the offset the
    consumer stands at (`applied`: its position, never below the group's committed offset)."""
    if applied is None or highwater is None or highwater >= applied:
        return
    had = f"committed offset {committed}, position {applied}" if committed is not None else f"position {applied}"
    raise LogWentBackwards(tp, f"the sink's {had} but the broker's high watermark is {highwater}")


def check_not_rewound(tp: TopicPartition, committed_before: int | None, start: int | None) -> None:
    """LogWentBackwards if an assignment starts (the group's committed offset, or the first offset
    delivered) below what this process committed for the partition earlier: nobody commits
    backwards while the group runs, so the group's offsets were lost or reset under it."""
    if committed_before is None or start is None or start >= committed_before:
        return
    raise LogWentBackwards(tp, f"this process committed offset {committed_before}, but the group now starts "
                               f"at offset {start}")


def offsets_to_commit(records: Mapping[TopicPartition, Sequence[ConsumerRecord]],
                      unreadable: Iterable[Unreadable] = ()) -> dict[TopicPartition, int]:
    """The next offset of every partition a batch touched."""
    out: dict[TopicPartition, int] = {}
    for tp, part in records.items():
        if part:
            out[tp] = max(out.get(tp, 0), part[-1].offset + 1)
    for u in unreadable:
        tp = TopicPartition(u.topic, u.partition)
        out[tp] = max(out.get(tp, 0), u.offset + 1)
    return out


# ---------------------------------------------------------------------------------------------
# The consumer


@dataclass
class Batch:
    records: dict[TopicPartition, list[ConsumerRecord]]
    unreadable: list[Unreadable]

    @property
    def messages(self) -> list[ConsumerRecord]:
        return [m for part in self.records.values() for m in part]

    def offsets(self) -> dict[TopicPartition, int]:
        return offsets_to_commit(self.records, self.unreadable)

    def __len__(self) -> int:
        return sum(len(part) for part in self.records.values()) + len(self.unreadable)


class SinkConsumer:
    """The sink's aiokafka group consumer: batches, commits, lag gauge, the backwards checks.

    `committed_memory` is what this process committed per partition; pass the same dict to the
    consumer that replaces a failed one, so a group whose offsets vanish meanwhile is noticed."""

    def __init__(self, bootstrap_servers: str | list[str], group_id: str, topic_names: Sequence[str], *,
                 committed_memory: MutableMapping[TopicPartition, int] | None = None,
                 max_records: int = SINK_BATCH, session_timeout_ms: int = 10_000,
                 heartbeat_interval_ms: int = 2_000) -> None:
        self.topics = tuple(topic_names)
        self.group_id = group_id
        self.max_records = max_records
        self.committed_memory: MutableMapping[TopicPartition, int] = (
            {} if committed_memory is None else committed_memory)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, group_id=group_id, enable_auto_commit=False,
            # never reset silently: "earliest" would jump back to the start of a log that lost our
            # offset; a partition the group has no offset for is sought explicitly (_no_offset)
            auto_offset_reset="none",
            session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=heartbeat_interval_ms,
            max_poll_records=max_records, fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024)
        self._next: dict[TopicPartition, int] = {}   # position after the last check, this assignment
        self._lag_labels: set[TopicPartition] = set()

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe(list(self.topics), listener=_Rebalance(self))

    async def stop(self) -> None:
        try:
            await self.consumer.stop()
        finally:
            self._forget(set(self._lag_labels))

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        await self.consumer.commit(dict(offsets))
        for tp, offset in offsets.items():
            self.committed_memory[tp] = max(offset, self.committed_memory.get(tp, 0))

    async def next_batch(self, timeout_ms: int = 500) -> Batch:
        """The next records (possibly none); raises LogWentBackwards, never skips."""
        unreadable: list[Unreadable] = []
        try:
            records = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=self.max_records)
        except OffsetOutOfRangeError as exc:
            # a fetch position the log does not hold (a real Kafka says so; Tansu answers an empty
            # fetch, caught by `_check`); with auto_offset_reset="none" aiokafka does not reset it
            (tp, offset), = exc.args[0].items()
            raise LogWentBackwards(tp, f"the broker says position {offset} is out of range "
                                       f"(committed offset {self.committed_memory.get(tp)})") from exc
        except NoOffsetForPartitionError as exc:
            await self._no_offset(exc.args[0])
            records = {}
        except RecordTooLargeError as exc:
            # larger than the fetch size: aiokafka has stepped over it already; record where
            _message, tp, offset, *_rest = exc.args
            log.error("ClickHouse sink: %s:%s:%s is larger than the fetch size; recording it as %s",
                      tp.topic, tp.partition, offset, UNDECODABLE)
            unreadable.append(Unreadable(tp.topic, tp.partition, offset, "RecordTooLargeError"))
            records = {}
        except _PARSE_ERRORS as exc:
            records, unreadable = await self._isolate(exc)
        await self._check(records)
        return Batch(records, unreadable)

    async def _no_offset(self, tp: TopicPartition) -> None:
        """The group has no offset for `tp`: a fresh group reads it from the beginning, explicitly;
        but if this process committed one, the group's offsets were lost under it."""
        if tp in self.committed_memory:
            raise LogWentBackwards(tp, f"this process committed offset {self.committed_memory[tp]}, but the group "
                                       f"has no committed offset any more")
        log.info("ClickHouse sink: no committed offset for %s:%s in %s; reading it from the beginning",
                 tp.topic, tp.partition, self.group_id)
        await self.consumer.seek_to_beginning(tp)

    async def _check(self, records: Mapping[TopicPartition, Sequence[ConsumerRecord]]) -> None:
        """After a fetch: position vs high watermark, the start of a new assignment vs what this
        process committed; then the lag gauge."""
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None:                 # no fetch answered at the current position yet
                continue
            position = await self.consumer.position(tp)
            check_log_not_behind(tp, position, highwater, self.committed_memory.get(tp))
            if tp not in self._next:              # first look at this partition in this assignment
                part = records.get(tp)
                check_not_rewound(tp, self.committed_memory.get(tp), part[0].offset if part else position)
            self._next[tp] = position
            SINK_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(highwater - position)
            self._lag_labels.add(tp)

    async def _isolate(self, error: BaseException) -> tuple[dict[TopicPartition, list[ConsumerRecord]],
                                                            list[Unreadable]]:
        """aiokafka could not parse a fetched record. It does not say which: rewind every partition
        to what was handed out (a failed `getmany` may have taken records of other partitions
        without returning them), then read the partitions with a backlog one by one; in the one
        that fails, walk record by record up to the unreadable offset and step over it. Each call
        moves past at least one offset, so a poison record costs a few fetches, never a loop."""
        log.error("ClickHouse sink: the Kafka client cannot parse a fetched record (%s: %s); isolating it",
                  type(error).__name__, error)
        consumer = self.consumer
        records: dict[TopicPartition, list[ConsumerRecord]] = {}
        unreadable: list[Unreadable] = []
        assigned = sorted(consumer.assignment())
        for tp in assigned:
            if tp in self._next:
                consumer.seek(tp, self._next[tp])
            else:
                committed = await consumer.committed(tp)
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)
        for tp in assigned:
            highwater = consumer.highwater(tp)
            if highwater is not None and await consumer.position(tp) >= highwater:
                continue                          # nothing to read there
            try:
                part = await consumer.getmany(tp, timeout_ms=1000, max_records=self.max_records)
                records.setdefault(tp, []).extend(part.get(tp, []))
                continue
            except _PARSE_ERRORS:
                pass
            for _ in range(self.max_records):
                try:
                    part = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
                except _PARSE_ERRORS as exc:
                    offset = await consumer.position(tp)
                    log.error("ClickHouse sink: %s:%s:%s cannot be read by the Kafka client (%s: %s); recording "
                              "it as %s and stepping over it", tp.topic, tp.partition, offset, type(exc).__name__,
                              exc, UNDECODABLE)
                    unreadable.append(Unreadable(tp.topic, tp.partition, offset, f"{type(exc).__name__}: {exc}"))
                    consumer.seek(tp, offset + 1)
                    break
                if not part.get(tp):
                    break
                records.setdefault(tp, []).extend(part[tp])
            if unreadable:
                break                             # one unreadable record per call; the rest next time
        if not unreadable and not records:
            raise error                           # not reproduced: let the supervisor rebuild the consumer
        return records, unreadable

    def _forget(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._next.pop(tp, None)
            if tp in self._lag_labels:
                self._lag_labels.discard(tp)
                try:
                    SINK_LAG.remove(tp.topic, str(tp.partition))
                except KeyError:
                    pass


class _Rebalance(ConsumerRebalanceListener):
    """Drops the lag series and per-assignment state of partitions this member no longer owns."""

    def __init__(self, owner: SinkConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.owner._forget(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        now = set(assigned)
        self.owner._forget([tp for tp in set(self.owner._lag_labels) | set(self.owner._next) if tp not in now])


# ---------------------------------------------------------------------------------------------
# One batch, and the supervisor


async def project_batch(reader: SinkConsumer, batch: Batch,
                        write: Callable[[Mapping[str, list[projection.Row]]], None],
                        tables: Mapping[str, str] = TABLE_OF_TOPIC) -> MappedBatch:
    """Write one batch and commit its offsets; retry the same batch until it lands.

    `write` runs in an executor and retries ClickHouse being down itself. A record cannot fail the batch (`map_batch`
    turns it into a rejection row); anything else (a schema error, a missing table) is logged and
    retried with backoff, without committing: the projections stall visibly (logs,
    `incentives_sink_stalls_total`, growing `incentives_sink_lag`) while stage 1 and stage 2,
    which do not depend on ClickHouse, keep running.
    """
    loop = asyncio.get_running_loop()
    mapped = map_batch(batch.messages, batch.unreadable, tables)
    backoff = 1.0
    while True:
        try:
            await loop.run_in_executor(None, write, mapped.rows)
            await reader.commit(batch.offsets())
            return mapped
        except asyncio.CancelledError:
            raise
        except (CommitFailedError, IllegalStateError) as exc:
            # the group rebalanced under us: the rows are written; whoever holds the partitions now
            # re-reads from the last commit and writes the same ids again (harmless)
            log.warning("ClickHouse sink: offsets not committed after a rebalance (%r)", exc)
            return mapped
        except Exception:
            SINK_STALLS.inc()
            log.exception("ClickHouse sink: batch of %d records failed; retrying in %.0fs", len(batch), backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 60.0)


async def supervise(run: Callable[[], Awaitable[None]], stop: Callable[[str], None],
                    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Run the sink, rebuilding it after a failure (broker gone, a fetch error) with backoff, so the
    projections never stop silently while the stages run on; but a log that went backwards stops
    the worker (`stop`): retrying could only skip or re-read it."""
    backoff = 1.0
    while True:
        started = time.monotonic()
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except LogWentBackwards as exc:
            log.critical("ClickHouse sink: %s", exc)
            stop(f"ClickHouse sink ({exc.topic}[{exc.partition}]: the log went backwards)")
            return
        except Exception:
            if time.monotonic() - started > 60.0:
                backoff = 1.0            # it had been running fine: a fresh failure
            SINK_STALLS.inc()
            log.exception("ClickHouse sink: consumer failed; restarting it in %.0fs", backoff)
            await sleep(backoff)
            backoff = min(backoff * 2, 60.0)
