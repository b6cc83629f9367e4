"""`incentives simulate` twice on one live stack (issue 11): the second run continues the program in
the log (its own ids, a clock after the first run's last event), the two runs raise no
duplicate_order alert that their ground truth does not name (a second run used to raise thousands),
and `--score` prints precision and recall per alert type from what the live system raised."""
from __future__ import annotations

import json

from processor import scoring
from processor.domain.timeutil import parse_iso

from .helpers import ch_scalar, incentives, worker_log_tail

EVENTS = "1500"


def _simulate(settings, truth) -> list[dict]:
    # 100 events/s: a cross-partner claim copies an order sent 10 s earlier (1,000 events); the
    # raised anomaly rate gives each run a few of them in 1,500 events
    result = incentives(settings, "simulate", "--events", EVENTS, "--rate", "100", "--anomaly-rate", "0.05",
                        "--truth", str(truth), "--every", "5")
    assert result.returncode == 0, result.stdout + result.stderr + worker_log_tail(settings)
    return scoring.read_truth(truth.read_text().splitlines())


def test_two_runs_raise_no_duplicate_order_outside_the_truth_and_are_scored(worker, tmp_path):
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    truth1, truth2 = _simulate(worker, first), _simulate(worker, second)
    head1, end1, head2 = truth1[0], truth1[-1], truth2[0]
    assert (head1["kind"], end1["kind"], head2["kind"]) == ("run", "run_end", "run")
    assert end1["events"] == int(EVENTS) and truth2[-1]["events"] == int(EVENTS)
    assert head1["prefix"] != head2["prefix"]
    assert parse_iso(head2["start"]) > parse_iso(end1["last_occurred_at"])

    scored = incentives(worker, "simulate", "--score", "--truth", str(second), "--json", "--wait", "240")
    assert scored.returncode == 0, scored.stdout + scored.stderr + worker_log_tail(worker)
    doc = json.loads(scored.stdout.strip().splitlines()[-1])
    assert doc["caught_up"] is True, scored.stderr
    assert set(doc["types"]) == set(scoring.ALERT_TYPES)
    assert all({"precision", "recall", "alerts_per_1000_events"} <= set(row) for row in doc["types"].values())

    table = incentives(worker, "simulate", "--score", "--truth", str(first), "--wait", "120")
    assert table.returncode == 0, table.stdout + table.stderr
    header = next(line for line in table.stdout.splitlines() if line.startswith("alert type"))
    assert "precision" in header and "recall" in header
    for alert_type in scoring.ALERT_TYPES:
        assert any(line.startswith(alert_type + " ") for line in table.stdout.splitlines()), alert_type

    expected = {a for a in scoring.expected_ids(truth1 + truth2) if a.startswith("duplicate_order:")}
    assert expected, "no duplicate order was planted: the check below would prove nothing"
    raised = ch_scalar(worker, "SELECT groupArray(alert_id) FROM {db}.alerts FINAL WHERE alert_type = "
                               f"'duplicate_order' AND (trigger_event_id LIKE '{head1['prefix']}-%' "
                               f"OR trigger_event_id LIKE '{head2['prefix']}-%')")
    assert sorted(raised) == sorted(expected)
    # the score agrees: every duplicate_order alert of the second run was planted, and raised
    assert doc["types"]["duplicate_order"]["false_positives"] == 0
    assert doc["types"]["duplicate_order"]["missed"] == 0
