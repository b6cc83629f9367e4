"""Tier status: immediate upgrades, and downgrades only after missed quarter-end reviews.

The metrics are the partner's net sales and distinct certified courses over the trailing window
of calendar months (by `occurred_at`); see SPEC section 4 and the tier decisions of section 9.
"""
from __future__ import annotations

from .outcome import Step
from .state import PartnerState
from .timeutil import calendar_month_number


def tier_met(step: Step, st: PartnerState, last_month: int) -> str:
    """The highest tier whose requirements hold over the window ending with `last_month`."""
    program = step.program
    net = 0
    with_certs = []
    month_stats = st.months.get
    for k in range(last_month - program.trailing_months + 1, last_month + 1):
        stats = month_stats(k)
        if stats is not None:
            net += stats.net_cents
            if stats.certified:
                with_certs.append(stats.certified)
    certs = -1                      # distinct certified courses in the window, counted when needed
    best = program.tier_order[0]
    for tier in program.tier_order:
        req = program.tier_requirements[tier]
        if net < req.net_sales_cents:
            continue
        if req.certifications > 0:
            if certs < 0:
                certs = len(set().union(*with_certs))
            if certs < req.certifications:
                continue
        best = tier
    return best


def _change(step: Step, st: PartnerState, to_tier: str, reason: str) -> None:
    step.out.add_tier_change({
        "change_id": f"{st.partner_id}:{step.event_id}:{to_tier}",
        "partner_id": st.partner_id,
        "from_tier": st.tier,
        "to_tier": to_tier,
        "reason": reason,
        "source_event_id": step.event_id,
        "occurred_at": step.occurred_iso,
        "rules_version": step.program.version,
    })
    st.tier = to_tier
    st.missed_reviews = 0


def check_upgrade(step: Step, st: PartnerState, month: int) -> None:
    """After an event that changes the metrics: upgrade at once to the highest tier met (a partner
    at the top tier has none to go to: nothing to compute)."""
    program = step.program
    rank = program.tier_rank(st.tier)
    if rank == len(program.tier_order) - 1:
        return
    met = tier_met(step, st, month)
    if program.tier_rank(met) > rank:
        _change(step, st, met, "upgrade")


def review(step: Step, st: PartnerState, month: int) -> None:
    """The tier review at PeriodClosed(month): upgrades any month, downgrades at quarter ends only."""
    program = step.program
    met = tier_met(step, st, month)
    rank_met, rank_cur = program.tier_rank(met), program.tier_rank(st.tier)
    if rank_met > rank_cur:
        _change(step, st, met, "review_upgrade")
    elif calendar_month_number(month) in program.review_months:
        if rank_met == rank_cur:
            st.missed_reviews = 0
        else:
            st.missed_reviews += 1
            if st.missed_reviews >= program.downgrade_after_missed_reviews:
                _change(step, st, met, "review_downgrade")
