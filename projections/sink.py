"""The ClickHouse sink: turns the output records into rows and writes them, one INSERT per batch.

Why duplicates are harmless. Delivery is at least once: a worker that crashes after writing a
batch but before committing its Kafka offsets writes the batch again, and an INSERT that times out
may or may not have landed, so the sink retries it. ClickHouse 18.16 (the local server) has no
insert deduplication for plain MergeTree tables (no ``insert_deduplication_token``, no
``non_replicated_deduplication_window``), so exactness cannot come from the insert. It comes from
the data instead: every table is a ``ReplacingMergeTree`` whose sorting key is the record's
deterministic id (``event_id``, ``(partner_id, seq)``, ``alert_id``, ...), every delivery of a record
carries the same id and content, and queries read with ``FINAL`` (or aggregate by the id), which
collapses the copies that background merges have not removed yet. Where a record changes state
(alerts), the table's ``version`` column makes the latest state win in whatever order the copies
arrive. So a retry or a replay can only add copies, never change a sum.

Why the caller's offsets are safe. ``write`` returns only when the batch is in ClickHouse; while
the server is unreachable it retries with backoff for up to ``max_wait`` seconds and then raises
``SinkUnavailable``. The caller (the sink's consumer loop, `processor/stream/sink_runner.py`)
commits its Kafka offsets only after ``write`` returned, so nothing is lost: Kafka holds the
backlog and the sink catches up. ``write`` blocks (the driver is synchronous); async callers run it
in an executor.

The ``*_row`` functions are pure: a record of docs/records.md in, a dict of typed column values out
(ISO or epoch-millisecond times become timezone-aware UTC datetimes). They accept their own output,
so ``write`` applies them to whatever it is given.

Why one bad record cannot stall a table. ``map_record`` maps a record and then checks that
ClickHouse will take every value (``check_row``): integers inside their column's range, strings
that encode as UTF-8 (JSON can carry lone surrogates). Otherwise the driver would refuse the whole
INSERT with an error that is not worth retrying, and the batch would be retried forever. A record
that fails is the caller's to divert (the Kafka sink writes it to ``rejections``). ``DateTime``
columns hold 1970-01-01 .. 2106-02-07 only, while events may say any year 0001-9999: those times
are clamped into the column's range (like the flooring to the second, a limit of the column; the
record itself keeps the exact time), so a far-dated sale still has its ledger rows.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors
from prometheus_client import Counter

from projections import kpi
from projections.migrate import check_identifier
from projections.migrate import client as make_client

log = logging.getLogger(__name__)

Row = dict[str, Any]

SINK_BATCHES = Counter("incentives_sink_batches", "Batches written to ClickHouse", ["table"])
SINK_ROWS = Counter("incentives_sink_rows", "Rows written to ClickHouse (copies included)", ["table"])
SINK_FAILURES = Counter(
    "incentives_sink_failures", "Failed ClickHouse insert attempts (each retry counts)", ["table"]
)

# Column order of each table, as in projections/sql/ (checked by tests/unit/test_projection_sql.py).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": (
        "event_id", "event_type", "partner_id", "occurred_at", "source", "payload",
        "kafka_topic", "kafka_partition", "kafka_offset",
    ),
    "ledger": (
        "entry_id", "partner_id", "seq", "account", "kind", "delta_available", "delta_held",
        "balance_available", "balance_held", "rule_id", "rules_version", "source_event_id",
        "occurred_at", "explanation", "prev_hash", "hash",
    ),
    "tier_changes": (
        "change_id", "partner_id", "from_tier", "to_tier", "reason", "source_event_id",
        "occurred_at", "rules_version",
    ),
    "alerts": (
        "alert_id", "alert_type", "severity", "partner_id", "trigger_event_id", "hold_order_id",
        "evidence", "status", "version", "occurred_at", "resolved_by", "held_points", "raised_at",
    ),
    "redemptions": (
        "redemption_id", "partner_id", "decision", "reason", "reward", "points", "source_event_id",
        "occurred_at",
    ),
    "rejections": ("event_id", "reason", "partner_id", "event_type", "occurred_at", "source", "raw"),
}

# ClickHouse type of each column, as in projections/sql/ (checked by tests/unit/test_sink_rows.py):
# what ``check_row`` enforces. Columns not listed are String.
COLUMN_TYPES: dict[str, dict[str, str]] = {
    "events": {"occurred_at": "DateTime", "kafka_partition": "UInt32", "kafka_offset": "UInt64"},
    "ledger": {"seq": "UInt64", "delta_available": "Int64", "delta_held": "Int64", "balance_available": "Int64",
               "balance_held": "Int64", "occurred_at": "DateTime"},
    "tier_changes": {"occurred_at": "DateTime"},
    "alerts": {"hold_order_id": "Nullable(String)", "version": "UInt64", "occurred_at": "DateTime",
               "held_points": "Int64", "raised_at": "DateTime"},
    "redemptions": {"points": "Int64", "occurred_at": "DateTime"},
    "rejections": {"occurred_at": "Nullable(DateTime)"},
}

_COLUMN_CHECKS: dict[str, tuple[tuple[str, str], ...]] = {
    table: tuple((name, COLUMN_TYPES[table].get(name, "String")) for name in columns)
    for table, columns in TABLE_COLUMNS.items()
}

_INT_RANGES = {"UInt32": (0, 2**32 - 1), "UInt64": (0, 2**64 - 1), "Int64": (-(2**63), 2**63 - 1)}

# ClickHouse ``DateTime`` is UInt32 seconds since the epoch.
DATETIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
DATETIME_MAX = datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC)

# ClickHouse error codes worth retrying: the server is up but overloaded or slow.
_TRANSIENT_SERVER_CODES = frozenset({
    159,  # TIMEOUT_EXCEEDED
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    241,  # MEMORY_LIMIT_EXCEEDED
    252,  # TOO_MANY_PARTS
})


class SinkUnavailable(RuntimeError):
    """ClickHouse stayed unreachable for ``max_wait`` seconds; the batch was not acknowledged."""


# ---------------------------------------------------------------------------------------------
# Conversions


def to_datetime(value: Any) -> datetime:
    """An aware UTC datetime, floored to the second, from ISO text, epoch milliseconds or datetime.

    Naive datetimes are taken as UTC (the driver would otherwise read them in local time).
    """
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, bool):
        raise TypeError(f"not a time: {value!r}")
    elif isinstance(value, (int, float)):
        moment = datetime.fromtimestamp(int(value) // 1000, tz=UTC)
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    else:
        raise TypeError(f"not a time: {value!r}")
    return moment.astimezone(UTC).replace(microsecond=0)


def column_datetime(value: Any) -> datetime:
    """``to_datetime``, clamped into the range of a ClickHouse ``DateTime`` column."""
    return min(max(to_datetime(value), DATETIME_MIN), DATETIME_MAX)


def iso_seconds(value: Any) -> str:
    """The record form of a time, ``2026-10-05T12:00:00Z``."""
    return to_datetime(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return raw_text(value)
    return str(value)


def raw_text(value: Any) -> str:
    """Original message bytes as text: UTF-8 if they are, else ``base64:`` + base64 (Avro)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    data = bytes(value)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode("ascii")


