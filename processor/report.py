"""`incentives report`: the program KPIs of one period, read from the KPI views of ClickHouse.

Every figure comes from the views of projections/sql/014 (docs/kpis.md defines each one), so the
report, the console's Program page and the Grafana dashboards say the same thing. Counts and sums
come per segment and region; totals are their sums, and a rate is always computed from summed
numerators and denominators (never an average of rates). A rate whose denominator is 0 is None.
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from projections.kpi import add_month
from projections.migrate import check_identifier

Execute = Callable[..., list[tuple[Any, ...]]]
FAMILIES = ("participation", "redemption", "tiers", "retention", "growth", "deals", "time_to_first_value",
            "completion", "cost", "anomalies")
TIERS = ("registered", "silver", "gold", "platinum")


class PeriodError(ValueError):
    """A --period that is not YYYY-MM, YYYY-Qn or YYYY."""


@dataclass(frozen=True)
class Period:
    kind: str        # month, quarter, year
    label: str       # 2026-10, 2026-Q4, 2026
    start: date
    months: int

    @property
    def end(self) -> date:
        return add_month(self.start, self.months)

    def shifted(self, months: int) -> Period:
        return period_of(self.kind, add_month(self.start, months))


def period_of(kind: str, start: date) -> Period:
    if kind == "month":
        return Period(kind, f"{start.year}-{start.month:02d}", start, 1)
    if kind == "quarter":
        return Period(kind, f"{start.year}-Q{(start.month - 1) // 3 + 1}", start, 3)
    return Period(kind, str(start.year), start, 12)


def parse_period(text: str) -> Period:
    """`2026-10` (a month), `2026-Q4` (a quarter) or `2026` (a year)."""
    text = text.strip()
    if m := re.fullmatch(r"(\d{4})-(\d{2})", text):
        year, month = int(m[1]), int(m[2])
        if 1 <= month <= 12:
            return period_of("month", date(year, month, 1))
    elif m := re.fullmatch(r"(\d{4})-[Qq]([1-4])", text):
        return period_of("quarter", date(int(m[1]), (int(m[2]) - 1) * 3 + 1, 1))
    elif re.fullmatch(r"\d{4}", text):
        return period_of("year", date(int(text), 1, 1))
    raise PeriodError(f"--period {text!r}: expected a month (2026-10), a quarter (2026-Q4) or a year (2026)")


def latest_month(execute: Execute, database: str) -> Period | None:
    """The last month the KPI rollup knows (the report's default period), or None when empty."""
    rows = execute(f"SELECT max(month), count() FROM {check_identifier(database)}.kpi_months")
    if not rows or not rows[0][1]:
        return None
    return period_of("month", rows[0][0])


def rate(numerator: int | float, denominator: int | float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


# ----------------------------------------------------------------------------------------------
# Reading the views


class Views:
    """The period views of one database, read for one period."""

    def __init__(self, execute: Execute, database: str) -> None:
        self.execute = execute
        self.db = check_identifier(database)

    def rows(self, view: str, columns: Sequence[str], period: Period, *, grouped: bool = True) -> list[dict]:
        keys = ("segment", "region", *columns) if grouped else tuple(columns)
        sql = (f"SELECT {', '.join(keys)} FROM {self.db}.{view} "
               f"WHERE period_type = %(kind)s AND period = %(label)s")
        return [dict(zip(keys, row, strict=True))
                for row in self.execute(sql, {"kind": period.kind, "label": period.label})]


def _sums(rows: Iterable[dict], columns: Sequence[str]) -> dict[str, int]:
    total = dict.fromkeys(columns, 0)
    for row in rows:
        for c in columns:
            total[c] += int(row[c] or 0)
    return total


def _breakdown(rows: list[dict], columns: Sequence[str], derive: Callable[[dict], dict]) -> dict[str, Any]:
    """Totals, and the same per segment and per region, each with its derived rates."""
    out: dict[str, Any] = {**(t := _sums(rows, columns)), **derive(t)}
    for key in ("segment", "region"):
        groups: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            groups[row[key] or "(none)"].append(row)
        out[f"by_{key}"] = [{key: name, **(s := _sums(g, columns)), **derive(s)}
                            for name, g in sorted(groups.items())]
    return out


# ----------------------------------------------------------------------------------------------
# The families


def participation(v: Views, p: Period) -> dict[str, Any]:
    cols = ("enrolled_partners", "active_partners")
    return _breakdown(v.rows("kpi_participation", cols, p), cols,
                      lambda s: {"participation_rate": rate(s["active_partners"], s["enrolled_partners"])})


def redemption(v: Views, p: Period) -> dict[str, Any]:
    cols = ("points_awarded", "points_redeemed", "points_expired", "redemptions", "partners_redeeming",
            "enrolled_partners")
    return _breakdown(v.rows("kpi_redemption", cols, p), cols, lambda s: {
        "redemption_rate": rate(s["points_redeemed"], s["points_awarded"]),
        "share_of_partners_redeeming": rate(s["partners_redeeming"], s["enrolled_partners"])})


def tiers(v: Views, p: Period) -> dict[str, Any]:
    def distribution(period: Period) -> dict[str, int]:
        counts = dict.fromkeys(TIERS, 0)
        for row in v.rows("kpi_tier_distribution", ("tier", "partners"), period):
            counts[row["tier"]] = counts.get(row["tier"], 0) + int(row["partners"])
        return counts

    moves = v.rows("kpi_tier_movements", ("from_tier", "to_tier", "direction", "changes", "partners"), p,
                   grouped=False)
    return {
        "at_start": distribution(period_of("month", add_month(p.start, -1))),
        "at_end": distribution(p),
        "upgrades": sum(int(m["changes"]) for m in moves if m["direction"] == "upgrade"),
        "downgrades": sum(int(m["changes"]) for m in moves if m["direction"] == "downgrade"),
        "movements": sorted(({"from": m["from_tier"], "to": m["to_tier"], "changes": int(m["changes"]),
                              "partners": int(m["partners"])} for m in moves),
                            key=lambda m: (TIERS.index(m["from"]) if m["from"] in TIERS else -1,
                                           TIERS.index(m["to"]) if m["to"] in TIERS else -1)),
    }


def retention(v: Views, p: Period) -> dict[str, Any]:
    cols = ("top_tier_at_start", "retained")
    return _breakdown(v.rows("kpi_retention", cols, p), cols,
                      lambda s: {"retention_rate": rate(s["retained"], s["top_tier_at_start"])})


def growth(v: Views, p: Period) -> dict[str, Any]:
    cols = ("net_sales_cents", "gross_sales_cents", "returns_cents", "partners_selling",
            "previous_net_sales_cents", "year_ago_net_sales_cents")

    def derive(s: dict) -> dict:
        return {"growth_vs_previous": _growth(s["net_sales_cents"], s["previous_net_sales_cents"]),
                "growth_vs_year_ago": _growth(s["net_sales_cents"], s["year_ago_net_sales_cents"])}
    return {"previous_period": p.shifted(-p.months).label, "year_ago_period": p.shifted(-12).label,
            **_breakdown(v.rows("kpi_growth", cols, p), cols, derive)}


def _growth(now: int, before: int) -> float | None:
    return round(now / before - 1, 4) if before > 0 else None


def deals(v: Views, p: Period) -> dict[str, Any]:
    cols = ("deals_registered", "deal_volume_cents", "deals_won", "deals_lost", "partners_registering")
    return _breakdown(v.rows("kpi_deals", cols, p), cols,
                      lambda s: {"win_rate": rate(s["deals_won"], s["deals_won"] + s["deals_lost"])})


def time_to_first_value(v: Views, p: Period) -> dict[str, Any]:
    cols = ("partners_enrolled", "partners_with_points", "median_days", "p90_days")

    def cohort(row: dict) -> dict:
        has = int(row["partners_with_points"])
        return {"partners_enrolled": int(row["partners_enrolled"]), "partners_with_points": has,
                "median_days": round(float(row["median_days"]), 2) if has else None,
                "p90_days": round(float(row["p90_days"]), 2) if has else None}

    whole = v.rows("kpi_time_to_first_value", cols, p, grouped=False)
    months = []
    for i in range(p.months):
        month = period_of("month", add_month(p.start, i))
        for row in v.rows("kpi_time_to_first_value", cols, month, grouped=False):
            months.append({"cohort": month.label, **cohort(row)})
    empty = {"partners_enrolled": 0, "partners_with_points": 0, "median_days": None, "p90_days": None}
    return {**(cohort(whole[0]) if whole else empty), "cohorts": months}


def completion(v: Views, p: Period) -> dict[str, Any]:
    cols = ("active_partners", "trainings", "certifications", "marketing_activities", "partners_training",
            "partners_certified", "partners_marketing")
    return _breakdown(v.rows("kpi_completion", cols, p), cols, lambda s: {
        "trainings_per_active_partner": rate(s["trainings"], s["active_partners"]),
        "certifications_per_active_partner": rate(s["certifications"], s["active_partners"]),
        "marketing_per_active_partner": rate(s["marketing_activities"], s["active_partners"]),
        "share_training": rate(s["partners_training"], s["active_partners"]),
        "share_certified": rate(s["partners_certified"], s["active_partners"]),
        "share_marketing": rate(s["partners_marketing"], s["active_partners"])})


def cost(v: Views, p: Period) -> dict[str, Any]:
    cols = ("points_awarded", "points_adjusted", "points_clawed_back", "points_forfeited", "points_cost_cents",
            "rebate_cents", "rebate_forfeited_cents", "program_cost_cents", "net_sales_cents",
            "baseline_net_sales_cents", "incremental_net_sales_cents")
    rows = v.rows("kpi_cost", (*cols, "point_value_cents"), p)
    point_value = int(rows[0]["point_value_cents"]) if rows else None
    return {"point_value_cents": point_value, **_breakdown(rows, cols, lambda s: {
        "cost_per_incremental_dollar": rate(s["program_cost_cents"], s["incremental_net_sales_cents"])})}


def anomalies(v: Views, p: Period) -> dict[str, Any]:
    cols = ("raised", "open", "confirmed", "dismissed", "held_points_raised", "held_points_open",
            "held_points_forfeited")
    rows = v.rows("kpi_anomalies", ("alert_type", "severity", *cols), p, grouped=False)
    by_type: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = by_type.setdefault(row["alert_type"], {"alert_type": row["alert_type"],
                                                       "severity": row["severity"], **dict.fromkeys(cols, 0)})
        for c in cols:
            entry[c] += int(row[c])
    open_now = v.execute(
        f"SELECT count(), sum(held_points), quantileExact(0.5)(age_days), max(age_days) FROM {v.db}.kpi_open_alerts")
    count, held, median_age, max_age = open_now[0] if open_now else (0, 0, 0, 0)
    count = int(count)
    forfeited = v.rows("kpi_cost", ("points_forfeited",), p)
    return {**_sums(rows, cols), "points_forfeited": sum(int(r["points_forfeited"]) for r in forfeited),
            "by_type": sorted(by_type.values(), key=lambda e: e["alert_type"]),
            "open_now": {"alerts": int(count), "held_points": int(held or 0),
                         "median_age_days": round(float(median_age), 2) if count else None,
                         "max_age_days": round(float(max_age), 2) if count else None}}


FAMILY_FUNCTIONS: dict[str, Callable[[Views, Period], dict[str, Any]]] = {
    "participation": participation, "redemption": redemption, "tiers": tiers, "retention": retention,
    "growth": growth, "deals": deals, "time_to_first_value": time_to_first_value, "completion": completion,
    "cost": cost, "anomalies": anomalies,
}


def report(execute: Execute, database: str, period: Period) -> dict[str, Any]:
    """The SPEC section 10 document: one key per KPI family, plus the period."""
    views = Views(execute, database)
    doc: dict[str, Any] = {"period": {"type": period.kind, "label": period.label, "start": period.start.isoformat(),
                                      "end": period.end.isoformat()}}
    for name in FAMILIES:
        doc[name] = FAMILY_FUNCTIONS[name](views, period)
    return doc
