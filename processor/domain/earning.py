"""Earning rules: sale points with tier/category multipliers, deal bonus, the monthly cap, the SPIFF,
and behaviour points for training and marketing (SPEC section 4)."""
from __future__ import annotations

from . import detectors, tiers
from .outcome import Step
from .state import Order, PartnerState, SaleMark
from .timeutil import day_of_month


def sale_points(step: Step, st: PartnerState, amount_cents: int, category: str) -> tuple[int, str]:
    """(points, explanation) by the SPEC 4 formula, with the partner's tier at processing time."""
    cat_pct = step.program.category_multiplier(category)
    tier_pct = step.program.tier_pct[st.tier]
    points = (amount_cents // 100) * cat_pct * tier_pct // 10000
    dollars = f"{amount_cents // 100}" if amount_cents % 100 == 0 else f"{amount_cents / 100:.2f}"
    return points, f"{dollars} USD {category} x{cat_pct}% x{tier_pct}% {st.tier} = {points} points"


def on_sale(step: Step, st: PartnerState) -> str | None:
    ev = step.event
    if not st.active:
        return "partner_inactive"
    if ev.get("currency") != "USD":
        return "non_usd_currency"
    amount, quantity = ev["amount_cents"], ev["quantity"]
    if amount < 0:
        return "invalid_amount"
    if quantity < 0:
        return "invalid_quantity"
    month = step.month
    stats = st.month(month)
    stats.active = True
    order_id = ev["order_id"]
    if order_id in st.orders:
        # the same partner claims its own order again under a new event id: it earns nothing
        alert = step.raise_alert(st, "duplicate_order", step.event_id,
                                 f"order {order_id} already recorded by event {st.orders[order_id].event_id}")
        if alert:
            step.publish_alert(st, alert)
        return None

    program = step.program
    base, explanation = sale_points(step, st, amount, ev["category"])
    deal_id = ev.get("deal_id")
    deal = st.deals.get(deal_id) if deal_id else None     # no deal has an empty id
    bonus = 0
    if deal is not None and deal.status in ("open", "won") and not deal.conflicted:
        bonus = base * program.deal_bonus_pct // 100
    room = max(0, program.monthly_cap_points - stats.sale_points)
    earned = min(base, room)
    bonus_awarded = min(bonus, room - earned)
    stats.sale_points += earned + bonus_awarded
    if earned < base:
        explanation += f"; monthly cap {program.monthly_cap_points}: {earned} awarded, {base - earned} over the cap"
    if earned or base:          # a sale cut to 0 by the cap still writes its (zero) earn entry
        step.post(st, "points", "earn", earned, 0, "earn.sale", explanation)
    if bonus_awarded:
        note = f"deal {deal.deal_id}: {base} x{program.deal_bonus_pct}% = {bonus} points"  # type: ignore[union-attr]
        if bonus_awarded < bonus:
            note += f"; monthly cap: {bonus_awarded} awarded"
        step.post(st, "points", "bonus", bonus_awarded, 0, "earn.deal_bonus", note)
    order_points = earned + bonus_awarded
    order_points += _spiffs(step, st, ev)
    st.orders[order_id] = Order(order_id, step.event_id, ev["customer_id"], amount, points=order_points)

    if not stats.cap_alerted and stats.sale_points >= program.monthly_cap_points:
        stats.cap_alerted = True
        alert = step.raise_alert(st, "earning_cap_reached", step.event_id,
                                 f"{stats.sale_points} sale points in the month, cap {program.monthly_cap_points}")
        if alert:
            step.publish_alert(st, alert)

    stats.gross_cents += amount
    stats.net_cents += amount
    if detectors.is_last_days(program.channel_stuffing["last_days"], month, day_of_month(step.occurred_ms)):
        stats.last_days_gross_cents += amount

    mark = SaleMark(step.occurred_ms, order_id, ev["customer_id"], ev["sku"], amount, base)
    detectors.near_duplicate(step, st, mark)
    detectors.remember_sale(st, mark)
    detectors.velocity(step, st, mark)
    tiers.check_upgrade(step, st, month)

    claim = {"kind": "order_claim", "order_id": order_id, "customer_id": ev["customer_id"],
             "partner_id": st.partner_id, "event_id": step.event_id, "occurred_at": step.occurred_ms}
    step.forward(f"order:{order_id}", claim)
    step.forward(f"customer:{ev['customer_id']}", {**claim, "kind": "customer_sale"})
    return None


def _spiffs(step: Step, st: PartnerState, ev: dict) -> int:
    """Award SPIFF unit points (returned: they belong to the order) and any threshold bonus."""
    order_points = 0
    for spiff in step.program.spiffs:
        if ev["category"] != spiff.category or not spiff.starts_ms <= step.occurred_ms <= spiff.ends_ms:
            continue
        units = ev["quantity"]
        points = units * spiff.points_per_unit
        if points:
            step.post(st, "points", "spiff", points, 0, f"spiff.{spiff.id}.units",
                      f"SPIFF {spiff.id}: {units} units x {spiff.points_per_unit} = {points} points")
            order_points += points
        total = st.spiff_units.get(spiff.id, 0) + units
        st.spiff_units[spiff.id] = total
        if total >= spiff.threshold_units and spiff.id not in st.spiff_bonus_paid:
            st.spiff_bonus_paid.add(spiff.id)
            step.post(st, "points", "spiff", spiff.threshold_bonus_points, 0, f"spiff.{spiff.id}.threshold",
                      f"SPIFF {spiff.id}: {total} units reached {spiff.threshold_units}, one-time bonus "
                      f"{spiff.threshold_bonus_points} points")
    return order_points


def on_training(step: Step, st: PartnerState) -> str | None:
    ev = step.event
    if not st.active:
        return "partner_inactive"
    month = step.month
    st.month(month).active = True
    course = ev["course_id"]
    certified = bool(ev["certification"])
    if course not in st.courses:
        st.courses.add(course)
        program = step.program
        points = program.training_certification_points if certified else program.training_completion_points
        step.post(st, "points", "earn", points, 0, "behaviour.training",
                  f"training {course}{' with certification' if certified else ''} = {points} points")
    if certified:
        st.month(month).certified.add(course)
        tiers.check_upgrade(step, st, month)
    return None


def on_marketing(step: Step, st: PartnerState) -> str | None:
    ev = step.event
    if not st.active:
        return "partner_inactive"
    st.month(step.month).active = True
    activity = ev["activity_id"]
    if activity in st.activities:
        return None
    st.activities.add(activity)
    points = step.program.marketing_points[ev["activity_type"]]
    step.post(st, "points", "earn", points, 0, "behaviour.marketing",
              f"marketing {ev['activity_type']} {activity} = {points} points")
    return None
