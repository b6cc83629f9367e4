"""The ClickHouse sink's pure parts: any record becomes a row, a skip or a rejection row (never an
exception, never a batch that can only be retried forever); the checks that a log went backwards;
the supervisor stops the worker on one and retries anything else.

The same path against the real broker and ClickHouse: tests/integration/test_sink_poison.py.
"""
from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from processor import topics
from processor.codec import decode, encode, from_json_line
from processor.stream import sink_consumer as sc
from projections import sink as sk
from tests.unit.builders import enrolled, sale

SQL = Path(__file__).resolve().parents[2] / "projections" / "sql"
LEDGER = topics.POINTS_LEDGER


def rec(topic: str, value: bytes | None, *, offset: int = 0, partition: int = 0, key: bytes | None = b"P1",
        headers: tuple = ()) -> ConsumerRecord:
    return ConsumerRecord(topic, partition, offset, 0, 0, key, value, None,
                          -1 if key is None else len(key), -1 if value is None else len(value), headers)


def ledger_entry(**over) -> dict:
    entry = {
        "entry_id": "P1:1", "partner_id": "P1", "seq": 1, "account": "points", "kind": "earn",
        "delta_available": 100, "delta_held": 0, "balance_available": 100, "balance_held": 0,
        "rule_id": "earn.base", "rules_version": "v1", "source_event_id": "e1",
        "occurred_at": "2026-10-05T12:00:00Z", "explanation": "earn 100", "prev_hash": "0" * 64, "hash": "ab" * 32,
    }
    entry.update(over)
    return entry


def dlq_headers(reason: str = "invalid_amount", source: str = "partner-events:1:7") -> tuple:
    rejection = {"event_id": "e9", "reason": reason, "partner_id": "P1", "event_type": "SaleRecorded",
                 "occurred_at": "2026-10-05T12:00:00Z"}
    return (("reason", reason.encode()), ("source", source.encode()), ("event_id", b"e9"),
            ("rejection", json.dumps(rejection).encode()))


def unmappable_count(topic: str) -> float:
    return REGISTRY.get_sample_value("incentives_sink_unmappable_total", {"topic": topic}) or 0.0


def assert_accounted(messages: list[ConsumerRecord], mapped: sc.MappedBatch) -> None:
    """Every message is exactly one row, skip or rejection row."""
    total_rows = sum(len(rows) for rows in mapped.rows.values())
    assert total_rows + len(mapped.skipped) == len(messages)
    assert len(set(mapped.unmappable)) == len(mapped.unmappable)
    for table, rows in mapped.rows.items():
        for row in rows:
            sk.check_row(table, row)                     # ClickHouse takes every one of them


# ----------------------------------------------------------------------------------------------
# partner-events


def test_undecodable_partner_events_are_skipped_not_rejected():
    messages = [rec(topics.PARTNER_EVENTS, value, offset=i)
                for i, value in enumerate([None, b"", b"garbage", b"\xc3\x01" + b"\x00" * 8, b"\xff" * 100_000])]
    mapped = sc.map_batch(messages)
    assert mapped.skipped == [f"partner-events:0:{i}" for i in range(5)]
    assert mapped.unmappable == [] and dict(mapped.rows) == {}


def test_a_tombstone_never_reaches_the_codec(monkeypatch):
    """decode(None) raised TypeError (not InvalidEvent) before the codec learned about tombstones;
    the sink does not depend on which: it skips a null value itself."""
    def strict_decode(data):
        assert data is not None
        return decode(data)

    monkeypatch.setattr(sc, "decode", strict_decode)
    assert sc.map_batch([rec(topics.PARTNER_EVENTS, None)]).skipped == ["partner-events:0:0"]


