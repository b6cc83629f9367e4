"""Per-partner anomaly detectors (stage 1): they need only the partner's own history.

Cross-partner detectors (duplicate order across partners, deal conflict, self-dealing) live in
`crosspartner.py`, keyed by order or customer instead of partner.
"""
from __future__ import annotations

import bisect
from operator import attrgetter

from .holds import hold_rebate
from .outcome import Step
from .state import PartnerState, SaleMark
from .timeutil import MS_DAY, MS_HOUR, MS_MINUTE, days_in_month, month_start_ms, month_to_period


def _between(st: PartnerState, low_ms: int, high_ms: int) -> list[SaleMark]:
    """The partner's sales with low_ms < occurred_ms <= high_ms, in time order (ties in the order
    they were processed). Sales are kept per UTC hour, each hour sorted by time."""
    found: list[SaleMark] = []
    for hour in range(low_ms // MS_HOUR, high_ms // MS_HOUR + 1):
        sales = st.sales.get(hour)
        if sales:
            lo = bisect.bisect_right(sales, low_ms, key=_time)
            hi = bisect.bisect_right(sales, high_ms, key=_time)
            found += sales[lo:hi]
    return found


#: A sale's time, the sort key of an hour's sales (attrgetter: called at C speed by bisect).
_time = attrgetter("occurred_ms")


def remember_sale(st: PartnerState, sale: SaleMark) -> None:
    hour = sale.occurred_ms // MS_HOUR
    sales = st.sales.get(hour)
    if sales is None:
        st.sales[hour] = [sale]
    else:
        bisect.insort_right(sales, sale, key=_time)


def near_duplicate(step: Step, st: PartnerState, sale: SaleMark) -> None:
    """Compare with every earlier-processed sale within the window (called before remembering it)."""
    window = step.program.near_duplicate_ms
    for earlier in _between(st, sale.occurred_ms - window - 1, sale.occurred_ms + window):
        if (earlier.customer_id == sale.customer_id and earlier.sku == sale.sku
                and earlier.amount_cents == sale.amount_cents and earlier.order_id != sale.order_id):
            alert = step.raise_alert(st, "near_duplicate_order", step.event_id,
                                     f"order {sale.order_id} repeats customer {sale.customer_id}, sku "
                                     f"{sale.sku}, {sale.amount_cents} cents of order {earlier.order_id}")
            if alert:
                step.publish_alert(st, alert)
            return


def velocity(step: Step, st: PartnerState, sale: SaleMark) -> None:
    """Called after remembering the sale: the window (t - 60 min, t] includes it."""
    v = step.program.velocity
    t = sale.occurred_ms
    hour = t // MS_HOUR
    if t - st.enrolled_ms < v["min_enrolled_days"] * MS_DAY or hour in st.velocity_hours:
        return
    window_start = t - v["window_minutes"] * MS_MINUTE
    in_window = _between(st, window_start, t)
    if len(in_window) < v["min_sales"]:
        return
    points = sum(s.sale_points for s in in_window)
    if points <= v["min_points"]:
        return
    baseline_start = window_start - v["baseline_days"] * MS_DAY
    baseline = sum(s.sale_points for s in _between(st, baseline_start, window_start))
    hours = v["baseline_days"] * 24
    # points > factor x (baseline / hours), in integers
    if points * hours > v["baseline_factor"] * baseline:
        st.velocity_hours.add(hour)
        alert = step.raise_alert(st, "velocity_spike", step.event_id,
                                 f"{len(in_window)} sales for {points} points in 60 minutes; "
                                 f"baseline {baseline} points in the {v['baseline_days']} days before")
        if alert:
            step.publish_alert(st, alert)


def channel_stuffing(step: Step, st: PartnerState, month: int) -> bool:
    """At the close of `month`: net sales of at least the minimum, AND more than `history_factor`
    times the average of the previous `history_months` (the partner enrolled at or before the
    first instant of the first of them), AND more than `last_days_pct` % of the net in gross sales
    of the last `last_days` UTC days. Both signals: either alone fires on ordinary lumpy B2B months
    (SPEC 5 and 9, revised December 2026; docs/decisions.md)."""
    cs = step.program.channel_stuffing
    stats = st.months.get(month)
    net = stats.net_cents if stats else 0
    if net < cs["min_net_sales_cents"]:
        return False
    history = cs["history_months"]
    if st.enrolled_ms > month_start_ms(month - history):
        return False                       # no full history to compare with
    previous = 0
    for m in range(month - history, month):
        earlier = st.months.get(m)
        previous += earlier.net_cents if earlier else 0
    if not net * history > cs["history_factor"] * previous:
        return False
    last = stats.last_days_gross_cents if stats else 0
    if not last * 100 > cs["last_days_pct"] * net:
        return False
    evidence = (f"{month_to_period(month)}: net {net} cents > {cs['history_factor']}x the average of {previous} "
                f"cents over the {history} previous months, and {last} cents in the last {cs['last_days']} "
                f"days > {cs['last_days_pct']}% of net {net} cents")
    alert = step.raise_alert(st, "channel_stuffing", step.event_id, evidence)
    if alert:
        hold_rebate(step, st, alert, month_to_period(month))
        step.publish_alert(st, alert)
    return True


def return_spike(step: Step, st: PartnerState, month: int) -> None:
    rs = step.program.return_spike
    returns = st.months[month].returns_cents if month in st.months else 0
    prev_gross = st.months[month - 1].gross_cents if month - 1 in st.months else 0
    if prev_gross >= rs["min_previous_gross_cents"] and returns * 100 > rs["returns_pct"] * prev_gross:
        alert = step.raise_alert(st, "return_spike", step.event_id,
                                 f"{month_to_period(month)}: returns {returns} cents > {rs['returns_pct']}% "
                                 f"of previous month's gross {prev_gross} cents")
        if alert:
            step.publish_alert(st, alert)


def is_last_days(program_last_days: int, month: int, day: int) -> bool:
    return day > days_in_month(month) - program_last_days
