"""Alerts, partners and ledgers as the analysts see them, read from the ClickHouse projections.

Every read uses `FINAL`, so a duplicate delivery never shows twice and an alert shows its latest
state (raised, then resolved: ReplacingMergeTree(version)). SQL runs on ClickHouse 18.16 and current.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from processor.config import Settings
from processor.domain.timeutil import month_index, month_start_ms
from processor.programs import load_program
from projections.migrate import client

ALERT_COLUMNS = ("alert_id", "alert_type", "severity", "partner_id", "trigger_event_id", "hold_order_id",
                 "status", "held_points", "evidence", "occurred_at", "resolved_by")
LEDGER_COLUMNS = ("seq", "account", "kind", "delta_available", "delta_held", "balance_available",
                  "balance_held", "rule_id", "source_event_id", "occurred_at", "explanation")
STATUSES = ("open", "dismissed", "confirmed", "all")


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _rows(settings: Settings, sql: str, params: dict[str, Any] | None = None,
          columns: tuple[str, ...] = ALERT_COLUMNS) -> list[dict[str, Any]]:
    rows = client(settings).execute(sql.format(db=settings.clickhouse_database), params or {})
    out = []
    for row in rows:
        item = dict(zip(columns, row, strict=True))
        item["occurred_at"] = _iso(item["occurred_at"])
        out.append(item)
    return out


def list_alerts(settings: Settings, *, status: str = "open", alert_type: str | None = None,
                severity: str | None = None, partner_id: str | None = None, since_ms: int | None = None,
                limit: int = 200) -> list[dict[str, Any]]:
    """Alerts newest first (by the time of their latest state), filtered."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    where: list[str] = ["1"]
    params: dict[str, Any] = {"limit": int(limit)}
    for column, value in (("status", None if status == "all" else status), ("alert_type", alert_type),
                          ("severity", severity), ("partner_id", partner_id)):
        if value is not None:
            where.append(f"{column} = %({column})s")
            params[column] = value
    if since_ms is not None:
        where.append("occurred_at >= toDateTime(%(since)s, 'UTC')")
        params["since"] = since_ms // 1000
    sql = (f"SELECT {', '.join(ALERT_COLUMNS)} FROM {{db}}.alerts FINAL WHERE {' AND '.join(where)} "
           f"ORDER BY occurred_at DESC, alert_id LIMIT %(limit)s")
    return _rows(settings, sql, params)


def _event(settings: Settings, partner_id: str, event_id: str) -> dict[str, Any] | None:
    rows = client(settings).execute(
        f"SELECT payload FROM {settings.clickhouse_database}.events FINAL "
        "WHERE partner_id = %(p)s AND event_id = %(e)s LIMIT 1", {"p": partner_id, "e": event_id})
    return json.loads(rows[0][0]) if rows else None


def get_alert(settings: Settings, alert_id: str) -> dict[str, Any] | None:
    """The alert, its triggering event and the other alerts on the same order or trigger."""
    found = _rows(settings, f"SELECT {', '.join(ALERT_COLUMNS)} FROM {{db}}.alerts FINAL "
                            "WHERE alert_id = %(a)s", {"a": alert_id})
    if not found:
        return None
    alert = found[0]
    trigger = _event(settings, alert["partner_id"], alert["trigger_event_id"])
    alert["trigger_event"] = trigger
    customer = (trigger or {}).get("customer_id")
    related_sql = (f"SELECT {', '.join(ALERT_COLUMNS)} FROM {{db}}.alerts FINAL WHERE alert_id != %(a)s AND "
                   "(trigger_event_id = %(t)s OR (hold_order_id IS NOT NULL AND hold_order_id = %(o)s) "
                   "OR evidence LIKE %(c)s) ORDER BY occurred_at DESC LIMIT 50")
    alert["related"] = _rows(settings, related_sql, {
        "a": alert_id, "t": alert["trigger_event_id"], "o": alert["hold_order_id"] or "",
        "c": f"%customer {customer}%" if customer else "\x00no customer\x00"})
    return alert


def alert_counts(settings: Settings) -> dict[str, Any]:
    rows = client(settings).execute(
        f"SELECT alert_type, count(), min(occurred_at) FROM {settings.clickhouse_database}.alerts FINAL "
        "WHERE status = 'open' GROUP BY alert_type ORDER BY alert_type")
    oldest = min((r[2] for r in rows), default=None)
    return {"open_by_type": {r[0]: r[1] for r in rows}, "open": sum(r[1] for r in rows),
            "oldest_open_at": _iso(oldest) if oldest is not None else None}


