"""Redemptions and manual adjustments: spending and correcting available points."""
from __future__ import annotations

from .outcome import Step
from .state import PartnerState


def on_redemption(step: Step, st: PartnerState) -> str | None:
    ev = step.event
    rid = ev["redemption_id"]
    if rid in st.redemptions:
        return None           # the first decision stands; a repeat writes nothing
    points = ev["points"]
    reason = None
    if not st.active:
        reason = "partner_inactive"
    elif points <= 0:
        reason = "invalid_amount"
    elif st.available() < points:
        reason = "insufficient_points"
    st.redemptions[rid] = reason or "accepted"
    step.out.add_redemption({
        "redemption_id": rid, "partner_id": st.partner_id,
        "decision": "rejected" if reason else "accepted", "reason": reason or "",
        "reward": ev["reward"], "points": points, "source_event_id": step.event_id,
        "occurred_at": step.occurred_iso,
    })
    if reason is None:
        step.post(st, "points", "redeem", -points, 0, "redemption",
                  f"redemption {rid}: {points} points for {ev['reward']}")
    return reason


def on_adjustment(step: Step, st: PartnerState) -> str | None:
    ev = step.event
    if ev["adjustment_id"] in st.adjustments:
        return "duplicate_adjustment"
    points = ev["points"]
    if points == 0:
        return "invalid_amount"
    st.adjustments.add(ev["adjustment_id"])
    step.post(st, "points", "adjust", points, 0, "adjustment",
              f"adjustment {ev['adjustment_id']}: {points:+d} points, {ev['reason']}, approved by {ev['approved_by']}")
    if abs(points) > step.program.large_adjustment_points:
        alert = step.raise_alert(st, "large_adjustment", step.event_id,
                                 f"adjustment of {points:+d} points approved by {ev['approved_by']}")
        if alert:
            step.publish_alert(st, alert)
    return None
