"""ClickHouse down: the stages keep going, the sink keeps the backlog and catches up, exactly."""
from __future__ import annotations

import json

from processor.codec import from_json_line
from processor.devstack import clickhouse
from processor.producer import EventProducer

from .helpers import ch_scalar, wait_for, worker_partners


def _event(**fields) -> dict:
    return from_json_line(json.dumps(fields))


def test_clickhouse_outage_stalls_only_the_projections_and_nothing_is_lost(worker):
    clickhouse.stop(worker)
    try:
        with EventProducer(worker.kafka_bootstrap_servers) as producer:
            producer.send(_event(event_id="OUT-enrol", event_type="PartnerEnrolled", partner_id="OUT-1",
                                 occurred_at="2026-02-01T00:00:00Z", name="Outage", segment="strategic",
                                 region="emea"))
            for n in range(200):
                producer.send(_event(event_id=f"OUT-s{n}", event_type="SaleRecorded", partner_id="OUT-1",
                                     occurred_at=f"2026-02-{1 + n % 28:02d}T10:00:00Z", order_id=f"OUT-o{n}",
                                     customer_id=f"OUT-c{n}", sku="S", category="hardware", quantity=1,
                                     amount_cents=100_000))
        # stage 1 does not need ClickHouse: the worker's state has every sale while ClickHouse is down.
        # All 200 sales are in February: 1000 points each at registered (1100 at silver, from $25,000)
        # reach the 50,000 monthly cap well before the last; the rest write zero earn entries.
        balance = wait_for(lambda: worker_partners(worker).get("OUT-1", {}).get("points", {}).get("available"),
                           50_000, timeout=60)
        assert balance == 50_000
    finally:
        clickhouse.start(worker)
    total = wait_for(lambda: ch_scalar(worker, "SELECT sum(delta_available) FROM {db}.ledger FINAL "
                                               "WHERE partner_id = 'OUT-1'"), 50_000, timeout=120)
    assert total == 50_000
    # the sum is complete before the last (zero) entries land: the batch held since the outage may
    # carry only part of them, the rest come in the sink's next batch
    assert wait_for(lambda: ch_scalar(worker, "SELECT count() FROM {db}.ledger FINAL WHERE partner_id = 'OUT-1'"),
                    200, timeout=60) == 200
    assert wait_for(lambda: ch_scalar(worker, "SELECT count() FROM {db}.events FINAL WHERE partner_id = 'OUT-1'"),
                    201, timeout=60) == 201
