"""What a partner does at `PeriodClosed(M)`, in the SPEC's order: rebate, channel-stuffing and
return-spike checks, tier review, expiry."""
from __future__ import annotations

from . import detectors, tiers
from .outcome import Step
from .state import PartnerState, RebateRecord
from .timeutil import month_start_ms, period_to_month


def close_period(step: Step, st: PartnerState, period: str) -> None:
    if period in st.closed_periods:
        return
    st.closed_periods.add(period)
    month = period_to_month(period)
    if not st.enrolled or st.enrolled_ms >= month_start_ms(month + 1):
        return
    _rebate(step, st, month, period)
    detectors.channel_stuffing(step, st, month)
    detectors.return_spike(step, st, month)
    tiers.review(step, st, month)
    _expiry(step, st, month)


def _rebate(step: Step, st: PartnerState, month: int, period: str) -> None:
    stats = st.months.get(month)
    net = stats.net_cents if stats else 0
    pct = step.program.rebate_pct(net) if net > 0 else 0
    amount = net * pct // 100 if net > 0 else 0
    st.rebates[period] = RebateRecord(period, amount)
    if amount:
        step.post(st, "rebate", "rebate", amount, 0, "rebate.monthly",
                  f"rebate {period}: net sales {net} cents x {pct}% = {amount} cents")


def _expiry(step: Step, st: PartnerState, month: int) -> None:
    first = month - step.program.expiry_inactive_months + 1
    for m in range(first, month + 1):
        stats = st.months.get(m)
        if stats is not None and stats.active:
            return
    available = st.available("points")
    if available > 0:
        step.post(st, "points", "expire", -available, 0, "expiry",
                  f"no sale, training or marketing activity in the {step.program.expiry_inactive_months} "
                  f"months to the close: {available} available points expire")
