"""Stored markup never runs: a script typed into a widget title, an invoice line and a
payer's name (which becomes the customer's name) is shown as text on every page that
shows it, in Chromium, and nothing it carries executes.

The ``page`` fixture also fails the test on any console error, so an inline script that
the Content-Security-Policy had to block would fail it too.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, expect

from e2e.conftest import LiveStack, browser_page
from e2e.test_sign_in import sign_in

pytestmark = pytest.mark.e2e

MARKUP = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
JORDAN = 1  # the demo's first customer account, Jordan Rivera (customer@example.com)


def assert_inert(page: Page, text: str) -> None:
    """The markup shows literally and none of it ran."""
    expect(page.get_by_text(text, exact=False).first).to_be_visible()
    assert page.evaluate("() => typeof window.__xss") == "undefined", page.url


def test_does_stored_markup_stay_text_everywhere(
    page: Page, browser: Browser, live_stack: LiveStack
) -> None:
    marker = uuid.uuid4().hex[:6]
    title = f"{MARKUP} {marker}"
    sign_in(page, "admin@us-partner.example")
    expect(page).to_have_url(re.compile(r"/partner/$"))

    # A widget whose title is markup, through the partner's widget form.
    page.goto("/partner/widgets/new")
    page.locator('[name="title"]').fill(title)
    page.locator('[name="fixed_amount"]').fill("25.00")
    page.get_by_role("button", name="Create widget").click()
    expect(page).to_have_url(re.compile(r"/partner/widgets/\d+$"))
    assert_inert(page, title)
    snippet = page.locator("#snippet-iframe").evaluate("e => e.value || e.textContent")
    widget_url = re.search(r'src="([^"]+)"', snippet).group(1)  # type: ignore[union-attr]
    page.goto("/partner/widgets")
    assert_inert(page, title)

    # An invoice line that is markup, through the invoice form.
    page.goto(f"/partner/customers/{JORDAN}/invoices/new")
    page.locator('[name="description"]').first.fill(title)
    page.locator('[name="unit_price"]').first.fill("12.00")
    page.get_by_role("button", name="Issue invoice").click()
    expect(page).to_have_url(re.compile(r"/partner/invoices/\d+$"))
    assert_inert(page, title)
    invoice_path = urlparse(page.url).path

    # A payer named with markup pays on the widget: the customer account takes that name.
    payer = f"{MARKUP} {marker}"
    page.goto(widget_url)
    assert_inert(page, title)
    page.get_by_label("Name", exact=True).fill(payer)
    page.get_by_label("Email", exact=True).fill(f"xss-{marker}@example.com")
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiration").fill("12/34")
    page.get_by_label("CVC").fill("123")
    page.get_by_role("button", name=re.compile(r"^Pay")).click()
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    assert page.evaluate("() => typeof window.__xss") == "undefined"

    page.goto("/partner/")
    assert_inert(page, payer)
    page.get_by_role("link", name=payer).first.click()
    expect(page).to_have_url(re.compile(r"/partner/customers/\d+$"))
    assert_inert(page, payer)

    # The customer sees the invoice line in the portal: the list, the invoice, its print.
    page.context.clear_cookies()
    sign_in(page, "customer@example.com")
    expect(page).to_have_url(re.compile(r"/portal/$"))
    assert page.evaluate("() => typeof window.__xss") == "undefined"
    portal_invoice = invoice_path.replace("/partner/", "/portal/")
    page.goto(portal_invoice)
    assert_inert(page, title)
    page.goto(portal_invoice + "/print")
    assert_inert(page, title)

    # The operator's outbox shows the payer's receipt email: the text part, and the HTML
    # part as its own sandboxed document, whose inline styles apply and whose scripts
    # could not run. ``browser_page`` fails on any console error (a refused style too).
    with browser_page(browser, live_stack.base_url) as outbox:
        sign_in(outbox, "operator@example.com")
        outbox.goto(f"/operator/outbox?q=xss-{marker}%40example.com")
        outbox.locator("main table a").first.click()
        expect(outbox).to_have_url(re.compile(r"/operator/outbox/\d+$"))
        assert_inert(outbox, marker)
        html_part = outbox.frame_locator("iframe")
        expect(html_part.get_by_text(marker, exact=False).first).to_be_visible()
        expect(html_part.locator("h1")).to_have_css("font-size", "20px")  # the email's style
        assert outbox.evaluate("() => typeof window.__xss") == "undefined"
