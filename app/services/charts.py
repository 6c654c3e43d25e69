"""Server-rendered SVG charts: no JavaScript, readable by screen readers.

A chart is an ``<svg role="img">`` named by its ``<title>`` and described by a ``<desc>``
that lists every value in words, so the numbers reach people who cannot see the bars.
Pages also show the same numbers in a table beside the chart. Geometry is integer
arithmetic on a fixed ``viewBox``; CSS scales the drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from babel.numbers import format_compact_currency
from markupsafe import Markup, escape

from app.domain.money import format_money, to_decimal
from app.services.dashboard import Dashboard

WIDTH: Final = 400
HEIGHT: Final = 200
TOP: Final = 22  # room for the value above the tallest bar
BOTTOM: Final = 26  # room for the labels under the baseline
SIDE: Final = 4
LOCALE: Final = "en_US"  # as the pages' ``money`` filter formats the same figures


@dataclass(frozen=True)
class Bar:
    """One bar: a short label under the axis, its value, a short text above the bar, and
    what the description says of it ("November 2026: $520.00")."""

    label: str
    value: int
    text: str
    spoken: str


def bar_chart(*, chart_id: str, title: str, summary: str, bars: Sequence[Bar]) -> Markup:
    """An accessible SVG bar chart of ``bars`` (negative values hang below the baseline).

    ``chart_id`` must be unique on the page (it prefixes the title and desc ids);
    ``summary`` opens the description, followed by every bar's label and text.

    Raises:
        ValueError: ``bars`` is empty.
    """
    if not bars:
        raise ValueError("a bar chart needs at least one bar")
    high = max(0, *(b.value for b in bars))
    low = min(0, *(b.value for b in bars))
    span = (high - low) or 1
    plot = HEIGHT - TOP - BOTTOM
    zero_y = TOP + plot * high // span
    slot = (WIDTH - 2 * SIDE) // len(bars)
    bar_width = max(4, slot * 3 // 5)
    desc = f"{summary} " + "; ".join(b.spoken for b in bars) + "."
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>',
        f'<line class="chart-axis" x1="{SIDE}" y1="{zero_y}" x2="{WIDTH - SIDE}" y2="{zero_y}"/>',
    ]
    for i, bar in enumerate(bars):
        height = plot * abs(bar.value) // span
        if bar.value and not height:
            height = 1  # a non-zero value stays visible
        x = SIDE + i * slot + (slot - bar_width) // 2
        y = zero_y - height if bar.value >= 0 else zero_y
        centre = x + bar_width // 2
        css = "chart-bar" if bar.value >= 0 else "chart-bar chart-negative"
        value_y = y - 6 if bar.value >= 0 else y + height + 14
        parts += [
            f'<rect class="{css}" x="{x}" y="{y}" width="{bar_width}" height="{height}"/>',
            f'<text class="chart-value" x="{centre}" y="{value_y}" text-anchor="middle">'
            f"{escape(bar.text)}</text>",
            f'<text class="chart-label" x="{centre}" y="{HEIGHT - 8}" text-anchor="middle">'
            f"{escape(bar.label)}</text>",
        ]
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class DashboardCharts:
    """The dashboard's three charts, ready to place in a template."""

    overdue: Markup
    collected: Markup
    expected: Markup


def dashboard_charts(dash: Dashboard) -> DashboardCharts:
    """Draw the overdue buckets, collected per month and expected charges per week.

    Raises:
        InvalidInput: the partner's currency is unknown.
    """
    currency, locale = dash.currency, LOCALE

    def money(amount: int) -> str:
        return format_money(amount, currency, locale)

    def short(amount: int) -> str:
        value = to_decimal(amount, currency)
        if abs(value) < 1000:
            return money(amount)
        whole = value.to_integral_value()
        return format_compact_currency(whole, currency, locale=locale, fraction_digits=1)

    def many(n: int, noun: str) -> str:
        return f"{n} {noun}{'' if n == 1 else 's'}"

    overdue = [
        Bar(
            b.label.removesuffix(" days"),
            b.amount,
            short(b.amount),
            f"{b.label}: {money(b.amount)} in {many(b.count, 'invoice')}",
        )
        for b in dash.overdue
    ]
    collected = [
        Bar(
            m.month.strftime("%b"),
            m.amount,
            short(m.amount),
            f"{m.month.strftime('%B %Y')}: {money(m.amount)}",
        )
        for m in dash.collected_by_month
    ]
    expected = [
        Bar(
            w.start.strftime("%b %-d"),
            w.amount,
            short(w.amount),
            f"{w.start.strftime('%b %-d')} to {w.end.strftime('%b %-d')}: "
            f"{money(w.amount)} in {many(w.count, 'charge')}",
        )
        for w in dash.expected_by_week
    ]
    return DashboardCharts(
        overdue=bar_chart(
            chart_id="chart-overdue",
            title="Overdue balance by days past due",
            summary="Unpaid balance of overdue invoices, by how many days past due.",
            bars=overdue,
        ),
        collected=bar_chart(
            chart_id="chart-collected",
            title="Collected per month",
            summary="Payments minus refunds in each of the last six months.",
            bars=collected,
        ),
        expected=bar_chart(
            chart_id="chart-expected",
            title="Charges expected per week",
            summary="Scheduled charges in the next 30 days, by week starting on the day shown.",
            bars=expected,
        ),
    )
