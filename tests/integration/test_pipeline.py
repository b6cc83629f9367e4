"""The vertical slice against the real broker, the real Faust worker and the real ClickHouse.

Each test uses its own partner ids, so the tests share one stack; the last one replays the whole
recorded log and checks that it agrees with the live system.
"""
from __future__ import annotations

import json

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from processor import topics
from processor.codec import encode, from_json_line
from processor.producer import EventProducer

from .helpers import ch_scalar, incentives, wait_for, worker_partners

# category multipliers of the default program, written out (SPEC section 4)
CATEGORY_PCT = {"hardware": 100, "software": 200, "services": 150, "devices": 100, "widgets": 100}


def enrolled(pid: str) -> dict:
    return from_json_line(json.dumps({
        "event_id": f"enrol-{pid}", "event_type": "PartnerEnrolled", "partner_id": pid,
        "occurred_at": "2026-01-05T09:00:00Z", "name": pid, "segment": "long_tail", "region": "emea"}))


def sale(pid: str, n: int, amount_cents: int, category: str, event_id: str | None = None) -> dict:
    return from_json_line(json.dumps({
        "event_id": event_id or f"sale-{pid}-{n}", "event_type": "SaleRecorded", "partner_id": pid,
        "occurred_at": f"2026-09-{1 + n % 28:02d}T10:{n % 60:02d}:00Z", "order_id": f"order-{pid}-{n}",
        "customer_id": f"cust-{pid}-{n}", "sku": "SKU-1", "category": category, "quantity": 1,
        "amount_cents": amount_cents}))


def test_thousand_sales_of_fifty_partners_give_the_exact_points_total(worker):
    partners = [f"T1-{i:02d}" for i in range(50)]
    categories = list(CATEGORY_PCT)
    events, expected = [], 0
    for p in partners:
        events.append(enrolled(p))
    for n in range(1000):
        pid = partners[n % 50]
        # <= $1,000 a sale and 20 sales a partner: no partner reaches silver ($25,000) or the cap
        amount = 1_000 + (n * 7_919) % 99_000
        category = categories[n % len(categories)]
        events.append(sale(pid, n, amount, category))
        # registered tier (100%): (amount // 100) * category_pct * 100 // 10000
        expected += (amount // 100) * CATEGORY_PCT[category] * 100 // 10_000
    with EventProducer(worker.kafka_bootstrap_servers) as producer:
        producer.send_many(events)

    total = wait_for(lambda: ch_scalar(worker, "SELECT sum(delta_available) FROM {db}.ledger FINAL "
                                               "WHERE partner_id LIKE 'T1-%'"), expected)
    assert total == expected
    assert ch_scalar(worker, "SELECT count() FROM {db}.ledger FINAL WHERE partner_id LIKE 'T1-%'") == 1000
    assert ch_scalar(worker, "SELECT count() FROM {db}.events FINAL WHERE partner_id LIKE 'T1-%'") == 1050
    # the worker shows its committed state, written just after the outputs ClickHouse already has
    def worker_total() -> int:
        balances = worker_partners(worker)
        return sum(balances[p]["points"]["available"] for p in partners if p in balances)

    assert wait_for(worker_total, expected, timeout=30) == expected


def test_corrupt_message_is_dead_lettered_and_the_next_one_processed(worker):
    producer = KafkaProducer(bootstrap_servers=worker.kafka_bootstrap_servers, acks="all")
    producer.send(topics.PARTNER_EVENTS, key=b"T2-A", value=encode(enrolled("T2-A"))).get(30)
    meta = producer.send(topics.PARTNER_EVENTS, key=b"T2-A", value=b"\xc3\x01not avro at all").get(30)
    producer.send(topics.PARTNER_EVENTS, key=b"T2-A", value=encode(sale("T2-A", 1, 250_000, "software"))).get(30)
    producer.close()

    # 2500 USD software x200% x100% = 5000 points
    assert wait_for(lambda: ch_scalar(worker, "SELECT sum(delta_available) FROM {db}.ledger FINAL "
                                              "WHERE partner_id = 'T2-A'"), 5000) == 5000
    source = f"{topics.PARTNER_EVENTS}:{meta.partition}:{meta.offset}"
    reason = wait_for(lambda: ch_scalar(worker, "SELECT any(reason) FROM {db}.rejections FINAL "
                                                f"WHERE source = '{source}'"), "undecodable")
    assert reason == "undecodable"

    consumer = KafkaConsumer(bootstrap_servers=worker.kafka_bootstrap_servers, enable_auto_commit=False,
                             consumer_timeout_ms=5000)
    parts = [TopicPartition(topics.DLQ, p) for p in consumer.partitions_for_topic(topics.DLQ)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    dead = [m for m in consumer if dict(m.headers).get("source") == source.encode()]
    consumer.close()
    assert len(dead) == 1
    assert dead[0].value == b"\xc3\x01not avro at all"          # the original bytes, kept
    assert dict(dead[0].headers)["reason"] == b"undecodable"


def test_a_redelivered_event_is_counted_once(worker):
    first = sale("T3-A", 1, 100_000, "services", event_id="T3-same-event")
    with EventProducer(worker.kafka_bootstrap_servers) as producer:
        producer.send(enrolled("T3-A"))
        producer.send(first)
        producer.send(first)                       # the same event_id again: a redelivery
        producer.send(sale("T3-A", 2, 100_000, "hardware"))
    # 1000 USD services x150% = 1500, then 1000 USD hardware x100% = 1000
    assert wait_for(lambda: ch_scalar(worker, "SELECT sum(delta_available) FROM {db}.ledger FINAL "
                                              "WHERE partner_id = 'T3-A'"), 2500) == 2500
    assert ch_scalar(worker, "SELECT count() FROM {db}.ledger FINAL WHERE partner_id = 'T3-A'") == 2
    assert wait_for(lambda: worker_partners(worker).get("T3-A", {}).get("points", {}).get("available"),
                    2500, timeout=30) == 2500


def test_kafka_replay_agrees_with_the_live_system(worker):
    result = incentives(worker, "replay", "--source", "kafka", "--verify", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["verified"] is True and report["differences"] == []
    assert report["partners"] >= 52


def test_verify_lists_a_tampered_ledger_row_and_exits_non_zero(worker):
    from projections.migrate import client
    from projections.sink import ClickHouseSink

    db = worker.clickhouse_database
    columns = ("entry_id", "partner_id", "seq", "account", "kind", "delta_available", "delta_held",
               "balance_available", "balance_held", "rule_id", "rules_version", "source_event_id", "occurred_at",
               "explanation", "prev_hash", "hash")
    row = client(worker).execute(f"SELECT {', '.join(columns)} FROM {db}.ledger FINAL "
                                 "WHERE partner_id = 'T3-A' AND seq = 1")[0]
    original = dict(zip(columns, row, strict=True))
    sink = ClickHouseSink(worker)
    try:
        sink.write("ledger", [{**original, "delta_available": original["delta_available"] + 1}])   # replaces it
        result = incentives(worker, "replay", "--source", "kafka", "--verify", "--json")
        assert result.returncode == 1, result.stdout + result.stderr
        differences = json.loads(result.stdout)["differences"]
        assert any(d.startswith("clickhouse chain: T3-A#1") for d in differences), differences
        assert any(d.startswith("T3-A: points") for d in differences), differences
    finally:
        sink.write("ledger", [original])
    assert incentives(worker, "replay", "--source", "kafka", "--verify").returncode == 0
