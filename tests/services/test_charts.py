"""The SVG bar charts: accessible names, geometry around the baseline, escaping; and the
export date-range parser."""

from __future__ import annotations

import re
from datetime import date

import pytest

from app.models import Partner
from app.services.charts import BOTTOM, HEIGHT, TOP, Bar, bar_chart, dashboard_charts
from app.services.dashboard import AgingBucket, Dashboard, MonthTotal, WeekTotal
from app.services.exports import DateRange, ExportRangeInvalid, parse_range


def _rects(svg: str) -> list[dict[str, str]]:
    return [dict(re.findall(r'(\w+)="([^"]*)"', r)) for r in re.findall(r"<rect [^>]*/>", svg)]


def test_is_a_chart_an_image_named_by_its_title_and_described_by_every_value() -> None:
    svg = bar_chart(
        chart_id="c1",
        title="Money <in>",
        summary="Per month.",
        bars=[Bar("Jan", 100, "$1", "January: $1.00"), Bar("Feb", 0, "$0", "February: $0.00")],
    )
    assert svg.startswith('<svg class="chart" id="c1" role="img"')
    assert 'aria-labelledby="c1-title c1-desc"' in svg
    assert '<title id="c1-title">Money &lt;in&gt;</title>' in svg
    assert '<desc id="c1-desc">Per month. January: $1.00; February: $0.00.</desc>' in svg


def test_does_a_label_stay_text() -> None:
    svg = bar_chart(chart_id="x", title="t", summary="s", bars=[Bar("<script>", 1, "&", "<b>")])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;b&gt;" in svg
    assert ">&amp;</text>" in svg


def test_do_positive_bars_stand_on_the_baseline_and_negative_ones_hang_from_it() -> None:
    bars = [Bar("a", 300, "", ""), Bar("b", -100, "", ""), Bar("c", 1, "", ""), Bar("d", 0, "", "")]
    rects = _rects(bar_chart(chart_id="g", title="t", summary="s", bars=bars))
    plot = HEIGHT - TOP - BOTTOM
    zero = TOP + plot * 300 // 400
    up, down, tiny, flat = rects
    assert int(up["y"]) + int(up["height"]) == zero and int(up["height"]) == plot * 300 // 400
    assert int(down["y"]) == zero and int(down["height"]) == plot * 100 // 400
    assert down["class"] == "chart-bar chart-negative" and up["class"] == "chart-bar"
    assert int(tiny["height"]) == 1  # a non-zero value stays visible
    assert int(flat["height"]) == 0
    assert len({r["x"] for r in rects}) == 4


def test_is_an_all_zero_chart_drawn_flat() -> None:
    rects = _rects(bar_chart(chart_id="z", title="t", summary="s", bars=[Bar("a", 0, "", "")]))
    assert rects[0]["height"] == "0"


def test_does_a_chart_need_a_bar() -> None:
    with pytest.raises(ValueError):
        bar_chart(chart_id="e", title="t", summary="s", bars=[])


def test_do_dashboard_charts_shorten_big_values_but_describe_them_exactly() -> None:
    dash = Dashboard(
        partner=Partner(name="P", slug="p", country="US", currency="USD"),
        as_of=date(2026, 3, 15),
        currency="USD",
        collected_by_month=[
            MonthTotal(date(2026, 2, 1), -5000),
            MonthTotal(date(2026, 3, 1), 123450),
        ],
        outstanding=0,
        outstanding_count=0,
        overdue=[AgingBucket("1–30 days", 1, 30, 1, 2500), AgingBucket("90+ days", 91, None, 0, 0)],
        mrr=0,
        expected_by_week=[WeekTotal(date(2026, 3, 15), date(2026, 3, 21), 2, 3000)],
    )
    charts = dashboard_charts(dash)
    assert ">$1.2K</text>" in charts.collected and ">-$50.00</text>" in charts.collected
    assert "March 2026: $1,234.50" in charts.collected
    assert "chart-negative" in charts.collected
    assert "1–30 days: $25.00 in 1 invoice; 90+ days: $0.00 in 0 invoices." in charts.overdue
    assert "Mar 15 to Mar 21: $30.00 in 2 charges." in charts.expected
    assert ">Mar 15</text>" in charts.expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2024-02-29", "2024-02-29", DateRange(date(2024, 2, 29), date(2024, 2, 29))),
        (" 2024-01-01 ", "2024-12-31\n", DateRange(date(2024, 1, 1), date(2024, 12, 31))),
    ],
)
def test_does_a_range_include_both_days(start: str, end: str, expected: DateRange) -> None:
    assert parse_range(start, end) == expected
    assert expected.slug.endswith(expected.end.isoformat())


@pytest.mark.parametrize(
    ("start", "end", "fields"),
    [
        ("2023-02-29", "2023-03-01", {"from"}),
        ("", "", {"from", "to"}),
        ("03/01/2024", "2024-03-02", {"from"}),
        ("2024-03-02", "2024-03-01", {"to"}),
    ],
)
def test_does_a_bad_range_name_its_fields(start: str, end: str, fields: set[str]) -> None:
    with pytest.raises(ExportRangeInvalid) as caught:
        parse_range(start, end)
    assert set(caught.value.errors) == fields
    assert caught.value.field in fields
