"""The take-payment widget on another origin, pay links and accessibility, in Chromium.

The demo community page (``live_stack.demo_url``, its own origin, allowed by the US
partner) embeds the widget ``harbor-support`` with the one-line ``embed.js`` snippet; the
same page on ``live_stack.blocked_url`` is on an origin the partner does not allow.
"""

from __future__ import annotations

import calendar
import re
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, ConsoleMessage, FrameLocator, Locator, Page, expect
from sqlalchemy import Engine, create_engine, text

from e2e.a11y import serious_violations
from e2e.conftest import LiveStack
from e2e.test_sign_in import sign_in

pytestmark = pytest.mark.e2e

WIDGET_KEY = "harbor-support"
WIDGET_TITLE = "Support Harbor Community"
PARTNER_TZ = ZoneInfo("America/New_York")  # the US demo partner's time zone
INITIAL_MIN_HEIGHT = 480  # embed.js's iframe min-height before the widget reports its size
VISA_OK = "4242 4242 4242 4242"
VISA_DECLINED = "4000 0000 0000 0002"
REFERENCE = re.compile(r"^PAY-\d+$")


# --- helpers ----------------------------------------------------------------------------


def payer_email() -> str:
    return f"payer-{uuid.uuid4().hex[:10]}@example.com"


def day(value: date) -> str:
    """A date as Portico shows it: ``Dec 5, 2026``."""
    return f"{value:%b} {value.day}, {value.year}"


def one_month_after(value: date) -> date:
    year, month = (value.year + 1, 1) if value.month == 12 else (value.year, value.month + 1)
    return value.replace(
        year=year, month=month, day=min(value.day, calendar.monthrange(year, month)[1])
    )


def open_host_page(page: Page, live_stack: LiveStack) -> FrameLocator:
    response = page.goto(live_stack.demo_url)
    assert response is not None and response.ok
    assert not page.url.startswith(live_stack.base_url), "the host page needs its own origin"
    widget = page.frame_locator("iframe")
    expect(widget.get_by_role("heading", level=1)).to_have_text(WIDGET_TITLE)
    return widget


def fill_payer(widget: FrameLocator | Page, *, name: str, email: str, amount: str) -> None:
    widget.get_by_label("Name", exact=True).fill(name)
    widget.get_by_label("Email", exact=True).fill(email)
    widget.get_by_label("Amount", exact=True).fill(amount)


def fill_card(widget: FrameLocator | Page, number: str) -> None:
    widget.get_by_label("Card number").fill(number)
    widget.get_by_label("Expiration").fill("12/34")
    widget.get_by_label("CVC").fill("123")


def pay_button(widget: FrameLocator | Page) -> Locator:
    return widget.get_by_role("button", name=re.compile(r"^Pay\b"))


def receipt(widget: FrameLocator | Page) -> Locator:
    return widget.locator("section.receipt")


def receipt_value(widget: FrameLocator | Page, term: str) -> Locator:
    return (
        receipt(widget)
        .locator("dl div")
        .filter(has=widget.locator("dt", has_text=term))
        .locator("dd")
    )


def expect_receipt(widget: FrameLocator | Page, amount: str) -> None:
    expect(receipt(widget).get_by_role("heading", name="Payment received")).to_be_visible()
    expect(receipt_value(widget, "Amount")).to_have_text(amount)
    expect(receipt_value(widget, "Method")).to_have_text("Visa •••• 4242")
    expect(receipt_value(widget, "Reference")).to_have_text(REFERENCE)


def frame_height(page: Page) -> float:
    return page.locator("iframe").evaluate("f => f.getBoundingClientRect().height")


def new_pay_link(page: Page, invoice_balance: str) -> tuple[str, str]:
    """As the partner admin, a new pay link for Jordan Rivera's open invoice with that balance.

    Returns the invoice number and the link.
    """
    sign_in(page, "admin@us-partner.example")
    page.get_by_role("link", name="Jordan Rivera").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Jordan Rivera")
    row = page.locator("tbody tr").filter(has=page.get_by_role("button", name="New pay link"))
    row = row.filter(has=page.get_by_role("cell", name=invoice_balance, exact=True)).first
    number = row.get_by_role("cell").first.inner_text().strip()
    row.get_by_role("button", name="New pay link").click()
    expect(page.locator("#pay-link-result")).to_contain_text(f"New pay link for {number}")
    url = page.get_by_label("Pay link").input_value()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/pay/[\w.-]+", url), url
    return number, url


@pytest.fixture
def database(live_stack: LiveStack) -> Iterator[Engine]:
    engine = create_engine(live_stack.database_url)
    yield engine
    engine.dispose()


