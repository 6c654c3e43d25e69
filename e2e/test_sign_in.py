"""Signing in, landing pages, tenant isolation and the htmx customer search, in Chromium."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from e2e.a11y import serious_violations
from e2e.conftest import LiveStack, browser_page

pytestmark = pytest.mark.e2e

PASSWORD = "portico-demo"
DAY = re.compile(r"^[A-Z][a-z]{2} \d{1,2}, \d{4}$")  # how the portal shows a date


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def customer_table(page: Page) -> Locator:
    return page.locator("#customer-table table")


def test_partner_admin_sees_own_customers_and_opens_one(page: Page) -> None:
    sign_in(page, "admin@us-partner.example")

    expect(page).to_have_url(re.compile(r"/partner/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Harbor Community Network — customers"
    )
    table = customer_table(page)
    for column in ("Customer", "Status", "Balance due", "Next charge"):
        expect(table.get_by_role("columnheader", name=column)).to_be_visible()
    jordan = table.get_by_role("row").filter(has_text="Jordan Rivera")
    expect(jordan).to_have_count(1)
    # Two open invoices: $40.00 (workshop) + $90.00 (hall rental), no tax in the US.
    expect(jordan.get_by_role("cell").nth(2)).to_have_text("$130.00")
    expect(jordan.get_by_role("cell").nth(3)).to_have_text(DAY)
    expect(table.get_by_role("link", name="Maple Street Makers")).to_be_visible()
    expect(page.get_by_text("Kölner Chorverein")).to_have_count(0)

    table.get_by_role("link", name="Jordan Rivera").click()

    expect(page).to_have_url(re.compile(r"/partner/customers/\d+$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Jordan Rivera")
    subscriptions = page.locator("section").filter(
        has=page.get_by_role("heading", name="Subscriptions")
    )
    for description in (
        "Community membership",
        "Annual supporter plan",
        "Studio equipment installments",
    ):
        expect(subscriptions.get_by_role("cell", name=description, exact=True)).to_be_visible()


def test_customer_sees_only_their_own_account(page: Page) -> None:
    sign_in(page, "customer@example.com")

    expect(page).to_have_url(re.compile(r"/portal/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Jordan Rivera")
    expect(page.get_by_text("Billed by Harbor Community Network")).to_be_visible()
    expect(page.get_by_role("cell", name="Community membership")).to_be_visible()
    invoices = page.locator("section").filter(has=page.get_by_role("heading", name="Invoices"))
    expect(invoices.get_by_role("row").filter(has_text="Overdue")).to_have_count(1)
    balance = page.locator(".facts div").filter(has=page.locator("dt", has_text="Balance due"))
    expect(balance.locator("dd")).to_have_text("$130.00")
    expect(page.get_by_text("Maple Street Makers")).to_have_count(0)
    expect(page.get_by_text("Open workshop pass")).to_have_count(0)

    response = page.goto("/partner/")

    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.get_by_text("We could not find that page.")).to_be_visible()
    expect(page.get_by_text("Maple Street Makers")).to_have_count(0)


def test_wrong_password_is_refused(page: Page) -> None:
    sign_in(page, "admin@us-partner.example", "not-the-password")

    expect(page.get_by_role("alert")).to_have_text("Invalid email or password.")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def test_customer_search_filters_the_table_with_htmx(page: Page) -> None:
    sign_in(page, "admin@us-partner.example")
    table = customer_table(page)
    expect(table.get_by_role("link", name="Jordan Rivera")).to_be_visible()
    # A full page load would lose this marker; an htmx swap keeps it.
    page.evaluate("window.__portico_e2e_marker = 'same document'")
    search = page.get_by_label("Search customers")

    with page.expect_response(lambda r: "/partner/?q=maple" in r.url) as answer:
        search.press_sequentially("maple", delay=30)

    response = answer.value
    request_headers = response.request.all_headers()
    assert request_headers.get("hx-request") == "true", request_headers
    assert request_headers.get("x-csrftoken"), "portico.js did not add the CSRF header"
    assert response.status == 200
    body = response.text()
    assert "<html" not in body and 'id="customer-table"' in body, "not the table block alone"

    rows = customer_table(page).locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Maple Street Makers")
    expect(page.get_by_text("Jordan Rivera")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/partner/\?q=maple$"))
    assert page.evaluate("window.__portico_e2e_marker") == "same document"
    expect(page.get_by_role("heading", level=1)).to_have_count(1)


def test_demo_community_page_embeds_the_widget(page: Page, live_stack: LiveStack) -> None:
    response = page.goto(live_stack.demo_url)

    assert response is not None and response.ok
    assert not page.url.startswith(live_stack.base_url), "the demo page needs its own origin"
    expect(page.get_by_role("heading", level=1)).to_have_text("Harbor Community")
    expect(page.locator("code")).to_contain_text(f"{live_stack.base_url}/embed.js")
    # The payment flows through the widget are in test_widgets.py.
    widget = page.frame_locator("iframe")
    expect(widget.get_by_role("heading", level=1)).to_have_text("Support Harbor Community")


def test_sign_out(page: Page) -> None:
    sign_in(page, "customer@example.com")
    expect(page.get_by_role("heading", level=1)).to_have_text("Jordan Rivera")

    page.get_by_role("button", name="Sign out").click()

    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    page.goto("/portal/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    expect(page.get_by_text("Jordan Rivera")).to_have_count(0)


def _change_password(page: Page, current: str, new: str, confirm: str | None = None) -> None:
    page.get_by_label("Current password").fill(current)
    page.get_by_label("New password").fill(new)
    page.get_by_label("Confirm password").fill(new if confirm is None else confirm)
    page.get_by_role("button", name="Change password").click()


def test_change_password_signs_out_the_other_browser(
    page: Page, browser: Browser, live_stack: LiveStack
) -> None:
    """A user no other e2e test signs in as, and the password is set back at the end."""
    email, new = "sales@de-partner.example", "correct horse battery staple"
    with browser_page(browser, live_stack.base_url) as other:
        sign_in(other, email)
        expect(other).to_have_url(re.compile(r"/partner/$"))
        sign_in(page, email)
        page.get_by_role("link", name="Change password").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Change password")

        _change_password(page, "not my password", new, "something else entirely")

        expect(page.get_by_text("This is not your current password.")).to_be_visible()
        expect(page.get_by_text("The two passwords differ.")).to_be_visible()
        expect(page.get_by_label("Current password")).to_have_attribute("aria-invalid", "true")
        assert serious_violations(page) == []

        _change_password(page, PASSWORD, new)

        expect(page.get_by_role("status")).to_contain_text("Your password was changed")
        page.goto("/partner/")
        expect(page).to_have_url(re.compile(r"/partner/$"))  # this browser stays signed in
        other.goto("/partner/")
        expect(other).to_have_url(re.compile(r"/login\?next="))  # the other one does not
        sign_in(other, email)
        expect(other.get_by_text("Invalid email or password.")).to_be_visible()
        sign_in(other, email, new)
        expect(other).to_have_url(re.compile(r"/partner/$"))

    page.goto("/account/password")
    _change_password(page, new, PASSWORD)
    expect(page.get_by_role("status")).to_contain_text("Your password was changed")
