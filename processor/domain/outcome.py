"""What applying one event caused, as plain values, and the helpers that record it.

`Step` is the working context of one event: the program, the event, and the `Outcome` it collects
(ledger entries, tier changes, redemption decisions, alerts, rejections, stage-2 forwards).
Adapters turn an Outcome into Kafka records and ClickHouse rows; the replay into its document.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .ledger import seal
from .program import Program
from .state import Alert, PartnerState
from .timeutil import iso_seconds, month_index

APPLIED, REJECTED, DUPLICATE = "applied", "rejected", "duplicate"


@dataclass
class Outcome:
    status: str = APPLIED
    ledger: list[dict[str, Any]] = field(default_factory=list)
    ledger_json: list[bytes] = field(default_factory=list)     # the same entries, encoded once
    tier_changes: list[dict[str, Any]] = field(default_factory=list)
    redemptions: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    forwards: list[tuple[str, dict[str, Any]]] = field(default_factory=list)   # (stage-2 key, record)


@dataclass
class Step:
    program: Program
    event: dict[str, Any]
    out: Outcome

    @property
    def event_id(self) -> str:
        return self.event["event_id"]

    @property
    def occurred_ms(self) -> int:
        return self.event["occurred_at"]

    @cached_property
    def occurred_iso(self) -> str:
        """The event time in the ledger's form (computed once per event)."""
        return iso_seconds(self.event["occurred_at"])

    @cached_property
    def month(self) -> int:
        """The calendar month of the event time."""
        return month_index(self.event["occurred_at"])

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
        self.out.ledger_json.append(seal(entry))
        st.head = entry["hash"]
        self.out.ledger.append(entry)
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
        self.out.alerts.append({
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
        self.out.forwards.append((key, record))