# --- the take-payment widget on a community page ----------------------------------------


def test_payer_pays_through_the_embedded_widget(page: Page, live_stack: LiveStack) -> None:
    embed_js = []
    page.on("request", lambda r: embed_js.append(r.url) if r.url.endswith("/embed.js") else None)
    widget = open_host_page(page, live_stack)

    assert embed_js == [f"{live_stack.base_url}/embed.js"], "embedded through the one-line snippet"
    iframe = page.locator("iframe")
    expect(iframe).to_have_attribute(
        "src", f"{live_stack.base_url}/embed/take-payment/{WIDGET_KEY}"
    )
    expect(iframe).to_have_attribute("title", WIDGET_TITLE)
    # The widget reported its height: embed.js dropped the min-height and sized the frame.
    expect(iframe).to_have_attribute("style", re.compile(r"(?<!-)height: \d+px"))
    assert iframe.evaluate("f => f.style.minHeight") == "0px"
    form_height = frame_height(page)
    assert form_height != INITIAL_MIN_HEIGHT
    content = page.frames[1].evaluate("document.documentElement.getBoundingClientRect().height")
    assert abs(form_height - content) <= 1, (form_height, content)

    fill_payer(widget, name="Casey Morgan", email=payer_email(), amount="25")
    fill_card(widget, VISA_OK)
    pay_button(widget).click()

    expect_receipt(widget, "$25.00")
    expect(receipt_value(widget, "Date")).to_have_text(day(datetime.now(PARTNER_TZ).date()))
    expect(receipt(widget)).to_contain_text("Thank you for supporting Harbor Community!")
    expect(receipt(widget)).not_to_contain_text("Next charge")
    expect(receipt(widget)).to_be_focused()
    # The shorter receipt resized the frame again.
    page.wait_for_function(
        "h => Math.abs(document.querySelector('iframe').getBoundingClientRect().height - h) > 1",
        arg=form_height,
    )


def test_declined_card_keeps_the_payer_fields_then_another_card_succeeds(
    page: Page, live_stack: LiveStack
) -> None:
    widget = open_host_page(page, live_stack)
    email = payer_email()
    fill_payer(widget, name="Robin Declined", email=email, amount="42.50")
    fill_card(widget, VISA_DECLINED)

    pay_button(widget).click()

    expect(widget.get_by_role("alert")).to_have_text(re.compile(r"^Your card was declined\."))
    expect(widget.get_by_label("Name", exact=True)).to_have_value("Robin Declined")
    expect(widget.get_by_label("Email", exact=True)).to_have_value(email)
    expect(widget.get_by_label("Amount", exact=True)).to_have_value("42.50")
    for label in ("Card number", "Expiration", "CVC"):
        expect(widget.get_by_label(label)).to_have_value("")
    expect(receipt(widget)).to_have_count(0)

    fill_card(widget, VISA_OK)
    pay_button(widget).click()

    expect_receipt(widget, "$42.50")
    expect(widget.get_by_role("alert")).to_have_count(0)


def test_monthly_donation_shows_the_next_charge_date(page: Page, live_stack: LiveStack) -> None:
    widget = open_host_page(page, live_stack)
    expect(widget.get_by_label("One time")).to_be_checked()
    fill_payer(widget, name="Sam Monthly", email=payer_email(), amount="10")
    widget.get_by_label("Monthly").check()
    fill_card(widget, VISA_OK)

    pay_button(widget).click()

    expect_receipt(widget, "$10.00")
    today = datetime.now(PARTNER_TZ).date()
    expect(receipt_value(widget, "Next charge")).to_have_text(
        f"{day(one_month_after(today))} (monthly)"
    )


def test_double_click_on_pay_charges_once(
    page: Page, live_stack: LiveStack, database: Engine
) -> None:
    widget = open_host_page(page, live_stack)
    email = payer_email()
    fill_payer(widget, name="Dana Double", email=email, amount="123.45")
    fill_card(widget, VISA_OK)

    action = f"{live_stack.base_url}/embed/take-payment/{WIDGET_KEY}"
    posts: list[str] = []  # both clicks usually reach the server with the same form token
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    pay_button(widget).dblclick()

    expect_receipt(widget, "$123.45")
    page.wait_for_timeout(500)  # let any second submission finish before counting
    with database.connect() as conn:
        approved = conn.execute(
            text(
                "SELECT count(*) FROM payment JOIN customeraccount"
                " ON customeraccount.id = payment.customer_account_id"
                " WHERE customeraccount.email = :email AND payment.status = 'approved'"
            ),
            {"email": email},
        ).scalar_one()
        charges = conn.execute(
            text("SELECT count(*) FROM sandbox_charge WHERE amount = 12345")
        ).scalar_one()
    print(
        f"double click: {posts.count(action)} payment POST(s), {approved} payment, {charges} charge"
    )
    assert posts.count(action) >= 1
    assert (approved, charges) == (1, 1)


