"""Builders of JSON event lines (SPEC section 3, JSON form) and the checks every replay test runs.

The tests treat the processor as a black box: they build a list of JSON lines, call
``processor.replay.replay_lines`` and read the SPEC section 6 replay document. Every run also checks the
ledger invariants (balances = sum of deltas, seq 1..n, the hash chain, the head), recomputed here with
the standard library only, so a wrong chain can never be confirmed by the code under test.

Builders give every event a fresh, unique ``event_id`` unless one is passed (``event_id="s1"``); a field
given as ``OMIT`` is left out of the line (for missing-field tests).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import defaultdict
from typing import Any

OMIT: Any = object()  # a field set to OMIT is removed from the event line

_ids = itertools.count(1)

LEDGER_KINDS = {
    "earn", "bonus", "spiff", "clawback", "redeem", "expire", "adjust", "hold", "release", "forfeit",
    "rebate",
}
LEDGER_FIELDS = {
    "entry_id", "partner_id", "seq", "account", "kind", "delta_available", "delta_held", "balance_available",
    "balance_held", "rule_id", "rules_version", "source_event_id", "occurred_at", "explanation", "prev_hash",
    "hash",
}
REJECTION_REASONS = {
    "undecodable", "unknown_event_type", "unknown_partner", "partner_inactive", "already_enrolled",
    "non_usd_currency", "unknown_order", "invalid_amount", "invalid_quantity", "insufficient_points",
    "duplicate_adjustment", "duplicate_deal", "unknown_deal", "deal_already_closed", "unknown_alert",
    "alert_already_resolved", "period_already_closed",
}
REJECTION_PREFIXES = ("missing_field:", "invalid_field:", "unknown_enum:")
ZERO_HASH = "0" * 64


# ---------------------------------------------------------------------------------------------- builders

def new_id(prefix: str = "ev") -> str:
    return f"{prefix}-{next(_ids):06d}"


def event(event_type: str, partner_id: Any, at: Any, *, event_id: Any = None, source: Any = "test",
          **fields: Any) -> str:
    body = {
        "event_id": new_id() if event_id is None else event_id,
        "event_type": event_type,
        "partner_id": partner_id,
        "occurred_at": at,
        "source": source,
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not OMIT})


def eid(line: str) -> str:
    """The event_id of a built line."""
    return json.loads(line)["event_id"]


def enrolled(pid: str, at: str = "2026-01-01T00:00:00Z", *, name: Any = None, segment: Any = "strategic",
             region: Any = "emea", **kw: Any) -> str:
    return event("PartnerEnrolled", pid, at, name=f"Partner {pid}" if name is None else name,
                 segment=segment, region=region, **kw)


def offboarded(pid: str, *, at: str, reason: Any = "contract ended", **kw: Any) -> str:
    return event("PartnerOffboarded", pid, at, reason=reason, **kw)


def sale(pid: str, order_id: Any, *, amount_cents: Any, at: str, category: Any = "hardware",
         quantity: Any = 1, customer_id: Any = None, sku: Any = "SKU-1", currency: Any = "USD",
         deal_id: Any = None, **kw: Any) -> str:
    # The default customer is unique per order, so no test trips near_duplicate_order or self_dealing
    # by accident.
    fields = {
        "order_id": order_id,
        "customer_id": f"C-{order_id}" if customer_id is None else customer_id,
        "sku": sku,
        "category": category,
        "quantity": quantity,
        "amount_cents": amount_cents,
        "currency": currency,
    }
    if deal_id is not None:
        fields["deal_id"] = deal_id
    fields.update(kw)
    return event("SaleRecorded", pid, at, **fields)


def returned(pid: str, order_id: Any, *, amount_cents: Any, at: str, reason: Any = None, **kw: Any) -> str:
    fields: dict[str, Any] = {"order_id": order_id, "amount_cents": amount_cents}
    if reason is not None:
        fields["reason"] = reason
    fields.update(kw)
    return event("SaleReturned", pid, at, **fields)


def deal(pid: str, deal_id: Any, *, customer_id: Any, at: str, expected_amount_cents: Any = 1_000_000,
         **kw: Any) -> str:
    return event("DealRegistered", pid, at, deal_id=deal_id, customer_id=customer_id,
                 expected_amount_cents=expected_amount_cents, **kw)


def deal_closed(pid: str, deal_id: Any, *, outcome: Any, at: str, **kw: Any) -> str:
    return event("DealClosed", pid, at, deal_id=deal_id, outcome=outcome, **kw)


def training(pid: str, course_id: Any, *, at: str, certification: Any = False, **kw: Any) -> str:
    return event("TrainingCompleted", pid, at, course_id=course_id, certification=certification, **kw)


def marketing(pid: str, activity_id: Any, *, activity_type: Any, at: str, **kw: Any) -> str:
    return event("MarketingActivityCompleted", pid, at, activity_id=activity_id, activity_type=activity_type,
                 **kw)


def redemption(pid: str, redemption_id: Any, *, points: Any, at: str, reward: Any = "merchandise",
               **kw: Any) -> str:
    return event("RedemptionRequested", pid, at, redemption_id=redemption_id, reward=reward, points=points,
                 **kw)


def adjustment(pid: str, adjustment_id: Any, *, points: Any, at: str, reason: Any = "goodwill",
               approved_by: Any = "manager-1", **kw: Any) -> str:
    return event("PointsAdjusted", pid, at, adjustment_id=adjustment_id, points=points, reason=reason,
                 approved_by=approved_by, **kw)


def resolved(pid: str, alert_id: str, *, decision: Any, at: str, analyst: Any = "analyst-1",
             **kw: Any) -> str:
    return event("AlertResolved", pid, at, alert_id=alert_id, decision=decision, analyst=analyst, **kw)


def anomaly(pid: str, alert_id: str, *, alert_type: str, severity: str, trigger_event_id: str, at: str,
            hold_order_id: Any = None, evidence: str = "recorded by stage 2", **kw: Any) -> str:
    fields: dict[str, Any] = {
        "alert_id": alert_id,
        "alert_type": alert_type,
        "severity": severity,
        "trigger_event_id": trigger_event_id,
        "evidence": evidence,
    }
    if hold_order_id is not None:
        fields["hold_order_id"] = hold_order_id
    fields.update(kw)
    return event("AnomalyDetected", pid, at, **fields)


def period_closed(period: str, *, at: str | None = None, **kw: Any) -> str:
    """PeriodClosed(period); by default it occurs at the first instant of the next month."""
    if at is None:
        year, month = int(period[:4]), int(period[5:7])
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        at = f"{year:04d}-{month:02d}-01T00:00:00Z"
    return event("PeriodClosed", "*", at, period=period, **kw)


# ---------------------------------------------------------------------------------------------- running

def run(lines: list[str], *, until: str | None = None, check: bool = True) -> dict:
    """Replay the lines with the ledger included and check every invariant of the result."""
    from processor.replay import replay_lines  # imported here so the tests collect before the code exists

    lines = list(lines)
    if until is None:
        result = replay_lines(lines, include_ledger=True)
    else:
        result = replay_lines(lines, include_ledger=True, until=until)
    if check:
        check_result(result, n_lines=len(lines) if until is None else None)
    return result


def canonical_hash(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_ledger(result: dict) -> None:
    """Per partner: seq 1..n in creation order, entry ids, the hash chain, running balances, totals, head."""
    partners = result["partners"]
    by_partner: dict[str, list[dict]] = defaultdict(list)
    for entry in result["ledger"]:
        assert set(entry) >= LEDGER_FIELDS, f"ledger entry lacks {LEDGER_FIELDS - set(entry)}: {entry}"
        by_partner[entry["partner_id"]].append(entry)
    assert set(by_partner) <= set(partners), f"ledger names partners not in 'partners': {set(by_partner)}"
    for pid, state in partners.items():
        entries = by_partner.get(pid, [])
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1)), f"{pid}: seq must run 1..n"
        prev = ZERO_HASH
        sums = {"points": [0, 0], "rebate": [0, 0]}
        for e in entries:
            assert e["entry_id"] == f"{pid}:{e['seq']}"
            assert e["prev_hash"] == prev, f"{pid} seq {e['seq']}: prev_hash breaks the chain"
            assert e["hash"] == canonical_hash(e), f"{pid} seq {e['seq']}: hash != sha256(canonical JSON)"
            prev = e["hash"]
            assert e["account"] in sums, e
            assert e["kind"] in LEDGER_KINDS, e
            da, dh = e["delta_available"], e["delta_held"]
            assert _is_int(da) and _is_int(dh), e
            if da == 0 and dh == 0:
                # SPEC 9: only an earn cut to 0 by the cap is written with delta 0.
                assert e["kind"] == "earn", f"zero-delta entry of kind {e['kind']}: {e}"
            if e["kind"] in ("hold", "release"):
                assert da == -dh, e
                assert (dh > 0) if e["kind"] == "hold" else (da > 0), e
            if e["kind"] == "forfeit":
                assert da == 0 and dh < 0, e
            if e["kind"] in ("redeem", "expire"):
                assert da < 0 and dh == 0, e
            if e["kind"] == "rebate":
                assert e["account"] == "rebate", e
            acc = sums[e["account"]]
            acc[0] += da
            acc[1] += dh
            assert (e["balance_available"], e["balance_held"]) == (acc[0], acc[1]), f"balances after: {e}"
        assert state["points"]["available"] == sums["points"][0], pid
        assert state["points"]["held"] == sums["points"][1], pid
        assert state["rebate_cents"]["available"] == sums["rebate"][0], pid
        assert state["rebate_cents"]["held"] == sums["rebate"][1], pid
        assert state["ledger_entries"] == len(entries), pid
        if entries:
            assert state["ledger_head"] == prev, pid


def check_result(result: dict, *, n_lines: int | None = None) -> None:
    for key in ("partners", "alerts", "rejections", "events_applied", "events_ignored_duplicate", "ledger"):
        assert key in result, f"replay document lacks {key!r}"
    check_ledger(result)
    ids = [a["alert_id"] for a in result["alerts"]]
    assert len(ids) == len(set(ids)), f"alerts must have one row per alert_id: {ids}"
    for a in result["alerts"]:
        assert a["alert_id"] == f"{a['alert_type']}:{a['partner_id']}:{a['trigger_event_id']}", a
    for r in result["rejections"]:
        assert r["reason"] in REJECTION_REASONS or r["reason"].startswith(REJECTION_PREFIXES), r
    if n_lines is not None:
        # AMBIGUOUS: every line is exactly one of applied, ignored duplicate or rejected (one rejection row).
        counted = result["events_applied"] + result["events_ignored_duplicate"] + len(result["rejections"])
        assert counted == n_lines, f"applied+duplicates+rejections = {counted}, lines = {n_lines}"


# ---------------------------------------------------------------------------------------------- reading

def points(result: dict, pid: str) -> tuple[int, int]:
    p = result["partners"][pid]["points"]
    return p["available"], p["held"]


def rebate(result: dict, pid: str) -> tuple[int, int]:
    r = result["partners"][pid]["rebate_cents"]
    return r["available"], r["held"]


def tier(result: dict, pid: str) -> str:
    return result["partners"][pid]["tier"]


def entries(result: dict, pid: str | None = None, *, kind: str | None = None, account: str | None = None,
            source: str | None = None) -> list[dict]:
    return [
        e for e in result["ledger"]
        if (pid is None or e["partner_id"] == pid) and (kind is None or e["kind"] == kind)
        and (account is None or e["account"] == account)
        and (source is None or e["source_event_id"] == source)
    ]


def deltas(result: dict, source: str, pid: str | None = None, account: str = "points") -> tuple[int, int]:
    """Sum of (delta_available, delta_held) of the entries written for one source event."""
    es = entries(result, pid, account=account, source=source)
    return sum(e["delta_available"] for e in es), sum(e["delta_held"] for e in es)


def alert_ids(result: dict, alert_type: str | None = None) -> list[str]:
    return [a["alert_id"] for a in result["alerts"] if alert_type is None or a["alert_type"] == alert_type]


def alert(result: dict, alert_id: str) -> dict:
    matches = [a for a in result["alerts"] if a["alert_id"] == alert_id]
    assert len(matches) == 1, f"expected one alert {alert_id}, got {alert_ids(result)}"
    return matches[0]


def rejections(result: dict) -> list[tuple[str, str]]:
    return [(r["event_id"], r["reason"]) for r in result["rejections"]]