def test_a_valid_event_is_a_row_and_a_far_dated_one_is_clamped_into_datetime():
    good = encode(from_json_line(enrolled("P1")))
    ancient = encode(from_json_line(sale("P1", "O1", amount_cents=100, at="0001-01-01T00:00:00Z")))
    future = encode(from_json_line(sale("P1", "O2", amount_cents=100, at="9999-12-31T23:59:59Z")))
    mapped = sc.map_batch([rec(topics.PARTNER_EVENTS, v, offset=i) for i, v in enumerate([good, ancient, future])])
    rows = mapped.rows["events"]
    assert [r["kafka_offset"] for r in rows] == [0, 1, 2]
    assert rows[1]["occurred_at"] == sk.DATETIME_MIN and rows[2]["occurred_at"] == sk.DATETIME_MAX
    assert '"occurred_at":"0001-01-01T00:00:00' in rows[1]["payload"]     # the exact time stays in the payload


# ----------------------------------------------------------------------------------------------
# output topics


@pytest.mark.parametrize("value", [
    None, b"", b"\xff\xfe", b"not json", b"[]", b"42", b"null", b"{}", b'"text"',
    b"[" * 100_000,                                                        # RecursionError in json
    json.dumps(ledger_entry(seq=-1)).encode(),                             # UInt64
    json.dumps(ledger_entry(delta_available=2**63)).encode(),              # Int64
    json.dumps(ledger_entry(seq="x")).encode(),
    json.dumps(ledger_entry(occurred_at="yesterday")).encode(),
    json.dumps(ledger_entry(occurred_at=None)).encode(),
    b'{"entry_id": "\\ud800"}',
    json.dumps(ledger_entry(explanation="\ud800")).encode(),              # lone surrogate: no UTF-8
    json.dumps({k: v for k, v in ledger_entry().items() if k != "hash"}).encode(),
])
def test_an_output_record_that_cannot_be_a_row_is_a_rejection_row(value):
    before = unmappable_count(LEDGER)
    mapped = sc.map_batch([rec(LEDGER, value, offset=17, partition=3)])
    assert mapped.unmappable == ["points-ledger:3:17"]
    (row,) = mapped.rows["rejections"]
    assert row["event_id"] == row["source"] == "points-ledger:3:17"
    assert row["reason"] == "undecodable"
    assert row["raw"] == sk.raw_text(value or b"")
    assert "ledger" not in mapped.rows
    assert unmappable_count(LEDGER) == before + 1


def test_good_output_records_are_rows_next_to_bad_ones():
    alert = {"alert_id": "a1", "alert_type": "duplicate_order", "severity": "high", "partner_id": "P1",
             "trigger_event_id": "e7", "hold_order_id": None, "evidence": "x", "status": "open", "version": 1,
             "occurred_at": "2026-10-05T12:00:00Z", "resolved_by": "", "held_points": 0}
    messages = [
        rec(LEDGER, json.dumps(ledger_entry()).encode(), offset=0),
        rec(LEDGER, None, offset=1),
        rec(LEDGER, json.dumps(ledger_entry(entry_id="P1:2", seq=2, occurred_at="1900-01-01T00:00:00Z")).encode(),
            offset=2),
        rec(topics.ANOMALY_ALERTS, json.dumps(alert).encode(), offset=0),
        rec(topics.TIER_CHANGES, b"{", offset=5),
        rec(topics.REDEMPTION_DECISIONS, json.dumps({"redemption_id": "r1"}).encode(), offset=6),
    ]
    mapped = sc.map_batch(messages)
    assert [r["entry_id"] for r in mapped.rows["ledger"]] == ["P1:1", "P1:2"]
    assert mapped.rows["ledger"][1]["occurred_at"] == sk.DATETIME_MIN
    assert [r["alert_id"] for r in mapped.rows["alerts"]] == ["a1"]
    assert mapped.unmappable == ["points-ledger:0:1", "tier-changes:0:5", "redemption-decisions:0:6"]
    assert_accounted(messages, mapped)
    assert sc.rows_of_batch(messages).keys() == mapped.rows.keys()


# ----------------------------------------------------------------------------------------------
# the DLQ


def test_a_dead_letter_is_its_rejection_even_with_a_null_value():
    mapped = sc.map_batch([rec(topics.DLQ, b"\xc3\x01raw", headers=dlq_headers()),
                           rec(topics.DLQ, None, offset=1, headers=dlq_headers("undecodable", "partner-events:0:3"))])
    first, tombstone = mapped.rows["rejections"]
    assert (first["event_id"], first["reason"], first["source"]) == ("e9", "invalid_amount", "partner-events:1:7")
    assert first["raw"].startswith("base64:")
    assert (tombstone["reason"], tombstone["source"], tombstone["raw"]) == ("undecodable", "partner-events:0:3", "")
    assert mapped.unmappable == []


