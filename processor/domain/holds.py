"""Holds on points and rebates for high-severity alerts, and their release or forfeit.

A hold moves what remains of an order's points (or a month's rebate) from available to held and
remembers every open alert holding it: the points come back when all of those alerts are dismissed
and are forfeited as soon as one is confirmed (SPEC sections 5 and 9).
"""
from __future__ import annotations

from typing import Any

from .outcome import Step
from .state import Alert, PartnerState


def hold_order(step: Step, st: PartnerState, alert: Alert, order_id: str) -> None:
    order = st.orders.get(order_id)
    if order is None or order.forfeited:
        return
    alert.holds.append(("order", order_id))
    if order.holders:
        order.holders.append(alert.alert_id)
        return
    order.holders.append(alert.alert_id)
    amount = order.remaining
    order.held = amount
    alert.held_points = amount
    if amount:
        step.post(st, "points", "hold", -amount, amount, f"anomaly.{alert.alert_type}.hold",
                  f"hold {amount} points of order {order_id} for alert {alert.alert_id}")


def hold_rebate(step: Step, st: PartnerState, alert: Alert, period: str) -> None:
    rebate = st.rebates.get(period)
    alert.holds.append(("rebate", period))
    if rebate is None or rebate.forfeited:
        return
    first = not rebate.holders
    rebate.holders.append(alert.alert_id)
    if first and rebate.amount_cents:
        rebate.held = rebate.amount_cents
        step.post(st, "rebate", "hold", -rebate.amount_cents, rebate.amount_cents,
                  f"anomaly.{alert.alert_type}.hold",
                  f"hold rebate of {period} ({rebate.amount_cents} cents) for alert {alert.alert_id}")


def _resolve(step: Step, st: PartnerState, alert: Alert, confirmed: bool) -> None:
    for kind, ref in alert.holds:
        target: Any = st.orders.get(ref) if kind == "order" else st.rebates.get(ref)
        if target is None or target.forfeited or alert.alert_id not in target.holders:
            continue
        account = "points" if kind == "order" else "rebate"
        what = f"order {ref}" if kind == "order" else f"rebate of {ref}"
        if confirmed:
            amount = target.held
            target.forfeited = True
            target.holders.clear()
            target.held = 0
            if amount:
                step.post(st, account, "forfeit", 0, -amount, "anomaly.forfeit",
                          f"forfeit {amount} held of {what}: alert {alert.alert_id} confirmed")
        else:
            target.holders.remove(alert.alert_id)
            if target.holders:
                continue
            amount = target.held
            target.held = 0
            if amount:
                step.post(st, account, "release", amount, -amount, "anomaly.release",
                          f"release {amount} held of {what}: alert {alert.alert_id} dismissed")


def on_alert_resolved(step: Step, st: PartnerState) -> str | None:
    ev = step.event
    alert = st.alerts.get(ev["alert_id"])
    if alert is None:
        return "unknown_alert"
    if alert.status != "open":
        return "alert_already_resolved"
    alert.status = ev["decision"]
    _resolve(step, st, alert, confirmed=ev["decision"] == "confirmed")
    step.publish_alert(st, alert, resolved_by=ev.get("analyst") or "")
    return None


def on_anomaly_detected(step: Step, st: PartnerState) -> str | None:
    """A stage-2 finding (or a recorded one, in a replay): raise it and hold what it names."""
    ev = step.event
    alert = step.raise_alert(st, ev["alert_type"], ev["trigger_event_id"], ev.get("evidence") or "",
                             hold_order_id=ev.get("hold_order_id"), severity=ev["severity"],
                             alert_id=ev["alert_id"])
    if alert is None:
        return None            # already raised: a no-op
    if alert.alert_type == "deal_conflict":
        deal = st.deals.get(st.deal_of_event.get(alert.trigger_event_id) or "")
        if deal is not None:
            deal.conflicted = True
    if alert.severity == "high" and alert.hold_order_id:
        hold_order(step, st, alert, alert.hold_order_id)
    step.publish_alert(st, alert)
    return None
