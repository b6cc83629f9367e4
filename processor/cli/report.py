"""``incentives report``: the program KPIs of a period, as tables or as one JSON document."""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from processor.config import ConfigError, load_settings
from processor.report import Period, PeriodError, latest_month, parse_period, report
from projections.migrate import client


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{value * 100:.1f}%"
    if kind == "usd":
        return f"${int(value) / 100:,.2f}"
    if kind == "num":
        return f"{value:,.2f}" if isinstance(value, float) else f"{int(value):,}"
    return str(value)


def table(title: str, columns: Sequence[tuple[str, str, str]], rows: Sequence[dict[str, Any]],
          first: str = "") -> list[str]:
    """`columns`: (key, heading, kind: num|pct|usd|text). The first column is `first` (a label key)."""
    head = [first or ""] + [h for _, h, _ in columns]
    body = [[str(r.get("_label", ""))] + [_cell(r.get(k), kind) for k, _, kind in columns] for r in rows]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return [title, line(head), *(line(cells) for cells in body), ""]


def _with_breakdown(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{**doc, "_label": "all partners"}]
    for key in ("segment", "region"):
        rows += [{**r, "_label": f"{key} {r[key]}"} for r in doc.get(f"by_{key}", [])]
    return rows


def render(doc: dict[str, Any]) -> str:
    p = doc["period"]
    out = [f"Program report {p['label']} ({p['type']}: {p['start']} up to {p['end']})", ""]
    out += table("Participation", [("enrolled_partners", "enrolled", "num"), ("active_partners", "active", "num"),
                                   ("participation_rate", "rate", "pct")], _with_breakdown(doc["participation"]))
    out += table("Redemption", [("points_awarded", "awarded", "num"), ("points_redeemed", "redeemed", "num"),
                                ("points_expired", "expired", "num"), ("redemption_rate", "rate", "pct"),
                                ("partners_redeeming", "partners", "num"),
                                ("share_of_partners_redeeming", "share", "pct")],
                 _with_breakdown(doc["redemption"]))
    t = doc["tiers"]
    out += table("Tiers", [(tier, tier, "num") for tier in t["at_end"]],
                 [{**t["at_start"], "_label": "at start"}, {**t["at_end"], "_label": "at end"}])
    out += [f"  upgrades {t['upgrades']:,}, downgrades {t['downgrades']:,}"]
    out += [f"    {m['from']} -> {m['to']}: {m['changes']:,}" for m in t["movements"]] + [""]
    out += table("Retention of gold and platinum partners",
                 [("top_tier_at_start", "at start", "num"), ("retained", "retained", "num"),
                  ("retention_rate", "rate", "pct")], _with_breakdown(doc["retention"]))
    g = doc["growth"]
    out += table(f"Net sales (previous period {g['previous_period']}, a year earlier {g['year_ago_period']})",
                 [("net_sales_cents", "net sales", "usd"), ("previous_net_sales_cents", "previous", "usd"),
                  ("growth_vs_previous", "growth", "pct"), ("year_ago_net_sales_cents", "year ago", "usd"),
                  ("growth_vs_year_ago", "growth", "pct")], _with_breakdown(g))
    out += table("Deal registration", [("deals_registered", "registered", "num"),
                                       ("deal_volume_cents", "volume", "usd"), ("deals_won", "won", "num"),
                                       ("deals_lost", "lost", "num"), ("win_rate", "win rate", "pct")],
                 _with_breakdown(doc["deals"]))
    ttfv = doc["time_to_first_value"]
    out += table("Time to first value (days from enrolment to first points, by enrolment cohort)",
                 [("partners_enrolled", "enrolled", "num"), ("partners_with_points", "with points", "num"),
                  ("median_days", "median", "num"), ("p90_days", "p90", "num")],
                 [{**ttfv, "_label": "whole period"}, *({**c, "_label": c["cohort"]} for c in ttfv["cohorts"])])
    out += table("Behaviour completion", [("active_partners", "active", "num"), ("trainings", "trainings", "num"),
                                          ("trainings_per_active_partner", "per partner", "num"),
                                          ("certifications", "certs", "num"),
                                          ("marketing_activities", "marketing", "num"),
                                          ("marketing_per_active_partner", "per partner", "num")],
                 _with_breakdown(doc["completion"]))
    c = doc["cost"]
    out += table(f"Program cost (a point costs {c['point_value_cents']} cent(s))",
                 [("points_cost_cents", "points", "usd"), ("rebate_cents", "rebates", "usd"),
                  ("program_cost_cents", "total", "usd"), ("incremental_net_sales_cents", "incremental sales", "usd"),
                  ("cost_per_incremental_dollar", "per incr. $", "num")], _with_breakdown(c))
    a = doc["anomalies"]
    out += table("Anomalies raised in the period", [("raised", "raised", "num"), ("open", "open", "num"),
                                                    ("confirmed", "confirmed", "num"),
                                                    ("dismissed", "dismissed", "num"),
                                                    ("held_points_raised", "held pts", "num")],
                 [{**r, "_label": r["alert_type"]} for r in a["by_type"]] + [{**a, "_label": "all"}])
    o = a["open_now"]
    out += [f"  open now: {o['alerts']:,} alerts holding {o['held_points']:,} points; age median "
            f"{_cell(o['median_age_days'], 'num')} days, max {_cell(o['max_age_days'], 'num')} days; "
            f"points forfeited in the period {a['points_forfeited']:,}", ""]
    return "\n".join(out)


@click.command("report")
@click.option("--period", default=None, metavar="YYYY-MM|YYYY-Qn|YYYY",
              help="The period: a month (2026-10), a quarter (2026-Q4) or a year (2026) "
                   "[default: the latest month in ClickHouse].")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON document with one key per KPI family (participation, redemption, tiers, retention, "
                   "growth, deals, time_to_first_value, completion, cost, anomalies).")
def report_command(period: str | None, as_json: bool) -> None:
    """Program KPIs of a period from the ClickHouse KPI views (docs/kpis.md defines each figure).

    \b
    Examples:
      incentives report
      incentives report --period 2026-Q4
      incentives report --period 2026 --json | jq .participation
    """
    try:
        settings = load_settings()
        chosen: Period | None = parse_period(period) if period else None
    except (ConfigError, PeriodError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    conn = client(settings)
    try:
        try:
            chosen = chosen or latest_month(conn.execute, settings.clickhouse_database)
        except Exception as exc:  # noqa: BLE001 - the reason is what the user needs
            click.echo(f"error: cannot read ClickHouse at {settings.clickhouse_host}:{settings.clickhouse_port} "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); is the stack "
                       f"up (incentives dev up) and migrated?", err=True)
            sys.exit(1)
        if chosen is None:
            click.echo("error: ClickHouse has no KPI figures yet (no events projected); pass --period or run "
                       "the pipeline first", err=True)
            sys.exit(1)
        doc = report(conn.execute, settings.clickhouse_database, chosen)
    finally:
        conn.disconnect()
    click.echo(json.dumps(doc, sort_keys=True) if as_json else render(doc))