def test_a_dead_letter_with_only_single_headers_still_maps():
    headers = (("reason", b"undecodable"), ("source", b"partner-events:2:9"), ("event_id", b""))
    (row,) = sc.map_batch([rec(topics.DLQ, b"x", headers=headers)]).rows["rejections"]
    assert (row["event_id"], row["reason"], row["source"]) == ("partner-events:2:9", "undecodable",
                                                               "partner-events:2:9")


@pytest.mark.parametrize("headers", [
    (),
    (("rejection", b"{not json"),),
    (("rejection", b"[1]"),),
    (("rejection", b'{"event_id": "e1"}'),),                                # no reason
    (("reason", b"\xff\xfe"),),
    (("reason", None),),
    (("rejection", json.dumps({"reason": "r", "occurred_at": "garbage"}).encode()),),
    (*dlq_headers()[:3], ("rejection", json.dumps({"reason": "r"}).encode()), ("source", b"\xff")),
])
def test_a_dead_letter_with_missing_or_garbage_headers_is_an_undecodable_rejection(headers):
    mapped = sc.map_batch([rec(topics.DLQ, b"payload", offset=4, headers=headers)])
    (row,) = mapped.rows["rejections"]
    assert (row["event_id"], row["reason"], row["source"], row["raw"]) == (
        "partner-events-dlq:0:4", "undecodable", "partner-events-dlq:0:4", "payload")
    assert mapped.unmappable == ["partner-events-dlq:0:4"]


# ----------------------------------------------------------------------------------------------
# unreadable records, unknown topics, accounting for anything


def test_unreadable_records_become_rejection_rows_and_advance_the_commit():
    messages = [rec(LEDGER, json.dumps(ledger_entry()).encode(), offset=4)]
    unreadable = [sc.Unreadable(LEDGER, 0, 5, "UnicodeDecodeError"), sc.Unreadable(topics.PARTNER_EVENTS, 2, 9, "x")]
    mapped = sc.map_batch(messages, unreadable)
    assert mapped.unmappable == ["points-ledger:0:5", "partner-events:2:9"]
    assert [r["source"] for r in mapped.rows["rejections"]] == mapped.unmappable
    batch = sc.Batch({TopicPartition(LEDGER, 0): messages}, unreadable)
    assert batch.offsets() == {TopicPartition(LEDGER, 0): 6, TopicPartition(topics.PARTNER_EVENTS, 2): 10}
    assert len(batch) == 3


def test_a_topic_without_a_table_is_unmappable_not_a_crash():
    mapped = sc.map_batch([rec("something-else", b"{}")])
    assert mapped.unmappable == ["something-else:0:0"]


SINK_TOPICS = sorted(sc.TABLE_OF_TOPIC)
header = st.tuples(st.sampled_from(["rejection", "reason", "source", "event_id", "x", ""]),
                   st.one_of(st.none(), st.binary(max_size=40),
                             st.sampled_from([b"{}", b'{"reason": "r"}', b"partner-events:0:1", b"\xff"])))
value = st.one_of(st.none(), st.binary(max_size=200), st.sampled_from([
    b"{}", b"[]", b"null", json.dumps(ledger_entry()).encode(), encode(from_json_line(enrolled("P9"))),
    json.dumps(ledger_entry(occurred_at=-(10**18))).encode()]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(SINK_TOPICS), st.one_of(st.none(), st.binary(max_size=20)), value,
                          st.lists(header, max_size=4)), max_size=12))
def test_any_batch_is_accounted_for_and_insertable(records):
    messages = [rec(topic, v, offset=i, key=k, headers=tuple(h)) for i, (topic, k, v, h) in enumerate(records)]
    assert_accounted(messages, sc.map_batch(messages))


# ----------------------------------------------------------------------------------------------
# the rows' checks follow the SQL


