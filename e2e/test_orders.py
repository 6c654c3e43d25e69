"""Orders in Chromium: a salesperson builds an order and sends it for approval; the
customer opens the emailed link, draws a signature, pays and sees the confirmation; the
partner sees the order activated with its Payment tab and History. Then a declined card,
converted to draft and resubmitted with a good card, ends activated."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import create_engine, text

from e2e.conftest import LiveStack
from e2e.test_sign_in import sign_in
from e2e.test_widgets import VISA_DECLINED, VISA_OK, fill_card

pytestmark = pytest.mark.e2e

CUSTOMER = "Maple Street Makers"
LINK = re.compile(r"https?://\S+/approve/[\w.\-]+")


def _new_order(page: Page, user: str, product: str, quantity: str, total: str) -> str:
    """Sign in as ``user``, open a draft order for the customer with one line; its number."""
    sign_in(page, user)
    page.get_by_role("link", name=CUSTOMER).click()
    page.get_by_role("button", name="New order").click()
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text("Order SO-")
    select = page.get_by_label("Product")
    select.select_option(select.locator("option", has_text=product).get_attribute("value"))
    page.get_by_label("Quantity").fill(quantity)
    expect(page.locator("#order-totals")).to_contain_text(total)  # htmx, before saving
    page.get_by_role("button", name="Save lines").click()
    expect(page.get_by_text("Total", exact=True).first).to_be_visible()
    return re.search(r"SO-[\d-]+", heading.inner_text()).group(0)  # type: ignore[union-attr]


def _approval_link(live_stack: LiveStack, number: str) -> str:
    """The link in the latest approval email of order ``number`` (read from the outbox)."""
    engine = create_engine(live_stack.database_url)
    try:
        with engine.connect() as connection:
            body = connection.execute(
                text(
                    "SELECT text_body FROM outboxmessage WHERE kind = 'order_approval' "
                    "AND subject LIKE :number ORDER BY id DESC"
                ),
                {"number": f"%{number}%"},
            ).scalar_one()
    finally:
        engine.dispose()
    return LINK.search(body).group(0)  # type: ignore[union-attr]


def _draw_signature(page: Page) -> None:
    page.get_by_label("Draw your signature").check()
    pad = page.get_by_role("img", name="Signature drawing area")
    pad.scroll_into_view_if_needed()  # the mouse draws at viewport coordinates
    box = pad.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 20, box["y"] + 60)
    page.mouse.down()
    for step in range(1, 12):
        page.mouse.move(box["x"] + 20 + step * 22, box["y"] + 60 + (step % 3) * 25)
    page.mouse.up()


def test_sales_sends_an_order_the_customer_signs_and_pays_it(
    page: Page, browser: Browser, live_stack: LiveStack
) -> None:
    number = _new_order(page, "sales@us-partner.example", "Community membership", "2", "$50.00")
    expect(page.get_by_text("$50.00").first).to_be_visible()
    page.get_by_role("button", name="Send for customer approval").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("pending approval")

    customer_context = browser.new_context()  # the customer: no session of any kind
    customer_context.set_default_timeout(5_000)
    customer = customer_context.new_page()
    try:
        customer.goto(_approval_link(live_stack, number))
        expect(customer.get_by_role("heading", level=1)).to_have_text(f"Order {number}")
        expect(
            customer.get_by_role("cell", name=re.compile("Community membership"))
        ).to_be_visible()
        customer.get_by_label("Name", exact=True).fill("Maya Okafor")
        _draw_signature(customer)
        fill_card(customer, VISA_OK)
        customer.get_by_role("button", name="Approve and pay $50.00").click()

        expect(customer.get_by_role("heading", name="Order approved")).to_be_visible()
        expect(customer.get_by_text("$50.00").first).to_be_visible()
        expect(customer.get_by_text(re.compile("4242"))).to_be_visible()
    finally:
        customer_context.close()

    page.reload()
    expect(page.get_by_role("heading", level=1)).to_contain_text("activated")
    expect(page.get_by_text("Maya Okafor").first).to_be_visible()
    signature = page.get_by_role("img", name="Signature drawn by Maya Okafor")
    expect(signature).to_be_visible()
    assert signature.evaluate("img => img.naturalWidth") > 0  # the PNG the canvas drew

    page.get_by_role("link", name=re.compile(r"^Payment")).click()
    payment_row = page.locator("#order-tab tbody tr").first
    expect(payment_row).to_contain_text("$50.00")
    expect(payment_row).to_contain_text("approved")
    page.get_by_role("link", name="History").click()
    history = page.locator("#order-tab")
    expect(history).to_contain_text(re.compile("sent", re.I))
    expect(history).to_contain_text(re.compile("activated", re.I))


def test_a_declined_card_is_converted_to_draft_and_resubmitted(page: Page) -> None:
    number = _new_order(page, "admin@us-partner.example", "Workshop seat", "1", "$40.00")
    page.get_by_label("New card").check()
    page.get_by_label("Name on card").fill("Maya Okafor")
    fill_card(page, VISA_DECLINED)
    page.get_by_role("button", name="Charge now").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("declined")
    expect(page.get_by_text("Payment declined").first).to_be_visible()
    page.get_by_role("button", name="Convert to draft").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("draft")

    page.get_by_label("New card").check()
    page.get_by_label("Name on card").fill("Maya Okafor")
    fill_card(page, VISA_OK)
    page.get_by_role("button", name="Charge now").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(f"{number}.*activated"))
    page.get_by_role("link", name=re.compile(r"^Payment")).click()
    rows = page.locator("#order-tab tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="declined")).to_have_count(1)
    expect(rows.filter(has_text="approved")).to_have_count(1)
