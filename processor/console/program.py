"""The Program page's figures: the program KPIs by month, read from the KPI views (migration 014).

One function per chart, each returning plain data, ``{"months": ["2026-01", ...], "series":
{name: [one value per month]}}``, and one for the headline table of the latest month. Program
totals are sums over segment and region; a rate is computed from the sums, never averaged. The
month axis is the last `WINDOW_MONTHS` months the rollup knows (``kpi_months``, without gaps),
shared by the four charts; a month a view has no row for counts 0, except the net sales of a year
earlier, which is ``None`` (no value) when that month is before the data begins (the view says 0
then). `read` gathers it all through a query function, ``None`` when there is no data yet;
`overview` runs it on one connection, synchronously (clickhouse-driver): the console runs it in a
thread. `charts` turns it into the page's SVG.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from markupsafe import Markup

from processor.config import Settings
from processor.console.charts import compact_dollars, line_chart, stacked_bar_chart
from processor.programs import load_program
from projections.migrate import check_identifier, client

WINDOW_MONTHS = 24
TIERS = ("registered", "silver", "gold", "platinum")
TIER_COLORS = ("#b9c2ca", "#7f8c99", "#d4a017", "#3b5b92")
#: run a query (``{db}`` is the database, ``%(name)s`` the keyword arguments) -> rows
Query = Callable[..., list[tuple[Any, ...]]]
Chart = dict[str, Any]
MONTHLY = "period_type = 'month' AND period_start >= toDate(%(first)s) AND period_start <= toDate(%(last)s)"


def month_label(month: date) -> str:
    return month.strftime("%Y-%m")


def add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def known_months(q: Query) -> list[date]:
    """Every month of the rollup, first to last (empty without data)."""
    return [row[0] for row in q("SELECT month FROM {db}.kpi_months ORDER BY month")]


def _monthly(q: Query, window: list[date], sql: str) -> list[tuple[Any, ...]]:
    return q(sql.replace("{monthly}", MONTHLY), first=window[0], last=window[-1])


def _chart(window: list[date], series: dict[str, dict[date, Any]], default: Any = 0) -> Chart:
    return {"months": [month_label(m) for m in window],
            "series": {name: [values.get(m, default) for m in window] for name, values in series.items()}}


def tier_distribution(q: Query, window: list[date]) -> Chart:
    """Partners by tier at the end of each month (``kpi_tier_distribution``)."""
    by_tier: dict[str, dict[date, int]] = {tier: {} for tier in TIERS}
    for month, tier, partners in _monthly(q, window, "SELECT period_start, tier, sum(partners) FROM "
                                          "{db}.kpi_tier_distribution WHERE {monthly} GROUP BY period_start, tier"):
        by_tier.setdefault(tier, {})[month] = int(partners)
    return _chart(window, by_tier)


def points(q: Query, window: list[date]) -> Chart:
    """Points awarded (earned, bonus, spiff), redeemed and expired by month (``kpi_redemption``)."""
    series: dict[str, dict[date, int]] = {"awarded": {}, "redeemed": {}, "expired": {}}
    for month, *values in _monthly(q, window, "SELECT period_start, sum(points_awarded), sum(points_redeemed), "
                                   "sum(points_expired) FROM {db}.kpi_redemption WHERE {monthly} "
                                   "GROUP BY period_start"):
        for name, value in zip(series, values, strict=True):
            series[name][month] = int(value)
    return _chart(window, series)


def net_sales(q: Query, window: list[date], first_known: date) -> Chart:
    """Net sales (cents) by month and of the same month a year earlier (``kpi_growth``); the year-ago
    value is ``None`` for months whose year-ago month is before ``first_known``."""
    now: dict[date, int] = {m: 0 for m in window}
    year_ago: dict[date, int | None] = {m: 0 if add_months(m, -12) >= first_known else None for m in window}
    for month, net, before in _monthly(q, window, "SELECT period_start, sum(net_sales_cents), "
                                       "sum(year_ago_net_sales_cents) FROM {db}.kpi_growth WHERE {monthly} "
                                       "GROUP BY period_start"):
        now[month] = int(net)
        if year_ago.get(month) is not None:
            year_ago[month] = int(before)
    return _chart(window, {"net sales": now, "same month a year earlier": year_ago}, default=None)


def alerts_raised(q: Query, window: list[date], types: Iterable[str] = ()) -> Chart:
    """Alerts raised by type by month, whatever their state now (``kpi_anomalies``); a series for
    each of ``types`` (the program's, so each keeps its colour) and any other type found."""
    by_type: dict[str, dict[date, int]] = {t: {} for t in types}
    for month, alert_type, raised in _monthly(q, window, "SELECT period_start, alert_type, sum(raised) FROM "
                                              "{db}.kpi_anomalies WHERE {monthly} GROUP BY period_start, alert_type "
                                              "ORDER BY alert_type"):
        by_type.setdefault(alert_type, {})[month] = int(raised)
    return _chart(window, by_type)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def headline(q: Query, month: date, first_known: date) -> dict[str, Any]:
    """The month's participation rate, redemption rate, net sales and program cost, with what they
    are computed from (sums over segment and region)."""
    def sums(columns: str, view: str) -> tuple[Any, ...]:
        return q(f"SELECT {columns} FROM {{db}}.{view} WHERE {MONTHLY}", first=month, last=month)[0]

    enrolled, active = sums("sum(enrolled_partners), sum(active_partners)", "kpi_participation")
    awarded, redeemed = sums("sum(points_awarded), sum(points_redeemed)", "kpi_redemption")
    net, year_ago = sums("sum(net_sales_cents), sum(year_ago_net_sales_cents)", "kpi_growth")
    cost, incremental = sums("sum(program_cost_cents), sum(incremental_net_sales_cents)", "kpi_cost")
    enrolled, active, awarded, redeemed = (int(v or 0) for v in (enrolled, active, awarded, redeemed))
    return {"month": month_label(month), "enrolled_partners": enrolled, "active_partners": active,
            "participation_rate": _ratio(active, enrolled), "points_awarded": awarded, "points_redeemed": redeemed,
            "redemption_rate": _ratio(redeemed, awarded), "net_sales_cents": int(net or 0),
            "year_ago_net_sales_cents": int(year_ago or 0) if add_months(month, -12) >= first_known else None,
            "program_cost_cents": int(cost or 0), "incremental_net_sales_cents": int(incremental or 0)}


def read(q: Query, alert_types: Iterable[str] = ()) -> dict[str, Any] | None:
    """Everything the page shows, or ``None`` when the rollup is empty (no data yet)."""
    months = known_months(q)
    if not months:
        return None
    window, first = months[-WINDOW_MONTHS:], months[0]
    return {"months": [month_label(m) for m in window], "tiers": tier_distribution(q, window),
            "points": points(q, window), "net_sales": net_sales(q, window, first),
            "alerts": alerts_raised(q, window, alert_types), "headline": headline(q, window[-1], first)}


def overview(settings: Settings) -> dict[str, Any] | None:
    """`read` on one connection to the settings' ClickHouse, with the program's alert types."""
    db = check_identifier(settings.clickhouse_database)
    ch = client(settings)

    def q(sql: str, **params: Any) -> list[tuple[Any, ...]]:
        return list(ch.execute(sql.replace("{db}", db), params))
    try:
        return read(q, sorted(load_program(str(settings.program)).severity))
    finally:
        ch.disconnect()


def _figures(chart: Chart, fmt: Callable[[Any], str]) -> dict[str, Any]:
    """The chart's numbers as a table (the page shows it under the chart)."""
    names = list(chart["series"])
    rows = [[month] + [fmt(chart["series"][n][i]) for n in names] for i, month in enumerate(chart["months"])]
    return {"columns": ["month", *names], "rows": rows}


def _points(value: Any) -> str:
    return "—" if value is None else f"{int(value):,}"


def _dollars(cents: Any) -> str:
    return "—" if cents is None else f"${int(cents) / 100:,.2f}"


def charts(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The four charts of an `overview`: key, title, note, the SVG and its figures."""
    def entry(key: str, title: str, note: str, svg: Markup, fmt: Callable[[Any], str]) -> dict[str, Any]:
        return {"key": key, "title": title, "note": note, "svg": svg, "figures": _figures(data[key], fmt)}

    tiers, pts, sales, alerts = data["tiers"], data["points"], data["net_sales"], data["alerts"]
    return [
        entry("tiers", "Partners by tier", "Each partner's tier at the end of the month.",
              stacked_bar_chart("Partners by tier", tiers["months"], list(tiers["series"].items()),
                                colors=TIER_COLORS), _points),
        entry("points", "Points awarded, redeemed and expired", "Awarded: earned, bonus and spiff points.",
              line_chart("Points awarded, redeemed and expired", pts["months"], list(pts["series"].items())),
              _points),
        entry("net_sales", "Net sales", "Sales less returns, and the same month a year earlier "
              "(shown once the data goes back that far).",
              line_chart("Net sales", sales["months"], list(sales["series"].items()), y_format=compact_dollars),
              _dollars),
        entry("alerts", "Alerts raised by type", "Alerts raised in the month, whatever their state now.",
              stacked_bar_chart("Alerts raised by type", alerts["months"], list(alerts["series"].items())),
              _points),
    ]