def partner_view(settings: Settings, partner_id: str, ledger_limit: int = 50) -> dict[str, Any] | None:
    """Standing, balances, progress to the next tier, recent ledger, alerts of one partner."""
    db = settings.clickhouse_database
    ch = client(settings)
    enrolled = ch.execute(f"SELECT payload FROM {db}.events FINAL WHERE partner_id = %(p)s AND "
                          "event_type = 'PartnerEnrolled' ORDER BY occurred_at DESC LIMIT 1", {"p": partner_id})
    ledger = _rows(settings, f"SELECT {', '.join(LEDGER_COLUMNS)} FROM {{db}}.ledger FINAL WHERE partner_id = "
                             "%(p)s ORDER BY seq DESC LIMIT %(n)s", {"p": partner_id, "n": ledger_limit},
                   columns=LEDGER_COLUMNS)
    if not enrolled and not ledger:
        return None
    sums = {"points": [0, 0], "rebate": [0, 0]}
    for account, available, held in ch.execute(
            f"SELECT account, sum(delta_available), sum(delta_held) FROM {db}.ledger FINAL "
            "WHERE partner_id = %(p)s GROUP BY account", {"p": partner_id}):
        sums[account] = [int(available), int(held)]
    tier_rows = ch.execute(f"SELECT to_tier FROM {db}.tier_changes FINAL WHERE partner_id = %(p)s "
                           "ORDER BY occurred_at DESC, change_id DESC LIMIT 1", {"p": partner_id})
    tier = tier_rows[0][0] if tier_rows else "registered"
    profile = json.loads(enrolled[0][0]) if enrolled else {}
    return {
        "partner_id": partner_id, "name": profile.get("name", ""), "segment": profile.get("segment", ""),
        "region": profile.get("region", ""), "tier": tier,
        "points": {"available": sums["points"][0], "held": sums["points"][1]},
        "rebate_cents": {"available": sums["rebate"][0], "held": sums["rebate"][1]},
        "next_tier": _next_tier(settings, partner_id, tier),
        "ledger": ledger,
        "alerts": list_alerts(settings, status="all", partner_id=partner_id, limit=100),
    }


def _next_tier(settings: Settings, partner_id: str, tier: str) -> dict[str, Any] | None:
    """What the partner still needs for the next tier over the trailing window ending this month
    (net sales from the events; distinct certified courses), by the program's requirements."""
    program = load_program(str(settings.program))
    order = list(program.tier_order)
    if tier not in order or order.index(tier) + 1 >= len(order):
        return None
    target = order[order.index(tier) + 1]
    req = program.tier_requirements[target]
    db = settings.clickhouse_database
    ch = client(settings)
    latest = ch.execute(f"SELECT max(occurred_at) FROM {db}.events FINAL WHERE partner_id = %(p)s", {"p": partner_id})
    if not latest or latest[0][0] is None:
        return None
    last_ms = int(latest[0][0].replace(tzinfo=UTC).timestamp() * 1000)
    since = month_start_ms(month_index(last_ms) - program.trailing_months + 1) // 1000
    sales = ch.execute(
        f"SELECT sumIf(visitParamExtractInt(payload, 'amount_cents'), event_type = 'SaleRecorded'), "
        f"sumIf(visitParamExtractInt(payload, 'amount_cents'), event_type = 'SaleReturned'), "
        f"uniqExactIf(visitParamExtractString(payload, 'course_id'), event_type = 'TrainingCompleted' "
        f"AND visitParamExtractBool(payload, 'certification') = 1) "
        f"FROM {db}.events FINAL WHERE partner_id = %(p)s AND occurred_at >= toDateTime(%(s)s, 'UTC')",
        {"p": partner_id, "s": since})
    gross, returned, certs = (int(v or 0) for v in sales[0])
    net = gross - returned
    return {"tier": target, "window_months": program.trailing_months, "net_sales_cents": net,
            "net_sales_cents_needed": max(0, req.net_sales_cents - net), "certifications": certs,
            "certifications_needed": max(0, req.certifications - certs)}
