"""Stage 2: detectors that look across partners, keyed by order id or customer id.

Stage 1 forwards the facts they need (accepted order claims, sales by customer, partner status,
deal registrations and closes) under a key (`order:<id>` or `customer:<id>`); this fold keeps a
small state per key and returns its findings as `AnomalyDetected` events, which are appended to
`partner-events` so that what was found live is part of the log and a replay of the log is exact.
"""
from __future__ import annotations

from typing import Any

from .program import Program
from .timeutil import MS_DAY


def anomaly_event(program: Program, alert_type: str, partner_id: str, trigger_event_id: str,
                  occurred_ms: int, evidence: str, hold_order_id: str | None = None) -> dict[str, Any]:
    alert_id = f"{alert_type}:{partner_id}:{trigger_event_id}"
    return {
        "event_id": f"anomaly:{alert_id}", "event_type": "AnomalyDetected", "partner_id": partner_id,
        "occurred_at": occurred_ms, "source": "stage2", "alert_id": alert_id, "alert_type": alert_type,
        "severity": program.severity[alert_type], "trigger_event_id": trigger_event_id,
        "hold_order_id": hold_order_id, "evidence": evidence,
    }


def apply(program: Program, state: dict[str, Any] | None, record: dict[str, Any]
          ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fold one forwarded record into its key's state; return the new state and the findings."""
    state = dict(state or {})
    kind = record["kind"]
    if kind == "order_claim":
        return _order_claim(program, state, record)
    if kind == "customer_sale":
        found = []
        if state.get("partner_active"):
            found.append(anomaly_event(
                program, "self_dealing", record["partner_id"], record["event_id"], record["occurred_at"],
                f"order {record['order_id']} sold to customer {record['customer_id']}, an enrolled partner",
                hold_order_id=record["order_id"]))
        return state, found
    if kind == "partner_status":
        state["partner_active"] = record["active"]
        return state, []
    if kind == "deal_registered":
        return _deal_registered(program, state, record)
    if kind == "deal_closed":
        # a closed deal can never conflict again: it leaves the state (which stays bounded by the
        # customer's open deals, however long its history)
        state["deals"] = [d for d in state.get("deals", []) if d["deal_id"] != record["deal_id"]]
        return state, []
    raise ValueError(f"unknown stage-2 record kind {kind!r}")


def _order_claim(program: Program, state: dict[str, Any], record: dict[str, Any]):
    claims = [tuple(c) for c in state.get("claims", [])]
    partner, event_id = record["partner_id"], record["event_id"]
    if any(p == partner for p, _ in claims):
        return state, []
    state["claims"] = claims + [(partner, event_id)]
    if not claims:
        return state, []
    first_partner, first_event = claims[0]
    order_id = record["order_id"]
    evidence = (f"order {order_id} claimed by {partner} (event {event_id}) after {first_partner} "
                f"(event {first_event})")
    return state, [
        anomaly_event(program, "duplicate_order", partner, event_id, record["occurred_at"], evidence, order_id),
        anomaly_event(program, "duplicate_order", first_partner, event_id, record["occurred_at"], evidence,
                      order_id),
    ]


def _deal_registered(program: Program, state: dict[str, Any], record: dict[str, Any]):
    deals = list(state.get("deals", []))
    if any(d["deal_id"] == record["deal_id"] and d["partner_id"] == record["partner_id"] for d in deals):
        return state, []           # the same registration again (a redelivery): already handled
    since = record["occurred_at"] - program.deal_conflict_window_days * MS_DAY
    rivals = [d for d in deals if d["open"] and d["partner_id"] != record["partner_id"]
              and d["registered_ms"] >= since]
    deals.append({"deal_id": record["deal_id"], "partner_id": record["partner_id"],
                  "registered_ms": record["occurred_at"], "open": True})
    state["deals"] = deals
    if not rivals:
        return state, []
    evidence = (f"deal {record['deal_id']} for customer {record['customer_id']} conflicts with open deal(s) "
                + ", ".join(f"{d['deal_id']} of {d['partner_id']}" for d in rivals))
    return state, [anomaly_event(program, "deal_conflict", record["partner_id"], record["event_id"],
                                 record["occurred_at"], evidence)]
