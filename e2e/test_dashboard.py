"""The partner dashboard's charts, the customer filters with htmx, and a CSV download,
in Chromium against the live stack."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e.test_sign_in import customer_table, sign_in

pytestmark = pytest.mark.e2e


def test_dashboard_shows_its_charts_and_figures(page: Page) -> None:
    sign_in(page, "sales@us-partner.example")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()

    expect(page).to_have_url(re.compile(r"/partner/dashboard$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Harbor Community Network — dashboard"
    )
    for name in (
        "Overdue balance by days past due",
        "Collected per month",
        "Charges expected per week",
    ):
        chart = page.get_by_role("img", name=name)
        expect(chart).to_be_visible()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 80, box
    bars = page.locator("#chart-overdue rect.chart-bar")
    expect(bars).to_have_count(4)
    for label in ("Collected this month", "Outstanding", "Monthly recurring revenue"):
        figure = page.locator(".kpis div").filter(has=page.locator("dt", has_text=label))
        expect(figure.locator("dd")).to_have_text(re.compile(r"^-?\$[\d,]+\.\d\d"))
    overdue = page.locator("section").filter(has=page.get_by_role("heading", name="Overdue by age"))
    expect(overdue.get_by_role("row", name=re.compile(r"^1–30 days"))).to_be_visible()


def test_invoice_csv_downloads_from_the_dashboard(page: Page) -> None:
    sign_in(page, "admin@us-partner.example")
    page.goto("/partner/dashboard")
    page.get_by_label("From").fill("2000-01-01")

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export invoices").click()

    download = download_info.value
    assert re.fullmatch(r"invoices-2000-01-01-to-\d{4}-\d\d-\d\d\.csv", download.suggested_filename)
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8-sig"))))
    assert rows[0][:3] == ["number", "status", "issue_date"]
    assert {row[6] for row in rows[1:]} == {"USD"}
    assert "Jordan Rivera" in {row[4] for row in rows[1:]}


def test_customer_filters_update_the_table_with_htmx(page: Page) -> None:
    sign_in(page, "admin@us-partner.example")
    page.goto("/partner/")
    page.evaluate("window.__portico_e2e_marker = 'same document'")

    with page.expect_response(lambda r: "/partner/?overdue=yes" in r.url):
        page.get_by_label("Overdue").select_option("yes")

    rows = customer_table(page).locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="Jordan Rivera")).to_have_count(1)
    expect(rows.filter(has_text="Riverside Youth Soccer")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/partner/\?overdue=yes$"))
    assert page.evaluate("window.__portico_e2e_marker") == "same document"

    page.reload()  # the filters live in the URL
    expect(page.get_by_label("Overdue")).to_have_value("yes")
    expect(customer_table(page).locator("tbody tr")).to_have_count(2)
