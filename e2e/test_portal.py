"""The customer portal in Chromium, as Jordan Rivera (the demo customer) uses it.

Jordan signs in with an emailed link, pays the overdue invoice from the dashboard, adds a
new card and makes it the default, schedules the other invoice's payment for a later day
and sees the billing run of that day charge it, cancels the membership at the end of the
period, and downloads a receipt as a PDF.

The story changes the demo customer's records, so this module runs on a live stack of its
own (fresh database and demo data, its own Redis database): the other modules still see
the demo as seeded.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import create_engine, text

from e2e.conftest import BIN, REPO_ROOT, LiveStack, browser_page, running_stack
from e2e.test_widgets import fill_card

pytestmark = pytest.mark.e2e

CUSTOMER = "customer@example.com"
SIGN_IN_LINK = re.compile(r"https?://\S+/login/link/[\w.\-~]+")
PORTAL_REDIS_DB = 12  # the session's stack uses 13


@pytest.fixture(scope="module")
def portal_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    with running_stack(
        Path(tmp_path_factory.mktemp("portal-e2e")), redis_db=PORTAL_REDIS_DB
    ) as stack:
        yield stack


@pytest.fixture
def portal_page(browser: Browser, portal_stack: LiveStack) -> Iterator[Page]:
    with browser_page(browser, portal_stack.base_url) as page:
        yield page


def _latest_email_body(stack: LiveStack, kind: str, to_address: str) -> str:
    engine = create_engine(stack.database_url)
    try:
        with engine.connect() as connection:
            return (
                connection.execute(
                    text(
                        "SELECT text_body FROM outboxmessage WHERE kind = :kind "
                        "AND to_address = :to ORDER BY id DESC"
                    ),
                    {"kind": kind, "to": to_address},
                )
                .scalars()
                .first()
                or ""
            )
    finally:
        engine.dispose()


def _partner_today() -> date:
    """Today where the US demo partner is (New York): the day its billing run charges."""
    return datetime.now(ZoneInfo("America/New_York")).date()


def _run_billing(stack: LiveStack, day: date) -> str:
    """``flask billing run --date`` for the US partner, as an operator would start it."""
    result = subprocess.run(
        [str(BIN / "flask"), "billing", "run", "--date", day.isoformat()]
        + ["--partner", "us-partner"],
        cwd=REPO_ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _sign_in_with_emailed_link(page: Page, stack: LiveStack) -> None:
    page.goto("/login")
    page.get_by_role("link", name="Email me a sign-in link").click()
    page.get_by_label("Email").fill(CUSTOMER)
    page.get_by_role("button", name="Email me a sign-in link").click()
    expect(page.get_by_text("15 minutes")).to_be_visible()
    body = _latest_email_body(stack, "sign_in_link", CUSTOMER)
    link = SIGN_IN_LINK.search(body)
    assert link, body
    page.goto(link.group(0))
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/portal/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Jordan Rivera")


def _pay_overdue_invoice_from_dashboard(page: Page) -> None:
    row = page.locator("tr").filter(has_text="Overdue").filter(has_text="$90.00")
    row.get_by_role("link", name=re.compile(r"^Pay now")).click()
    panel = page.locator("#pay-panel")
    pay = panel.get_by_role("button", name="Pay $90.00")
    expect(pay).to_be_visible()
    expect(panel.get_by_label(re.compile(r"Visa •••• 4242"))).to_be_checked()
    pay.click()
    expect(panel.get_by_role("heading", name="Payment received")).to_be_visible()


def _add_default_card(page: Page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Payment methods").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Payment methods")
    page.get_by_label("Name on card").fill("Jordan Rivera")
    fill_card(page, "5555555555554444")
    page.get_by_label("Make this my default payment method").check()
    page.get_by_role("button", name="Save payment method").click()
    card = page.locator("li, tr").filter(has_text="•••• 4444")
    expect(card.first).to_contain_text("Default")
    expect(page.locator("li, tr").filter(has_text="•••• 4242").first).not_to_contain_text("Default")


def _schedule_and_see_it_charged(page: Page, stack: LiveStack) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Invoices").click()
    page.get_by_role("link", name="Open").click()
    row = page.locator("tr").filter(has_text="$40.00")
    row.get_by_role("link", name=re.compile(r"^INV-")).click()
    invoice_url = page.url
    page.get_by_role("link", name="Schedule a payment").click()
    pay_on = _partner_today() + timedelta(days=3)
    page.get_by_label("Payment date").fill(pay_on.isoformat())
    expect(page.get_by_label(re.compile(r"Mastercard •••• 4444"))).to_be_checked()
    page.get_by_role("button", name="Schedule payment").click()
    expect(page.get_by_role("status")).to_contain_text("scheduled for")
    expect(page.get_by_text("Scheduled", exact=True).first).to_be_visible()

    output = _run_billing(stack, pay_on - timedelta(days=1))  # the day before: not yet
    page.reload()
    expect(page.get_by_role("heading", level=1)).not_to_contain_text("Paid")
    output = _run_billing(stack, pay_on)
    assert "scheduled payments: charged 1" in output, output
    page.goto(invoice_url)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Paid")
    expect(page.get_by_text("Mastercard •••• 4444").first).to_be_visible()


def _cancel_membership(page: Page) -> None:
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Subscriptions").click()
    page.get_by_role("link", name="Cancel at period end Community membership").click()
    confirm = page.get_by_role("button", name="Confirm cancellation of Community membership")
    expect(page.get_by_text("no further payments are taken")).to_be_visible()
    confirm.click()
    expect(page.get_by_role("status").first).to_contain_text("Community membership stays active")
    membership = page.get_by_role("region", name="Community membership")
    expect(membership).to_contain_text("Ends on")
    expect(membership).to_contain_text("None scheduled")  # no further charge


def _download_a_receipt(page: Page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Payments").click()
    row = page.locator("tr").filter(has_text="Mastercard •••• 4444").first
    row.get_by_role("link", name=re.compile(r"Receipt")).click()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download PDF").click()
    path = download.value.path()
    assert path is not None and Path(path).read_bytes().startswith(b"%PDF")
    assert download.value.suggested_filename.endswith(".pdf")


def test_customer_self_service_story(portal_page: Page, portal_stack: LiveStack) -> None:
    page = portal_page
    _sign_in_with_emailed_link(page, portal_stack)
    _pay_overdue_invoice_from_dashboard(page)
    _add_default_card(page)
    _schedule_and_see_it_charged(page, portal_stack)
    _cancel_membership(page)
    _download_a_receipt(page)