def test_column_types_follow_the_sql():
    for table, columns in sk.TABLE_COLUMNS.items():
        sql = next(p for p in sorted(SQL.glob("*.sql")) if f"{{db}}.{table}\n" in p.read_text()).read_text()
        body = sql[sql.index(f"{{db}}.{table}\n"):]
        declared = dict(re.findall(r"^\s{4}(\w+)\s+([\w()']+)", body[:body.index("ENGINE")], re.M))
        for later in sorted(SQL.glob("*.sql")):   # columns added since
            declared.update(re.findall(rf"ALTER TABLE {{db}}\.{table} ADD COLUMN (\w+) ([\w()']+)",
                                       later.read_text()))
        for name in columns:
            want = declared[name].replace("('UTC')", "")
            assert sk.COLUMN_TYPES[table].get(name, "String") == want, (table, name)


def test_check_row_refuses_what_clickhouse_would_refuse():
    row = sk.ledger_row(ledger_entry())
    sk.check_row("ledger", row)
    for bad in ({"seq": -1}, {"seq": 2**64}, {"delta_held": -(2**63) - 1}, {"explanation": "\udcff"},
                {"occurred_at": datetime(1969, 12, 31, tzinfo=UTC)}, {"occurred_at": None}, {"seq": True},
                {"account": 5}):
        with pytest.raises(ValueError):
            sk.check_row("ledger", {**row, **bad})
    assert sk.column_datetime("2200-01-01T00:00:00Z") == sk.DATETIME_MAX


def test_write_of_mapped_rows_does_not_map_again():
    row = sk.map_record("ledger", ledger_entry())
    assert sk.row_tuples("ledger", [row], mapped=True) == sk.row_tuples("ledger", [ledger_entry()])


# ----------------------------------------------------------------------------------------------
# logs that go backwards


TP = TopicPartition("partner-events", 2)


def test_check_log_not_behind():
    sc.check_log_not_behind(TP, 10, 10)
    sc.check_log_not_behind(TP, 0, 0)
    sc.check_log_not_behind(TP, None, 5)
    sc.check_log_not_behind(TP, 5, None)
    with pytest.raises(sc.LogWentBackwards) as err:
        sc.check_log_not_behind(TP, 5000, 12, committed=5000)
    message = str(err.value)
    assert "partner-events[2]" in message and "5000" in message and "high watermark is 12" in message
    assert (err.value.topic, err.value.partition) == ("partner-events", 2)


def test_check_not_rewound():
    sc.check_not_rewound(TP, None, 0)
    sc.check_not_rewound(TP, 10, 10)
    sc.check_not_rewound(TP, 10, 15)
    with pytest.raises(sc.LogWentBackwards, match=r"committed offset 10, but the group now starts at offset 3"):
        sc.check_not_rewound(TP, 10, 3)


def run(coro):
    return asyncio.run(coro)


def test_supervise_stops_the_worker_on_a_log_that_went_backwards_and_retries_anything_else():
    calls, stops, sleeps = [], [], []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("broker gone")
        raise sc.LogWentBackwards(TP, "position 9 but high watermark 0")

    async def no_sleep(seconds):
        sleeps.append(seconds)

    run(sc.supervise(flaky, stop=stops.append, sleep=no_sleep))
    assert len(calls) == 3 and sleeps == [1.0, 2.0]
    assert stops == ["ClickHouse sink (partner-events[2]: the log went backwards)"]


class FakeReader:
    def __init__(self):
        self.commits = []

    async def commit(self, offsets):
        self.commits.append(dict(offsets))


def test_project_batch_writes_rejections_and_commits_past_the_poison():
    records = {TopicPartition(LEDGER, 0): [rec(LEDGER, json.dumps(ledger_entry()).encode(), offset=0),
                                           rec(LEDGER, b"\x00garbage", offset=1)]}
    written = []
    reader = FakeReader()
    mapped = run(sc.project_batch(reader, sc.Batch(records, [sc.Unreadable(LEDGER, 0, 2, "x")]),  # type: ignore[arg-type]
                                  written.append))
    assert {t: len(r) for t, r in written[0].items()} == {"ledger": 1, "rejections": 2}
    assert reader.commits == [{TopicPartition(LEDGER, 0): 3}]
    assert mapped.unmappable == ["points-ledger:0:1", "points-ledger:0:2"]