def _int(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise TypeError(f"not an integer: {value!r}")
    return int(value)


def _pick(record: Mapping[str, Any], name: str) -> Any:
    try:
        return record[name]
    except KeyError:
        raise ValueError(f"record has no field {name!r}: {dict(record)!r}") from None


# ---------------------------------------------------------------------------------------------
# Record -> row mappings (pure)


def event_row(
    event: Mapping[str, Any], json_line: str | bytes | None, topic: str, partition: int, offset: int
) -> Row:
    """A decoded input event and where it was read. ``json_line`` is the event's JSON line form;
    when None it is built from ``event`` (sorted keys, ``occurred_at`` as ISO text)."""
    if json_line is None:
        line_form = dict(event)
        line_form["occurred_at"] = iso_seconds(_pick(event, "occurred_at"))
        json_line = json.dumps(line_form, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {
        "event_id": _text(_pick(event, "event_id")),
        "event_type": _text(_pick(event, "event_type")),
        "partner_id": _text(_pick(event, "partner_id")),
        "occurred_at": column_datetime(_pick(event, "occurred_at")),
        "source": _text(event.get("source")) or "unknown",
        "payload": raw_text(json_line),
        "kafka_topic": _text(topic),
        "kafka_partition": _int(partition),
        "kafka_offset": _int(offset),
    }


def _event_row_again(row: Mapping[str, Any]) -> Row:
    """``write("events", ...)`` takes rows made by ``event_row`` (they need the Kafka position)."""
    return event_row(
        row, _pick(row, "payload"), _pick(row, "kafka_topic"),
        _pick(row, "kafka_partition"), _pick(row, "kafka_offset"),
    )


def ledger_row(entry: Mapping[str, Any]) -> Row:
    row: Row = {}
    for name in TABLE_COLUMNS["ledger"]:
        value = _pick(entry, name)
        if name in ("seq", "delta_available", "delta_held", "balance_available", "balance_held"):
            row[name] = _int(value)
        elif name == "occurred_at":
            row[name] = column_datetime(value)
        else:
            row[name] = _text(value)
    return row


def tier_change_row(change: Mapping[str, Any]) -> Row:
    row: Row = {name: _text(_pick(change, name)) for name in TABLE_COLUMNS["tier_changes"]}
    row["occurred_at"] = column_datetime(_pick(change, "occurred_at"))
    return row


def alert_row(alert: Mapping[str, Any]) -> Row:
    hold_order_id = alert.get("hold_order_id")
    return {
        "alert_id": _text(_pick(alert, "alert_id")),
        "alert_type": _text(_pick(alert, "alert_type")),
        "severity": _text(_pick(alert, "severity")),
        "partner_id": _text(_pick(alert, "partner_id")),
        "trigger_event_id": _text(_pick(alert, "trigger_event_id")),
        "hold_order_id": None if hold_order_id is None else _text(hold_order_id),
        "evidence": _text(alert.get("evidence")),
        "status": _text(_pick(alert, "status")),
        "version": _int(_pick(alert, "version")),
        "occurred_at": column_datetime(_pick(alert, "occurred_at")),
        "resolved_by": _text(alert.get("resolved_by")),
        "held_points": _int(alert.get("held_points") or 0),
        # records written before stage 1 published raised_at: the state's own time
        "raised_at": column_datetime(alert.get("raised_at") or _pick(alert, "occurred_at")),
    }


def redemption_row(decision: Mapping[str, Any]) -> Row:
    row: Row = {name: _text(_pick(decision, name)) for name in TABLE_COLUMNS["redemptions"]}
    row["points"] = _int(_pick(decision, "points"))
    row["occurred_at"] = column_datetime(_pick(decision, "occurred_at"))
    return row


def rejection_row(
    rejection: Mapping[str, Any], source: str | None = None, raw: str | bytes | None = None
) -> Row:
    """A rule rejection or a dead-lettered message (its DLQ headers as the dict).

    ``source`` is ``<topic>:<partition>:<offset>`` for a dead letter, and stands in for a missing
    ``event_id``; ``raw`` is the original message. Both default to the record's own keys.
    """
    source = _text(rejection.get("source") if source is None else source)
    event_id = _text(rejection.get("event_id")) or source
    if not event_id:
        raise ValueError(f"rejection has neither event_id nor source: {dict(rejection)!r}")
    occurred_at = rejection.get("occurred_at")
    return {
        "event_id": event_id,
        "reason": _text(_pick(rejection, "reason")),
        "partner_id": _text(rejection.get("partner_id")),
        "event_type": _text(rejection.get("event_type")),
        "occurred_at": None if occurred_at in (None, "") else column_datetime(occurred_at),
        "source": source,
        "raw": raw_text(rejection.get("raw") if raw is None else raw),
    }


ROW_MAPPERS: dict[str, Callable[[Mapping[str, Any]], Row]] = {
    "events": _event_row_again,
    "ledger": ledger_row,
    "tier_changes": tier_change_row,
    "alerts": alert_row,
    "redemptions": redemption_row,
    "rejections": rejection_row,
}


def check_row(table: str, row: Mapping[str, Any]) -> None:
    """ValueError unless ClickHouse takes every value of ``row`` (a ``*_row`` result) as it is.

    The mappers already give each column its Python type; this adds what the driver or the server
    would refuse for the whole INSERT: integers outside the column's range, datetimes outside
    ``DateTime`` (the mappers clamp, so only hand-made rows), and strings that do not encode as
    UTF-8 (lone surrogates)."""
    for name, kind in _COLUMN_CHECKS[table]:
        value = row[name]
        if kind == "String" and type(value) is str and value.isascii():
            continue                                   # the common case, first
        _check_value(table, name, kind, value)


def _check_value(table: str, name: str, kind: str, value: Any) -> None:
    if value is None:
        if not kind.startswith("Nullable("):
            raise ValueError(f"{table}.{name} is not nullable")
    elif kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"{table}.{name} = {value!r} does not fit {kind}")
    elif kind.endswith("DateTime)") or kind == "DateTime":
        if not isinstance(value, datetime) or value.tzinfo is None or not DATETIME_MIN <= value <= DATETIME_MAX:
            raise ValueError(f"{table}.{name} = {value!r} does not fit DateTime")
    elif not isinstance(value, str):
        raise ValueError(f"{table}.{name} = {value!r} is not a string")
    else:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{table}.{name} does not encode as UTF-8: {exc}") from None


def map_record(table: str, record: Mapping[str, Any]) -> Row:
    """The row of ``record`` for ``table``, checked by ``check_row``; ValueError/TypeError (or any
    error of the mapping) when the record cannot be a row."""
    if table not in TABLE_COLUMNS:
        raise ValueError(f"unknown projection table {table!r}; known: {sorted(TABLE_COLUMNS)}")
    if not isinstance(record, Mapping):
        raise TypeError(f"a {table} record is a JSON object, not {type(record).__name__}")
    row = ROW_MAPPERS[table](record)
    check_row(table, row)
    return row


def row_tuples(
    table: str, records: Sequence[Mapping[str, Any]], *, mapped: bool = False
) -> list[tuple[Any, ...]]:
    """The INSERT parameters for ``records``: one tuple per record, in the table's column order.

    ``mapped=True``: the records are rows ``map_record`` returned already (not mapped again)."""
    if table not in TABLE_COLUMNS:
        raise ValueError(f"unknown projection table {table!r}; known: {sorted(TABLE_COLUMNS)}")
    columns = TABLE_COLUMNS[table]
    if mapped:
        return [tuple(row[name] for name in columns) for row in records]
    out = []
    for record in records:
        row = map_record(table, record)
        out.append(tuple(row[name] for name in columns))
    return out


def insert_sql(database: str, table: str) -> str:
    columns = ", ".join(TABLE_COLUMNS[table])
    return f"INSERT INTO {check_identifier(database)}.{check_identifier(table)} ({columns}) VALUES"


# ---------------------------------------------------------------------------------------------
# The sink


def _size(params: Any) -> str:
    return f"{len(params)} rows" if isinstance(params, list) else "a KPI rebuild"


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (ch_errors.NetworkError, ch_errors.SocketTimeoutError, EOFError, OSError)):
        return True
    if isinstance(exc, ch_errors.ServerException):
        return exc.code in _TRANSIENT_SERVER_CODES
    return False


