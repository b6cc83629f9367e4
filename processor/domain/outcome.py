"""What applying one event caused, as plain values, and the helpers that record it.

`Step` is the working context of one event: the program, the event, and the `Outcome` it collects
(ledger entries, tier changes, redemption decisions, alerts, rejections, stage-2 forwards).
Adapters turn an Outcome into Kafka records and ClickHouse rows; the replay into its document.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .ledger import seal
from .program import Program
from .state import Alert, PartnerState
from .timeutil import iso_seconds, month_index

APPLIED, REJECTED, DUPLICATE = "applied", "rejected", "duplicate"


#: An Outcome's collections start as this one shared empty tuple and become lists on their first
#: item (the `add_*` methods): an event fills one or two of the seven, and a batch keeps every
#: outcome until its outputs are sent, so eight fresh lists per event were most of the objects the
#: garbage collector had to scan again and again (docs/performance.md). Append through `add_*`.
NOTHING: Any = ()


@dataclass
class Outcome:
    status: str = APPLIED
    ledger: list[dict[str, Any]] = NOTHING
    ledger_json: list[bytes] = NOTHING                       # the same entries, encoded once
    tier_changes: list[dict[str, Any]] = NOTHING
    redemptions: list[dict[str, Any]] = NOTHING
    alerts: list[dict[str, Any]] = NOTHING
    rejections: list[dict[str, Any]] = NOTHING
    forwards: list[tuple[str, dict[str, Any]]] = NOTHING     # (stage-2 key, record)

    def add_ledger(self, entry: dict[str, Any], encoded: bytes) -> None:
        if self.ledger is NOTHING:
            self.ledger, self.ledger_json = [entry], [encoded]
        else:
            self.ledger.append(entry)
            self.ledger_json.append(encoded)

    def add_tier_change(self, change: dict[str, Any]) -> None:
        if self.tier_changes is NOTHING:
            self.tier_changes = [change]
        else:
            self.tier_changes.append(change)

    def add_redemption(self, decision: dict[str, Any]) -> None:
        if self.redemptions is NOTHING:
            self.redemptions = [decision]
        else:
            self.redemptions.append(decision)

    def add_alert(self, alert: dict[str, Any]) -> None:
        if self.alerts is NOTHING:
            self.alerts = [alert]
        else:
            self.alerts.append(alert)

    def add_rejection(self, rejection: dict[str, Any]) -> None:
        if self.rejections is NOTHING:
            self.rejections = [rejection]
        else:
            self.rejections.append(rejection)

    def add_forward(self, key: str, record: dict[str, Any]) -> None:
        if self.forwards is NOTHING:
            self.forwards = [(key, record)]
        else:
            self.forwards.append((key, record))


class Step:
    """The working context of one event (a plain class with slots: rules read these attributes on
    every event, and the event time's forms are computed once, when first asked)."""

    __slots__ = ("_iso", "_month", "event", "out", "program")

    def __init__(self, program: Program, event: dict[str, Any], out: Outcome) -> None:
        self.program = program
        self.event = event
        self.out = out
        self._iso: str | None = None
        self._month: int | None = None

    @property
    def event_id(self) -> str:
        return self.event["event_id"]  # type: ignore[no-any-return]

    @property
    def occurred_ms(self) -> int:
        return self.event["occurred_at"]  # type: ignore[no-any-return]

    @property
    def occurred_iso(self) -> str:
        """The event time in the ledger's form (computed once per event)."""
        iso = self._iso
        if iso is None:
            iso = self._iso = iso_seconds(self.event["occurred_at"])
        return iso

    @property
    def month(self) -> int:
        """The calendar month of the event time."""
        month = self._month
        if month is None:
            month = self._month = month_index(self.event["occurred_at"])
        return month

    def post(self, st: PartnerState, account: str, kind: str, d_avail: int, d_held: int,
             rule_id: str, explanation: str) -> dict[str, Any]:
        """Append one ledger entry to the partner's chain and move its balances."""
        bal = st.balances[account]
        bal[0] += d_avail
        bal[1] += d_held
        st.seq += 1
        entry: dict[str, Any] = {
            "entry_id": f"{st.partner_id}:{st.seq}",
            "partner_id": st.partner_id,
            "seq": st.seq,
            "account": account,
            "kind": kind,
            "delta_available": d_avail,
            "delta_held": d_held,
            "balance_available": bal[0],
            "balance_held": bal[1],
            "rule_id": rule_id,
            "rules_version": self.program.version,
            "source_event_id": self.event_id,
            "occurred_at": self.occurred_iso,
            "explanation": explanation,
            "prev_hash": st.head,
        }
        self.out.add_ledger(entry, seal(entry))
        st.head = entry["hash"]
        return entry

    def raise_alert(self, st: PartnerState, alert_type: str, trigger_event_id: str, evidence: str,
                    hold_order_id: str | None = None, severity: str | None = None,
                    alert_id: str | None = None) -> Alert | None:
        """Record a new alert (None if that alert id already exists: alerts are raised once)."""
        alert_id = alert_id or f"{alert_type}:{st.partner_id}:{trigger_event_id}"
        if alert_id in st.alerts:
            return None
        alert = Alert(alert_id, alert_type, severity or self.program.severity.get(alert_type, "medium"),
                      trigger_event_id, hold_order_id, evidence, self.occurred_ms)
        st.alerts[alert_id] = alert
        return alert

    def publish_alert(self, st: PartnerState, alert: Alert, resolved_by: str = "") -> None:
        self.out.add_alert({
            "alert_id": alert.alert_id,
            "alert_type": alert.alert_type,
            "severity": alert.severity,
            "partner_id": st.partner_id,
            "trigger_event_id": alert.trigger_event_id,
            "hold_order_id": alert.hold_order_id,
            "evidence": alert.evidence,
            "status": alert.status,
            "version": 1 if alert.status == "open" else 2,
            "occurred_at": self.occurred_iso,
            "raised_at": iso_seconds(alert.occurred_ms),
            "resolved_by": resolved_by,
            "held_points": alert.held_points,
        })

    def forward(self, key: str, record: dict[str, Any]) -> None:
        self.out.add_forward(key, record)