def test_host_page_on_an_origin_that_is_not_allowed_shows_no_widget(
    browser: Browser, live_stack: LiveStack
) -> None:
    context = browser.new_context()
    context.set_default_timeout(5_000)
    page = context.new_page()
    console: list[str] = []

    def collect(message: ConsoleMessage) -> None:
        console.append(message.text)

    page.on("console", collect)
    try:
        with page.expect_response(f"**/embed/take-payment/{WIDGET_KEY}") as answer:
            page.goto(live_stack.blocked_url)
        csp = answer.value.headers["content-security-policy"]
        ancestors = re.search(r"frame-ancestors ([^;]*)", csp)
        assert ancestors is not None, csp
        allowed = ancestors.group(1).split()
        assert live_stack.demo_url.rstrip("/") in allowed
        assert live_stack.blocked_url.rstrip("/") not in allowed

        iframe = page.locator("iframe")
        expect(iframe).to_have_count(1)  # embed.js inserted it; the browser refuses to fill it
        frame = iframe.element_handle().content_frame()
        assert frame is not None
        page.wait_for_function(
            "() => performance.getEntriesByType('resource')"
            ".some(e => e.name.includes('/embed/take-payment/'))"
        )
        page.wait_for_timeout(300)  # time the widget would need to render, were it allowed
        # Chromium shows its own error page in the frame, never the widget.
        assert frame.url.startswith("chrome-error:"), frame.url
        assert frame.get_by_role("heading", name=WIDGET_TITLE).count() == 0
        assert frame.get_by_role("button", name=re.compile(r"^Pay\b")).count() == 0
        expect(page.get_by_text(WIDGET_TITLE, exact=True)).to_have_count(0)
        assert iframe.evaluate("f => f.style.minHeight") == f"{INITIAL_MIN_HEIGHT}px"
        assert any("frame-ancestors" in text for text in console), console
    finally:
        context.close()


# --- pay links --------------------------------------------------------------------------


def test_pay_link_is_paid_and_the_partner_sees_the_invoice_paid(
    page: Page, browser: Browser, live_stack: LiveStack
) -> None:
    number, url = new_pay_link(page, "$40.00")

    payer_context = browser.new_context()  # anonymous: no partner or customer session
    payer_context.set_default_timeout(5_000)
    payer = payer_context.new_page()
    try:
        payer.goto(url)
        expect(payer.get_by_role("heading", level=1)).to_have_text(f"Invoice {number}")
        expect(payer.get_by_role("button", name="Sign out")).to_have_count(0)
        amount_due = payer.locator(".summary div").filter(has_text="Amount due").locator("dd")
        expect(amount_due).to_have_text("$40.00")
        payer.get_by_label("Name on card").fill("Jordan Rivera")
        fill_card(payer, VISA_OK)
        pay_button(payer).click()

        expect_receipt(payer, "$40.00")
        expect(receipt_value(payer, "Invoice")).to_have_text(number)
        payer.reload()
        expect(payer.get_by_role("heading", name="Already paid")).to_be_visible()
    finally:
        payer_context.close()

    page.reload()
    row = page.locator("tbody tr").filter(has=page.get_by_role("cell", name=number, exact=True))
    expect(row.locator(".status")).to_have_text("paid")
    expect(row.get_by_role("button", name="New pay link")).to_have_count(0)


# --- accessibility ----------------------------------------------------------------------


def test_widget_and_pay_page_have_no_serious_accessibility_violations(page: Page) -> None:
    page.goto(f"/embed/take-payment/{WIDGET_KEY}")
    expect(page.get_by_role("heading", level=1)).to_have_text(WIDGET_TITLE)
    assert serious_violations(page) == []

    # With field errors shown (aria-describedby, aria-invalid) as well.
    pay_button(page).click()
    expect(page.get_by_label("Email", exact=True)).to_have_attribute("aria-invalid", "true")
    assert serious_violations(page) == []

    _, url = new_pay_link(page, "$90.00")
    page.context.clear_cookies()  # the payer is not signed in
    page.goto(url)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Invoice")
    assert serious_violations(page) == []


def test_receipt_is_accessible(page: Page) -> None:
    page.goto(f"/embed/take-payment/{WIDGET_KEY}")
    fill_payer(page, name="Ari Access", email=payer_email(), amount="7")
    fill_card(page, VISA_OK)
    pay_button(page).click()
    expect_receipt(page, "$7.00")
    assert serious_violations(page) == []