class ClickHouseSink:
    """Writes batches of records into the projection tables of ``settings.clickhouse_database``.

    ``max_wait`` bounds how long one ``write`` keeps retrying an unreachable server (seconds);
    backoff doubles from ``initial_backoff`` up to ``max_backoff``. ``client_factory``, ``sleep``
    and ``clock`` are there for tests. Safe to share between threads (one write at a time).
    """

    def __init__(
        self,
        settings: Any,
        *,
        max_wait: float = 60.0,
        initial_backoff: float = 0.2,
        max_backoff: float = 5.0,
        client_factory: Callable[[], Client] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = check_identifier(settings.clickhouse_database)
        self.max_wait = max_wait
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._client_factory = client_factory or (lambda: make_client(settings))
        self._sleep = sleep
        self._clock = clock
        self._client: Client | None = None
        self._lock = threading.Lock()

    def write(self, table: str, rows: Sequence[Mapping[str, Any]], *, mapped: bool = False) -> None:
        """Insert ``rows`` (records of docs/records.md, or rows from the ``*_row`` functions) into
        ``table`` in one INSERT. Returns once ClickHouse has them; raises ``SinkUnavailable`` when
        the server stayed unreachable for ``max_wait`` seconds, ``ValueError`` for a bad record.
        ``mapped=True``: every row comes from ``map_record`` (skips mapping them again)."""
        if not rows:
            return
        params = row_tuples(table, rows, mapped=mapped)
        sql = insert_sql(self.database, table)
        with self._lock:
            self._insert_with_retry(table, sql, params)
        SINK_BATCHES.labels(table=table).inc()
        SINK_ROWS.labels(table=table).inc(len(params))

    def rebuild_kpis(self, dirty: kpi.Dirty) -> int:
        """Rebuild the KPI rollup rows of `dirty` (projections/kpi.py), retrying like ``write``;
        returns the statements run."""
        if not dirty:
            return 0
        with self._lock:
            statements = kpi.rebuild(
                lambda sql, params: self._insert_with_retry("kpi_partner_month", sql, params), self.database, dirty)
        SINK_BATCHES.labels(table="kpi_partner_month").inc(statements)
        return statements

    def write_program_settings(self, rules_version: str, point_value_cents: int) -> None:
        """Record the program's point value for the cost KPIs (`program_settings`)."""
        with self._lock:
            kpi.write_program_settings(
                lambda sql, params: self._insert_with_retry("program_settings", sql, params), self.database,
                rules_version, point_value_cents, datetime.now(UTC))

    def close(self) -> None:
        with self._lock:
            self._drop_client()

    def _insert_with_retry(self, table: str, sql: str, params: Any) -> None:
        deadline = self._clock() + self.max_wait
        delay = self.initial_backoff
        attempt = 0
        while True:
            attempt += 1
            try:
                if self._client is None:
                    self._client = self._client_factory()
                self._client.execute(sql, params)
                if attempt > 1:
                    log.info("clickhouse sink: %s batch written after %d attempts", table, attempt)
                return
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                SINK_FAILURES.labels(table=table).inc()
                self._drop_client()
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise SinkUnavailable(
                        f"ClickHouse unreachable for {self.max_wait:g} s writing {_size(params)} "
                        f"to {self.database}.{table} ({attempt} attempts): {exc}"
                    ) from exc
                log.warning(
                    "clickhouse sink: %s insert failed (attempt %d), retrying in %.2f s: %s",
                    table, attempt, min(delay, remaining), exc,
                )
                self._sleep(min(delay, remaining))
                delay = min(delay * 2, self.max_backoff)

    def _drop_client(self) -> None:
        if self._client is not None:
            # A broken connection may fail to close; drop it anyway.
            with contextlib.suppress(Exception):
                self._client.disconnect()
            self._client = None
