"""Enrolment, offboarding and deal registration: the partner's standing and its deals."""
from __future__ import annotations

from .outcome import Step
from .state import Deal, PartnerState


def on_enrolled(step: Step, st: PartnerState) -> str | None:
    ev = step.event
    if st.active:
        return "already_enrolled"
    if not st.enrolled:
        st.enrolled_ms = step.occurred_ms
    st.enrolled = st.active = True          # an offboarded partner comes back with its balances
    st.name, st.segment, st.region = ev["name"], ev["segment"], ev["region"]
    step.forward(f"customer:{st.partner_id}", {"kind": "partner_status", "partner_id": st.partner_id,
                                                "active": True, "event_id": step.event_id})
    return None


def on_offboarded(step: Step, st: PartnerState) -> str | None:
    if not st.active:
        return "partner_inactive"
    st.active = False
    step.forward(f"customer:{st.partner_id}", {"kind": "partner_status", "partner_id": st.partner_id,
                                                "active": False, "event_id": step.event_id})
    return None


def on_deal_registered(step: Step, st: PartnerState, deal_taken: bool) -> str | None:
    """`deal_taken`: the deal id is already registered (by anyone the caller can see)."""
    ev = step.event
    if not st.active:
        return "partner_inactive"
    if ev["expected_amount_cents"] < 0:
        return "invalid_amount"
    if deal_taken or ev["deal_id"] in st.deals:
        return "duplicate_deal"
    st.deals[ev["deal_id"]] = Deal(ev["deal_id"], ev["customer_id"], step.event_id, step.occurred_ms)
    st.deal_of_event[step.event_id] = ev["deal_id"]
    step.forward(f"customer:{ev['customer_id']}", {
        "kind": "deal_registered", "deal_id": ev["deal_id"], "customer_id": ev["customer_id"],
        "partner_id": st.partner_id, "event_id": step.event_id, "occurred_at": step.occurred_ms})
    return None


def on_deal_closed(step: Step, st: PartnerState) -> str | None:
    ev = step.event
    deal = st.deals.get(ev["deal_id"])
    if deal is None:
        return "unknown_deal"
    if deal.status != "open":
        return "deal_already_closed"
    deal.status = ev["outcome"]
    step.forward(f"customer:{deal.customer_id}", {
        "kind": "deal_closed", "deal_id": deal.deal_id, "customer_id": deal.customer_id,
        "partner_id": st.partner_id, "event_id": step.event_id})
    return None
