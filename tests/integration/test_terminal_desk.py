"""The analyst's desk in the terminal, on the real stack: `incentives alerts` lists the alerts a
scenario raises, `incentives alerts resolve` dismisses one and confirms another through
`AlertResolved` events, the ledger then holds the release and the forfeit, the auditor's replay
agrees, and a resolution that cannot apply is refused with exit 2 and writes nothing."""
from __future__ import annotations

import json

from processor.codec import from_json_line
from processor.kafka_replay import read_log
from processor.producer import EventProducer

from .helpers import ch_scalar, incentives, wait_for
from .test_worker_crash import _explain, _verified


def _event(**fields) -> dict:  # type: ignore[no-untyped-def]
    return from_json_line(json.dumps(fields))


def _scenario() -> list[dict]:
    enrol = {"event_type": "PartnerEnrolled", "occurred_at": "2026-02-01T09:00:00Z", "segment": "long_tail",
             "region": "emea"}
    sale = {"event_type": "SaleRecorded", "sku": "SKU-1", "category": "hardware", "quantity": 1}
    return [
        _event(event_id="DESK-e1", partner_id="DESK-A", name="A", **enrol),
        _event(event_id="DESK-e2", partner_id="DESK-B", name="B", **enrol),
        # DESK-B claims DESK-A's order: both are alerted, with DESK-B's claim as the trigger;
        # $1,000 hardware at registered tier = 1,000 points, held on both sides
        _event(event_id="DESK-s1", partner_id="DESK-A", order_id="DESK-O1", customer_id="DESK-C1",
               amount_cents=100_000, occurred_at="2026-02-02T10:00:00Z", **sale),
        _event(event_id="DESK-s2", partner_id="DESK-B", order_id="DESK-O1", customer_id="DESK-C1",
               amount_cents=100_000, occurred_at="2026-02-02T11:00:00Z", **sale),
        # DESK-A sells to DESK-B, an enrolled partner: self-dealing, $500 = 500 points held
        _event(event_id="DESK-s3", partner_id="DESK-A", order_id="DESK-O2", customer_id="DESK-B",
               amount_cents=50_000, occurred_at="2026-02-03T10:00:00Z", **sale),
    ]


EXPECTED = {"duplicate_order:DESK-B:DESK-s2", "duplicate_order:DESK-A:DESK-s2", "self_dealing:DESK-A:DESK-s3"}


def _listed(settings) -> set[str]:  # type: ignore[no-untyped-def]
    out = incentives(settings, "alerts", "--json", "--status", "all", "--limit", "1000")
    return {json.loads(line)["alert_id"] for line in out.stdout.splitlines()
            if line.strip() and json.loads(line)["partner_id"].startswith("DESK-")}


def _log_size(settings) -> int:  # type: ignore[no-untyped-def]
    return sum(len(records) for records in read_log(settings.kafka_bootstrap_servers).values())


def test_list_resolve_and_refuse_in_the_terminal(worker):
    with EventProducer(worker.kafka_bootstrap_servers) as producer:
        producer.send_many(_scenario())
    assert wait_for(lambda: _listed(worker), EXPECTED, timeout=60) == EXPECTED

    one = json.loads(incentives(worker, "alerts", "--json", "--partner", "DESK-A", "--type", "self_dealing")
                     .stdout.splitlines()[0])
    assert (one["alert_id"], one["severity"], one["status"], one["held_points"], one["trigger_event_id"]) == (
        "self_dealing:DESK-A:DESK-s3", "high", "open", 500, "DESK-s3")
    table = incentives(worker, "alerts", "--partner", "DESK-B").stdout
    assert "duplicate_order" in table and "DESK-B" in table and "1000" in table

    dismissed = incentives(worker, "alerts", "resolve", "duplicate_order:DESK-B:DESK-s2", "--decision", "dismissed",
                           "--analyst", "ana", "--note", "a reorder, checked with the customer")
    assert dismissed.returncode == 0, dismissed.stderr
    assert "release" in dismissed.stdout and "+1000" in dismissed.stdout, dismissed.stdout
    confirmed = incentives(worker, "alerts", "resolve", "self_dealing:DESK-A:DESK-s3", "--decision", "confirmed",
                           "--analyst", "ana")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "forfeit" in confirmed.stdout, confirmed.stdout

    assert wait_for(lambda: ch_scalar(worker, "SELECT groupArray(kind) FROM (SELECT kind FROM {db}.ledger FINAL "
                                              "WHERE source_event_id LIKE 'resolution:%DESK-%' ORDER BY kind)"),
                    ["forfeit", "release"]) == ["forfeit", "release"]
    # DESK-B: 1,000 earned, held, released; DESK-A: 1,000 held (still open) + 500 held, forfeited
    assert ch_scalar(worker, "SELECT sum(delta_available), sum(delta_held) FROM {db}.ledger FINAL "
                             "WHERE partner_id = 'DESK-B'") == 1000

    before = _log_size(worker)
    again = incentives(worker, "alerts", "resolve", "self_dealing:DESK-A:DESK-s3", "--decision", "dismissed",
                       "--analyst", "bob")
    unknown = incentives(worker, "alerts", "resolve", "self_dealing:DESK-A:nope", "--decision", "dismissed",
                         "--analyst", "bob")
    assert (again.returncode, unknown.returncode) == (2, 2)
    assert "already confirmed" in again.stderr and "alert_already_resolved" in again.stderr
    assert "unknown_alert" in unknown.stderr
    assert _log_size(worker) == before, "a refused resolution wrote to the log"

    report = _verified(worker)
    assert report.get("verified") is True, _explain(report)
