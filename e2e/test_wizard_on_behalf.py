"""The billing-on-behalf wizard in Chromium: two subscriptions changed, Back keeps values,
a reload mid-way continues, Confirm, then the inline billing-email edit.

The file name sorts last on purpose: activation changes the demo customer that earlier
end-to-end tests read.
"""

from __future__ import annotations

import re
from datetime import date

import pytest
from playwright.sync_api import Page, expect

from e2e.test_sign_in import sign_in

pytestmark = pytest.mark.e2e


def _month_after(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def test_partner_admin_activates_billing_on_behalf(page: Page) -> None:
    sign_in(page, "admin@us-partner.example")
    page.get_by_role("link", name="Jordan Rivera").click()
    page.get_by_role("link", name="Activate billing on behalf").click()

    # (1) Start date (pre-filled with the earliest allowed) and billing email.
    start_field = page.get_by_label("Start date")
    start = date.fromisoformat(start_field.input_value())
    later = _month_after(start)
    page.get_by_label("Billing email").fill("ap@rivera.example")
    page.get_by_role("button", name="Next").click()

    # (2) Two of the three subscriptions change.
    page.get_by_label("Yes, change the ones I choose below").check()
    page.get_by_role("checkbox", name=re.compile("Community membership")).check()
    page.get_by_role("checkbox", name=re.compile("Annual supporter plan")).check()
    page.get_by_role("button", name="Next").click()

    # (3) One subscription per screen.
    expect(page.get_by_role("heading", level=2)).to_contain_text("Community membership")
    page.get_by_label("Start date").fill(later.isoformat())
    page.get_by_label("Price").fill("31.50")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", level=2)).to_contain_text("Annual supporter plan")
    page.get_by_role("button", name="Back").click()
    expect(page.get_by_label("Start date")).to_have_value(later.isoformat())
    expect(page.get_by_label("Price")).to_have_value("31.50")
    page.get_by_role("button", name="Next").click()

    page.get_by_label("Price").fill("120")
    page.reload()  # mid-way: the draft lives on the server, the step comes back
    expect(page.get_by_role("heading", level=2)).to_contain_text("Annual supporter plan")
    page.get_by_label("Start date").fill(start.isoformat())
    page.get_by_label("Price").fill("120")
    page.get_by_role("button", name="Next").click()

    # (4) Review with old and new values, then Confirm.
    review = page.get_by_role("table")
    membership = review.get_by_role("row").filter(has_text="Community membership")
    expect(membership).to_contain_text("$31.50")
    expect(membership).to_contain_text("Changed")
    expect(
        review.get_by_role("row").filter(has_text="Studio equipment installments")
    ).to_contain_text("Unchanged")
    page.get_by_role("button", name="Confirm").click()

    # (5) Success, then the information section on the account page.
    expect(page.get_by_role("heading", level=1)).to_have_text("Billing on behalf activated")
    page.get_by_role("link", name="Back to Jordan Rivera").click()
    section = page.locator("#on-behalf")
    expect(section.get_by_role("heading")).to_have_text("Billing on Behalf Information")
    expect(section).to_contain_text("ap@rivera.example")

    # Inline edit of the billing email: an invalid one first, then a valid one.
    section.get_by_role("link", name="Edit billing email").click()
    email = section.get_by_label("Billing email")
    email.fill("not-an-email")
    section.get_by_role("button", name="Save").click()
    expect(
        section.get_by_text("Enter a billing email such as billing@example.com.")
    ).to_be_visible()
    email = section.get_by_label("Billing email")
    email.fill("billing@rivera.example")
    section.get_by_role("button", name="Save").click()
    expect(section).to_contain_text("billing@rivera.example")
    expect(section.get_by_role("button", name="Save")).to_have_count(0)
    page.reload()
    expect(page.locator("#on-behalf")).to_contain_text("billing@rivera.example")
