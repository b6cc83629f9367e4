"""Stage 1: the fold of partner events into partner state (the heart of the domain core).

`Stage1.apply` takes one decoded event and the partners it can reach (a `PartnerStore`: one Kafka
partition's partners live, every partner in a file replay) and returns an `Outcome`. It deduplicates
by `event_id` before anything else, checks before it changes anything, and never reads a clock: the
same events in the same order give the same entries, hashes and ids, live or replayed.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import earning, holds, partners, period, redemptions, returns
from .evolvable import Evolvable
from .outcome import DUPLICATE, REJECTED, Outcome, Step
from .program import Program
from .state import PartnerState
from .timeutil import iso_seconds

Handler = Callable[[Step, PartnerState], "str | None"]

HANDLERS: dict[str, Handler] = {
    "PartnerEnrolled": partners.on_enrolled,
    "PartnerOffboarded": partners.on_offboarded,
    "SaleRecorded": earning.on_sale,
    "SaleReturned": returns.on_return,
    "DealClosed": partners.on_deal_closed,
    "TrainingCompleted": earning.on_training,
    "MarketingActivityCompleted": earning.on_marketing,
    "RedemptionRequested": redemptions.on_redemption,
    "PointsAdjusted": redemptions.on_adjustment,
    "AlertResolved": holds.on_alert_resolved,
    "AnomalyDetected": holds.on_anomaly_detected,
}


class PartnerStore(Protocol):
    def get(self, partner_id: str) -> PartnerState | None: ...
    def put(self, state: PartnerState) -> None: ...
    def partner_ids(self) -> Iterable[str]: ...


class DictStore:
    """The in-memory store of a replay (and of tests)."""

    def __init__(self) -> None:
        self.states: dict[str, PartnerState] = {}

    def get(self, partner_id: str) -> PartnerState | None:
        return self.states.get(partner_id)

    def put(self, state: PartnerState) -> None:
        self.states[state.partner_id] = state

    def partner_ids(self) -> Iterable[str]:
        return sorted(self.states)


@dataclass
class Scope(Evolvable):
    """What a `PeriodClosed` copy reaches: one partition's partners live, all of them in a file."""
    closed_periods: set[str] = field(default_factory=set)
    seen_close_ids: set[str] = field(default_factory=set)


def rejection(event_id: str, reason: str, partner_id: str | None, event_type: str | None,
              occurred_ms: int | None) -> dict[str, Any]:
    return {"event_id": event_id, "reason": reason, "partner_id": partner_id, "event_type": event_type,
            "occurred_at": iso_seconds(occurred_ms) if occurred_ms is not None else None}


class Stage1:
    def __init__(self, program: Program, deal_owners: dict[str, str] | None = None) -> None:
        self.program = program
        # A registry of every deal id, when the caller sees all partners (file replay); live, a
        # partition sees only its own partners, so uniqueness is checked per partner there.
        self.deal_owners = deal_owners

    def apply(self, store: PartnerStore, scope: Scope, event: dict[str, Any]) -> Outcome:
        out = Outcome()
        step = Step(self.program, event, out)
        if event["event_type"] == "PeriodClosed":
            return self._period_closed(store, scope, step)
        pid = event["partner_id"]
        st = store.get(pid) or PartnerState(pid)
        if event["event_id"] in st.seen:
            out.status = DUPLICATE
            return out
        st.seen.add(event["event_id"])
        reason = self._dispatch(step, st)
        if reason:
            self._reject(step, reason)
        store.put(st)
        return out

    def reject(self, store: PartnerStore, event_id: str | None, partner_id: str | None,
               event_type: str | None, reason: str, occurred_ms: int | None, where: str) -> Outcome:
        """An event the codec refused. Remembered by event id when it has one, so a repeat is a duplicate."""
        out = Outcome(status=REJECTED)
        if event_id and partner_id:
            st = store.get(partner_id) or PartnerState(partner_id)
            if event_id in st.seen:
                out.status = DUPLICATE
                return out
            st.seen.add(event_id)
            store.put(st)
        out.add_rejection(rejection(event_id or where, reason, partner_id, event_type, occurred_ms))
        return out

    def _dispatch(self, step: Step, st: PartnerState) -> str | None:
        et = step.event["event_type"]
        if et != "PartnerEnrolled" and not st.enrolled:
            return "unknown_partner"
        if et == "DealRegistered":
            deal_id = step.event["deal_id"]
            taken = self.deal_owners is not None and deal_id in self.deal_owners
            reason = partners.on_deal_registered(step, st, taken)
            if reason is None and self.deal_owners is not None:
                self.deal_owners[deal_id] = st.partner_id
            return reason
        return HANDLERS[et](step, st)

    def _reject(self, step: Step, reason: str) -> None:
        ev = step.event
        step.out.status = REJECTED
        step.out.add_rejection(rejection(ev["event_id"], reason, ev.get("partner_id"), ev["event_type"],
                                         ev.get("occurred_at")))

    def _period_closed(self, store: PartnerStore, scope: Scope, step: Step) -> Outcome:
        out, event = step.out, step.event
        if event["event_id"] in scope.seen_close_ids:
            out.status = DUPLICATE
            return out
        scope.seen_close_ids.add(event["event_id"])
        period_ = event["period"]
        if period_ in scope.closed_periods:
            self._reject(step, "period_already_closed")
            return out
        scope.closed_periods.add(period_)
        for pid in list(store.partner_ids()):
            st = store.get(pid)
            if st is not None and st.enrolled:
                period.close_period(step, st, period_)
                store.put(st)
        return out
