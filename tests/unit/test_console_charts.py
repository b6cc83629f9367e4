"""The console's inline SVG charts (processor/console/charts.py) and the Program page's glue:
well-formed XML, escaped text, one mark per value, empty input."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from processor.console import charts, program

SVG = "{http://www.w3.org/2000/svg}"
MONTHS = ["2026-01", "2026-02", "2026-03"]


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(str(svg))
    assert root.tag == f"{SVG}svg"
    return root


def marks(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}{tag}") if e.get("class") == cls]


def texts(root: ET.Element) -> list[str]:
    return [e.text or "" for e in root.iter(f"{SVG}text")]


def test_a_line_chart_has_one_point_per_value_a_legend_and_an_accessible_name():
    root = parse(charts.line_chart("Points", MONTHS, [("awarded", [10, 20, 30]), ("redeemed", [0, 5, 7])]))
    assert len(marks(root, "circle", "point")) == 6
    assert [p.get("data-value") for p in marks(root, "circle", "point")][:3] == ["10", "20", "30"]
    assert len(list(root.iter(f"{SVG}polyline"))) == 2
    assert root.get("role") == "img"
    title_id, desc_id = root.get("aria-labelledby", "").split()
    assert root.find(f"{SVG}title").text == "Points" and root.find(f"{SVG}title").get("id") == title_id
    assert "2026-01 to 2026-03" in root.find(f"{SVG}desc").text and root.find(f"{SVG}desc").get("id") == desc_id
    assert {"awarded", "redeemed"} <= set(texts(root))                    # the legend
    assert "2026-03" in texts(root)                                       # the latest month is labelled
    assert {"0", "10", "20", "30"} <= set(texts(root))                    # round y ticks


def test_a_missing_line_value_is_a_gap_not_a_zero():
    root = parse(charts.line_chart("Sales", MONTHS + ["2026-04"], [("year ago", [None, 4, None, 6]),
                                                                   ("now", [1, 2, 3, 4])]))
    by_series = [p.get("data-series") for p in marks(root, "circle", "point")]
    assert by_series.count("year ago") == 2 and by_series.count("now") == 4
    assert len(list(root.iter(f"{SVG}polyline"))) == 1                    # "year ago" has no two adjacent values


def test_a_stacked_bar_chart_has_one_group_per_label_and_one_bar_per_positive_value():
    series = [("registered", [5, 4, 3]), ("silver", [1, 0, 2]), ("gold", [0, 0, 1])]
    root = parse(charts.stacked_bar_chart("Tiers", MONTHS, series))
    groups = marks(root, "g", "bar-group")
    assert [g.get("data-label") for g in groups] == MONTHS
    assert [g.get("data-total") for g in groups] == ["6", "4", "6"]
    assert [len(marks(g, "rect", "bar")) for g in groups] == [2, 1, 3]
    bars = marks(groups[0], "rect", "bar")
    assert bars[0].find(f"{SVG}title").text == "2026-01 · registered: 5"
    # stacked: silver sits on top of registered
    assert float(bars[1].get("y")) + float(bars[1].get("height")) == pytest.approx(float(bars[0].get("y")), abs=0.2)


def test_labels_and_names_are_escaped():
    evil = "<b>&"
    for chart in (charts.line_chart(evil, [evil, "m2"], [(evil, [1, 2])]),
                  charts.stacked_bar_chart(evil, [evil, "m2"], [(evil, [1, 2])], desc=f'{evil}"')):
        svg = str(chart)
        assert "<b>" not in svg and "&lt;b&gt;&amp;" in svg
        root = parse(svg)
        assert root.find(f"{SVG}title").text == evil
        assert evil in texts(root)                                        # legend and x label, as text
        assert any(e.get("data-label") == evil for e in root.iter() if e.get("data-label"))


@pytest.mark.parametrize("labels, series", [([], []), (MONTHS, []), ([], [("a", [])])])
def test_empty_input_is_a_valid_chart_saying_no_data(labels, series):
    for make in (charts.line_chart, charts.stacked_bar_chart):
        root = parse(make("Nothing", labels, series))
        assert not marks(root, "circle", "point") and not marks(root, "rect", "bar")
        assert "No data" in texts(root)


def test_ticks_are_round_and_cover_the_values():
    assert charts.nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    assert charts.nice_ticks(-30, 45) == [-40, -20, 0, 20, 40, 60]
    assert charts.nice_ticks(0, 0) == [0, 1]
    assert charts.nice_ticks(0, 3) == [0, 1, 2, 3]                      # counts: no fractional ticks
    assert charts.nice_ticks(0, 0.4, min_step=0.01) == [0, 0.1, 0.2, 0.3, 0.4]
    assert charts.compact(1_234_567) == "1.2M" and charts.compact(950) == "950" and charts.compact(-2500) == "-2.5k"
    assert charts.compact_dollars(123_456_789) == "$1.2M" and charts.compact_dollars(-5000) == "-$50"


def test_the_program_page_charts_from_plain_data():
    def chart(series):
        return {"months": MONTHS, "series": series}
    data = {"months": MONTHS,
            "tiers": chart({t: [1, 2, 3] for t in program.TIERS}),
            "points": chart({"awarded": [10, 20, 30], "redeemed": [1, 2, 3], "expired": [0, 0, 1]}),
            "net_sales": chart({"net sales": [100, 200, 300], "same month a year earlier": [None, None, None]}),
            "alerts": chart({"self_dealing": [1, 0, 2]})}
    page = program.charts(data)
    assert [c["key"] for c in page] == ["tiers", "points", "net_sales", "alerts"]
    roots = [parse(c["svg"]) for c in page]
    assert len(marks(roots[0], "g", "bar-group")) == 3
    assert len(marks(roots[2], "circle", "point")) == 3                   # no year-ago points
    assert page[2]["figures"]["rows"][0] == ["2026-01", "$1.00", "—"]
    assert program.add_months(program.date(2026, 1, 1), -12) == program.date(2025, 1, 1)


def test_read_shows_the_last_24_months_and_no_year_ago_value_before_the_data():
    from datetime import date

    months = [program.add_months(date(2024, 1, 1), i) for i in range(30)]
    asked: list[tuple[str, dict]] = []

    def q(sql: str, **params):
        asked.append((sql, params))
        if "kpi_months" in sql:
            return [(m,) for m in months]
        window = [m for m in months if params["first"] <= m <= params["last"]]
        if "GROUP BY" not in sql:                                         # the headline's sums
            return [(40, 30)]
        if "kpi_tier_distribution" in sql:
            return [(m, "gold", 3) for m in window] + [(m, "platinum", 1) for m in window[-2:]]
        if "kpi_redemption" in sql:
            return [(m, 100, 10, 1) for m in window]
        if "kpi_growth" in sql:
            return [(m, 500, 400) for m in window]
        assert "kpi_anomalies" in sql
        return [(window[-1], "zz_new_type", 2)]

    data = program.read(q, ["self_dealing"])
    assert data is not None
    assert data["months"][0] == "2024-07" and data["months"][-1] == "2026-06" and len(data["months"]) == 24
    assert data["tiers"]["series"]["gold"] == [3] * 24 and data["tiers"]["series"]["registered"] == [0] * 24
    assert data["tiers"]["series"]["platinum"][-3:] == [0, 1, 1]
    assert data["net_sales"]["series"]["same month a year earlier"] == [None] * 6 + [400] * 18
    assert data["alerts"]["series"] == {"self_dealing": [0] * 24, "zz_new_type": [0] * 23 + [2]}
    headline = data["headline"]
    assert headline["month"] == "2026-06" and headline["participation_rate"] == 30 / 40
    assert headline["year_ago_net_sales_cents"] == 30
    assert program.read(lambda sql, **params: [], []) is None
