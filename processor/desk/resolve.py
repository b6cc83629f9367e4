"""An analyst's decision on an alert, as the one event that carries it: `AlertResolved`.

The decision takes effect only through the log (SPEC 5): stage 1 applies the event, releasing or
forfeiting what the alert holds, and a replay sees the same. The event id is deterministic
(`resolution:<alert id>`), so a retry, a double click or a second analyst can never resolve twice:
stage 1 ignores a repeated event id, and the check below refuses an alert that is not open.
"""
from __future__ import annotations

import time
from typing import Any

from processor.codec import from_json_line, to_json_line
from processor.config import Settings
from processor.desk import queries
from processor.producer import EventProducer
from projections.migrate import client

DECISIONS = ("dismissed", "confirmed")


class ResolveRefused(Exception):
    """The alert cannot be resolved; `reason` is `unknown_alert` or `alert_already_resolved`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def resolution_id(alert_id: str) -> str:
    return f"resolution:{alert_id}"


def resolution_event(alert: dict[str, Any], decision: str, analyst: str, note: str | None,
                     occurred_ms: int) -> dict[str, Any]:
    """The `AlertResolved` event, validated by the codec like any other input."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be dismissed or confirmed, not {decision!r}")
    if not analyst.strip():
        raise ValueError("the analyst's name must not be empty")
    event = {"event_id": resolution_id(alert["alert_id"]), "event_type": "AlertResolved",
             "partner_id": alert["partner_id"], "occurred_at": occurred_ms, "source": "analyst-desk",
             "alert_id": alert["alert_id"], "decision": decision, "analyst": analyst, "note": note or None}
    return from_json_line(to_json_line(event))


def check_open(settings: Settings, alert_id: str) -> dict[str, Any]:
    alert = queries.get_alert(settings, alert_id)
    if alert is None:
        raise ResolveRefused("unknown_alert", f"no alert {alert_id!r} (alert ids are TYPE:PARTNER:TRIGGER_EVENT)")
    if alert["status"] != "open":
        by = f" by {alert['resolved_by']}" if alert.get("resolved_by") else ""
        raise ResolveRefused("alert_already_resolved",
                             f"alert {alert_id} is already {alert['status']}{by}; nothing written")
    return alert


def resolve(settings: Settings, alert_id: str, decision: str, analyst: str, note: str | None = None,
            wait_s: float = 5.0) -> dict[str, Any]:
    """Check the alert is open, write its `AlertResolved`, wait up to `wait_s` for the worker to
    apply it and return the ledger entries it wrote (release or forfeit; none if nothing was held)."""
    alert = check_open(settings, alert_id)
    event = resolution_event(alert, decision, analyst, note, int(time.time() * 1000))
    with EventProducer(settings.kafka_bootstrap_servers) as producer:
        producer.send(event)
        producer.flush()
    result = {"event_id": event["event_id"], "alert_id": alert_id, "decision": decision,
              "partner_id": alert["partner_id"], "applied": False, "entries": []}
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        status = queries.get_alert(settings, alert_id)
        if status is not None and status["status"] == decision:
            result["applied"] = True
            result["entries"] = _entries(settings, alert["partner_id"], event["event_id"])
            break
        time.sleep(0.2)
    return result


def _entries(settings: Settings, partner_id: str, event_id: str) -> list[dict[str, Any]]:
    db = settings.clickhouse_database
    rows = client(settings).execute(
        f"SELECT {', '.join(queries.LEDGER_COLUMNS)} FROM {db}.ledger FINAL WHERE partner_id = %(p)s "
        "AND source_event_id = %(e)s ORDER BY seq", {"p": partner_id, "e": event_id})
    return [dict(zip(queries.LEDGER_COLUMNS, row, strict=True)) | {"occurred_at": queries._iso(row[9])}
            for row in rows]