# ----------------------------------------------------------------------------------------------
# the consumer's error paths, on a fake aiokafka consumer


class FakeConsumer:
    def __init__(self, *results, highwater=None, position=None):
        self.results = list(results)          # exceptions to raise or dicts to return from getmany
        self.assigned = {TP}
        self.hw = {TP: highwater}
        self.pos = {TP: position}
        self.sought_to_beginning = []

    async def getmany(self, *partitions, timeout_ms=0, max_records=None):
        result = self.results.pop(0) if self.results else {}
        if isinstance(result, BaseException):
            raise result
        return result

    def assignment(self):
        return set(self.assigned)

    def highwater(self, tp):
        return self.hw[tp]

    async def position(self, tp):
        return self.pos[tp]

    async def seek_to_beginning(self, *tps):
        self.sought_to_beginning += tps

    async def stop(self):
        pass


def reader_with(fake, memory=None):
    async def build():
        reader = sc.SinkConsumer("127.0.0.1:1", "g", [TP.topic], committed_memory=memory)
        reader.consumer = fake  # type: ignore[assignment]
        return reader

    return asyncio.run(build())


def lag(tp=TP):
    return REGISTRY.get_sample_value("incentives_sink_lag", {"topic": tp.topic, "partition": str(tp.partition)})


def test_offset_out_of_range_stops_instead_of_resetting():
    from aiokafka.errors import OffsetOutOfRangeError

    reader = reader_with(FakeConsumer(OffsetOutOfRangeError({TP: 900})), memory={TP: 900})
    with pytest.raises(sc.LogWentBackwards, match=r"position 900 is out of range \(committed offset 900\)"):
        asyncio.run(reader.next_batch())


def test_no_committed_offset_reads_a_fresh_partition_from_the_beginning_but_not_a_known_one():
    from aiokafka.errors import NoOffsetForPartitionError

    fake = FakeConsumer(NoOffsetForPartitionError(TP))
    assert len(asyncio.run(reader_with(fake).next_batch())) == 0
    assert fake.sought_to_beginning == [TP]
    known = FakeConsumer(NoOffsetForPartitionError(TP))
    with pytest.raises(sc.LogWentBackwards, match="committed offset 12, but the group has no committed offset"):
        asyncio.run(reader_with(known, memory={TP: 12}).next_batch())
    assert known.sought_to_beginning == []


def test_a_record_larger_than_the_fetch_size_is_recorded_not_lost():
    from aiokafka.errors import RecordTooLargeError

    fake = FakeConsumer(RecordTooLargeError("too large at %s=%s", TP, 41, 1024))
    batch = asyncio.run(reader_with(fake).next_batch())
    assert batch.unreadable == [sc.Unreadable(TP.topic, TP.partition, 41, "RecordTooLargeError")]
    assert batch.offsets() == {TP: 42}


def test_position_above_the_high_watermark_stops_and_lag_is_reported_and_forgotten():
    reader = reader_with(FakeConsumer(highwater=5, position=100), memory={TP: 100})
    with pytest.raises(sc.LogWentBackwards, match=r"committed offset 100, position 100 but the broker's high "
                                                  r"watermark is 5"):
        asyncio.run(reader.next_batch())
    fake = FakeConsumer(highwater=50, position=20)
    reader = reader_with(fake, memory={TP: 20})
    asyncio.run(reader.next_batch())
    assert lag() == 30
    asyncio.run(sc._Rebalance(reader).on_partitions_revoked([TP]))
    assert lag() is None
    asyncio.run(reader.next_batch())
    assert lag() == 30
    asyncio.run(reader.stop())
    assert lag() is None


def test_an_assignment_that_starts_below_what_this_process_committed_stops():
    reader = reader_with(FakeConsumer(highwater=50, position=7), memory={TP: 30})
    with pytest.raises(sc.LogWentBackwards, match="committed offset 30, but the group now starts at offset 7"):
        asyncio.run(reader.next_batch())
