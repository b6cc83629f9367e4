"""Returns and clawback (SPEC section 4): the order's points are taken back in proportion to the
returned amount, never beyond the order, from held if the order is held, else from available."""
from __future__ import annotations

from .outcome import Step
from .state import PartnerState


def on_return(step: Step, st: PartnerState) -> str | None:
    ev = step.event
    amount = ev["amount_cents"]
    if amount <= 0:
        return "invalid_amount"
    order = st.orders.get(ev["order_id"])
    if order is None:
        return "unknown_order"
    counted = min(amount, order.amount_cents - order.returned_cents)
    order.returned_cents += counted
    stats = st.month(step.month)
    stats.net_cents -= counted
    stats.returns_cents += counted
    target = order.points * order.returned_cents // order.amount_cents if order.amount_cents else 0
    claw = target - order.clawed_back
    order.clawed_back = target
    if claw <= 0 or order.forfeited:
        return None       # nothing more to take, or already forfeited: not taken again
    explanation = (f"return of {order.returned_cents} of {order.amount_cents} cents on order {order.order_id}: "
                   f"{order.points} x {order.returned_cents} // {order.amount_cents} = {target}, "
                   f"{claw} newly clawed back")
    if order.holders:
        order.held -= claw
        step.post(st, "points", "clawback", 0, -claw, "returns.clawback", explanation + " (from held)")
    else:
        step.post(st, "points", "clawback", -claw, 0, "returns.clawback", explanation)
    return None
