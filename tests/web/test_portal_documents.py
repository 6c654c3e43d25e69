"""The customer portal's invoices and payments in the browser (demo data): lists and
filters, invoice and receipt pages, printable pages, PDFs, "Email me" copies; CSRF and
tenant isolation on every route."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pypdf import PdfReader
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from app.clock import local_today
from app.models import (
    CustomerAccount,
    Invoice,
    OutboxMessage,
    Payment,
    PaymentKind,
    PaymentStatus,
    ScheduledPayment,
)
from app.services import form_tokens
from tests.web.helpers import csrf_token, sign_in

JORDAN = "customer@example.com"
MAKERS = "makers@example.com"
US_ADMIN = "admin@us-partner.example"
HTMX = {"HX-Request": "true"}
_FORM_TOKEN = re.compile(
    r'action="([^"]+)"[^>]*>\s*<input type="hidden" name="csrf_token" value="([^"]+)">'
    r'\s*<input type="hidden" name="form_token" value="([^"]+)"'
)


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _account(db: Session, email: str = JORDAN) -> CustomerAccount:
    db.rollback()
    return db.exec(select(CustomerAccount).where(CustomerAccount.email == email)).one()


def _invoices(db: Session, email: str = JORDAN) -> list[Invoice]:
    account = _account(db, email)
    return list(
        db.exec(
            select(Invoice).where(Invoice.customer_account_id == account.id).order_by(Invoice.id)
        ).all()
    )


def _invoice(db: Session, status: str, email: str = JORDAN) -> Invoice:
    return next(i for i in _invoices(db, email) if i.status == status)


def _payment(db: Session, email: str = JORDAN) -> Payment:
    account = _account(db, email)
    payment = db.exec(
        select(Payment).where(
            Payment.customer_account_id == account.id, Payment.status == PaymentStatus.APPROVED
        )
    ).first()
    assert payment is not None
    return payment


def _declined(db: Session) -> Payment:
    """A declined card payment of Jordan's overdue invoice, as a processor decline leaves it."""
    invoice = _invoice(db, "overdue")
    payment = Payment(
        partner_id=invoice.partner_id, customer_account_id=invoice.customer_account_id,
        invoice_id=invoice.id, purpose_key="test:declined", idempotency_key="test:declined",
        kind=PaymentKind.CHARGE, method="card", status=PaymentStatus.DECLINED, amount=9000,
        currency="USD", brand="visa", last4="0002", decline_reason="Your card was declined.",
    )  # fmt: skip
    db.add(payment)
    db.commit()
    return payment


def _forms(client: FlaskClient, path: str) -> dict[str, tuple[str, str]]:
    """The page's token-carrying forms: action → (csrf token, form token)."""
    page = client.get(path).get_data(as_text=True)
    return {action: (csrf, form) for action, csrf, form in _FORM_TOKEN.findall(page)}


def _outbox(db: Session, kind: str) -> list[OutboxMessage]:
    db.rollback()
    return list(db.exec(select(OutboxMessage).where(OutboxMessage.kind == kind)).all())


# -- invoices --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("", {"created", "overdue", "paid"}),
        ("?status=open", {"created", "overdue"}),
        ("?status=overdue", {"overdue"}),
        ("?status=paid", {"paid"}),
        ("?status=canceled", set()),
        ("?status=nonsense", {"created", "overdue", "paid"}),  # unknown: All
    ],
)
def test_does_each_status_tab_list_its_invoices(
    client: FlaskClient, db: Session, query: str, shown: set[str]
) -> None:
    invoices = _invoices(db)
    assert {i.status for i in invoices} == {"created", "overdue", "paid"}
    sign_in(client, JORDAN)

    response = client.get(f"/portal/invoices{query}")

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    for invoice in invoices:
        link = f'href="/portal/invoices/{invoice.id}">{invoice.number}</a>'
        assert (link in page) == (invoice.status in shown), invoice.status
    for label in ("All", "Open", "Overdue", "Paid", "Canceled"):
        assert f">{label} (" in page
    current = "all" if query in ("", "?status=nonsense") else query.split("=")[1]
    href = "/portal/invoices" if current == "all" else f"/portal/invoices?status={current}"
    assert f'href="{href}" hx-get="{href}"' in page
    assert re.search(rf'href="{re.escape(href)}"[^>]*aria-current="page"', page)


def test_does_an_htmx_tab_click_get_only_the_list(client: FlaskClient, db: Session) -> None:
    sign_in(client, JORDAN)

    response = client.get("/portal/invoices?status=overdue", headers=HTMX)

    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="invoice-list">')
    assert "<html" not in body and _invoice(db, "overdue").number in body
    assert "HX-Request" in response.headers["Vary"]


def test_does_the_invoice_page_show_the_invoice_and_customer_actions_only(
    client: FlaskClient, db: Session
) -> None:
    invoice = _invoice(db, "overdue")
    planned = ScheduledPayment(
        partner_id=invoice.partner_id, customer_account_id=invoice.customer_account_id,
        invoice_id=invoice.id, amount=4500, currency="USD", status="scheduled",  # type: ignore[arg-type]
        pay_on=local_today("America/New_York") + timedelta(days=3),
    )  # fmt: skip
    failed = ScheduledPayment(
        partner_id=invoice.partner_id, customer_account_id=invoice.customer_account_id,
        invoice_id=invoice.id, amount=4500, currency="USD", status="failed",  # type: ignore[arg-type]
        pay_on=local_today("America/New_York") - timedelta(days=1),
        failure_reason="Insufficient funds.",
    )  # fmt: skip
    db.add_all([planned, failed])
    db.commit()
    sign_in(client, JORDAN)

    page = client.get(f"/portal/invoices/{invoice.id}").get_data(as_text=True)

    for text in (invoice.number, "Hall rental — October", "Issue date", "Due date",
                 "Amount paid", "Balance", "$90.00", "Overdue"):  # fmt: skip
        assert text in page, text
    assert f'href="/portal/invoices/{invoice.id}/pay"' in page and ">Pay now<" in page
    assert f'href="/portal/invoices/{invoice.id}/schedule">Schedule a payment<' in page
    assert f'href="/portal/invoices/{invoice.id}/print">Print<' in page
    assert f'href="/portal/invoices/{invoice.id}/pdf">Download PDF<' in page
    assert "Email me this invoice" in page and "customer@example.com" in page
    cancel = f'action="/portal/scheduled-payments/{planned.id}/cancel"'
    assert re.search(rf'{cancel}>\s*<input type="hidden" name="csrf_token"', page)
    assert f"/portal/scheduled-payments/{failed.id}/cancel" not in page
    assert "Insufficient funds." in page and "$45.00" in page
    for partner_only in ("Cancel invoice", "Record payment", "Resend", "Reminder", "/partner/"):
        assert partner_only not in page, partner_only


def test_is_a_paid_invoice_not_offered_for_payment(client: FlaskClient, db: Session) -> None:
    invoice = _invoice(db, "paid")
    payment = db.exec(select(Payment).where(Payment.invoice_id == invoice.id)).first()
    assert payment is not None
    sign_in(client, JORDAN)

    page = client.get(f"/portal/invoices/{invoice.id}").get_data(as_text=True)

    assert "Pay now" not in page and "Schedule a payment" not in page
    assert f'href="/portal/payments/{payment.id}">PAY-{payment.id:06d}</a>' in page


def test_are_the_invoice_pdf_and_printable_page_served(client: FlaskClient, db: Session) -> None:
    invoice = _invoice(db, "created")
    sign_in(client, JORDAN)

    pdf = client.get(f"/portal/invoices/{invoice.id}/pdf")
    printable = client.get(f"/portal/invoices/{invoice.id}/print")

    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert pdf.headers["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
    assert invoice.number in PdfReader(io.BytesIO(pdf.data)).pages[0].extract_text()
    page = printable.get_data(as_text=True)
    assert invoice.number in page and "$40.00" in page
    assert f'<a href="/portal/invoices/{invoice.id}">← Back</a>' in page
    assert "/partner/" not in page and "onclick" not in page and "<style" not in page


def test_is_the_invoice_emailed_to_the_customer_once_per_form(
    client: FlaskClient, db: Session
) -> None:
    invoice = _invoice(db, "created")
    path = f"/portal/invoices/{invoice.id}"
    sign_in(client, JORDAN)
    before = len(_outbox(db, "invoice_issued"))
    csrf, token = _forms(client, path)[f"{path}/email"]

    first = client.post(f"{path}/email", data={"csrf_token": csrf, "form_token": token})
    again = client.post(f"{path}/email", data={"csrf_token": csrf, "form_token": token})

    assert first.status_code == again.status_code == 303
    assert first.headers["Location"] == path
    page = client.get(path).get_data(as_text=True)
    assert f"Invoice {invoice.number} emailed to customer@example.com." in page
    sent = _outbox(db, "invoice_issued")
    assert len(sent) == before + 1
    assert sent[-1].to_address == "customer@example.com" and "/pay/" in sent[-1].text_body


def test_is_the_receipt_emailed_to_the_customer_once_per_form(
    client: FlaskClient, db: Session
) -> None:
    payment = _payment(db)
    path = f"/portal/payments/{payment.id}"
    sign_in(client, JORDAN)
    before = len(_outbox(db, "receipt"))
    csrf, token = _forms(client, path)[f"{path}/email"]

    for _ in range(2):
        response = client.post(f"{path}/email", data={"csrf_token": csrf, "form_token": token})
        assert response.status_code == 303 and response.headers["Location"] == path

    page = client.get(path).get_data(as_text=True)
    assert f"Receipt PAY-{payment.id:06d} emailed to customer@example.com." in page
    sent = _outbox(db, "receipt")
    assert len(sent) == before + 1 and sent[-1].to_address == "customer@example.com"


@pytest.mark.parametrize("kind", ["invoices", "payments"])
def test_does_email_me_need_a_csrf_token(client: FlaskClient, db: Session, kind: str) -> None:
    record = _invoice(db, "created") if kind == "invoices" else _payment(db)
    path = f"/portal/{kind}/{record.id}"
    sign_in(client, JORDAN)
    _, token = _forms(client, path)[f"{path}/email"]
    db.rollback()
    before = db.exec(select(func.count()).select_from(OutboxMessage)).one()

    response = client.post(f"{path}/email", data={"form_token": token})

    assert response.status_code == 400
    db.rollback()
    assert db.exec(select(func.count()).select_from(OutboxMessage)).one() == before


# -- payments --------------------------------------------------------------------------------


def test_does_the_payment_history_list_the_customers_payments(
    client: FlaskClient, db: Session
) -> None:
    payment = _payment(db)
    declined = _declined(db)
    sign_in(client, JORDAN)

    page = client.get("/portal/payments").get_data(as_text=True)

    assert '<label for="from">From</label>' in page and '<label for="to">To</label>' in page
    assert f'href="/portal/payments/{payment.id}">Receipt' in page
    assert f'href="/portal/payments/{declined.id}">Details' in page
    assert "Visa •••• 4242" in page and "Visa •••• 0002" in page
    assert page.index(f'/portal/payments/{declined.id}"') < page.index(
        f'/portal/payments/{payment.id}"'
    )  # newest first
    invoice = db.get(Invoice, payment.invoice_id)
    assert invoice is not None and f"Invoice {invoice.number}" in page


def test_does_the_date_range_filter_the_history(client: FlaskClient, db: Session) -> None:
    payment = _payment(db)
    assert payment.received_on is not None
    day = payment.received_on
    sign_in(client, JORDAN)

    inside = client.get(f"/portal/payments?from={day}&to={day}").get_data(as_text=True)
    after = client.get(f"/portal/payments?from={day + timedelta(days=1)}").get_data(as_text=True)
    block = client.get(f"/portal/payments?to={day}", headers=HTMX).get_data(as_text=True)

    assert f'/portal/payments/{payment.id}"' in inside
    assert f'value="{day}"' in inside
    assert f'/portal/payments/{payment.id}"' not in after
    assert block.lstrip().startswith('<div id="payment-history">') and "<html" not in block
    assert f'/portal/payments/{payment.id}"' in block


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("from=2026-02-30&to=", "from", "From: enter a date such as"),
        ("from=2026-03-05&to=2026-03-01", "to", "The end date cannot be before the start date."),
    ],
)
def test_are_bad_dates_shown_beside_their_field(
    client: FlaskClient, db: Session, query: str, field: str, message: str
) -> None:
    sign_in(client, JORDAN)

    response = client.get(f"/portal/payments?{query}")

    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'aria-describedby="{field}-error" aria-invalid="true"' in page
    assert f'<p class="error" id="{field}-error">{message}' in page
    assert "2026-0" in page  # the typed values are kept
    assert "/portal/payments/" not in page


def test_does_the_receipt_page_offer_the_receipt(client: FlaskClient, db: Session) -> None:
    payment = _payment(db)
    sign_in(client, JORDAN)

    page = client.get(f"/portal/payments/{payment.id}").get_data(as_text=True)

    assert f"PAY-{payment.id:06d}" in page and "Approved" in page
    assert f'href="/portal/payments/{payment.id}/print">Print<' in page
    assert f'href="/portal/payments/{payment.id}/pdf">Download PDF<' in page
    assert "Email me this receipt" in page
    for partner_only in ("Refund this payment", "Record a refund", "Resend", "/partner/"):
        assert partner_only not in page, partner_only


def test_does_a_declined_payment_show_its_reason_and_no_receipt(
    client: FlaskClient, db: Session, demo: Flask
) -> None:
    declined = _declined(db)
    path = f"/portal/payments/{declined.id}"
    sign_in(client, JORDAN)

    page = client.get(path).get_data(as_text=True)

    assert "This payment was declined: Your card was declined." in page
    for action in ("Download PDF", "Email me this receipt", f"{path}/print"):
        assert action not in page
    assert client.get(f"{path}/pdf").status_code == 409
    assert client.get(f"{path}/print").status_code == 409
    token = csrf_token(client, "/portal/payments")
    before = len(_outbox(db, "receipt"))
    # A form token for this payment, as the page would have issued one.
    secret = demo.config["PORTICO"].secret_key
    form = form_tokens.issue(secret, f"portal-email-receipt:{declined.id}")
    response = client.post(f"{path}/email", data={"csrf_token": token, "form_token": form})
    assert response.status_code == 303
    assert "Only an approved payment has a receipt" in client.get(path).get_data(as_text=True)
    assert len(_outbox(db, "receipt")) == before


def test_are_the_receipt_pdf_and_printable_page_served(client: FlaskClient, db: Session) -> None:
    payment = _payment(db)
    sign_in(client, JORDAN)

    pdf = client.get(f"/portal/payments/{payment.id}/pdf")
    printable = client.get(f"/portal/payments/{payment.id}/print").get_data(as_text=True)

    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    disposition = pdf.headers["Content-Disposition"]
    assert disposition == f'attachment; filename="receipt-PAY-{payment.id:06d}.pdf"'
    assert f"PAY-{payment.id:06d}" in PdfReader(io.BytesIO(pdf.data)).pages[0].extract_text()
    assert f'<a href="/portal/payments/{payment.id}">← Back</a>' in printable
    assert "/partner/" not in printable


# -- tenant isolation and roles --------------------------------------------------------------

ROUTES = [
    ("GET", "/portal/invoices/{i}"),
    ("GET", "/portal/invoices/{i}/print"),
    ("GET", "/portal/invoices/{i}/pdf"),
    ("POST", "/portal/invoices/{i}/email"),
    ("GET", "/portal/payments/{p}"),
    ("GET", "/portal/payments/{p}/print"),
    ("GET", "/portal/payments/{p}/pdf"),
    ("POST", "/portal/payments/{p}/email"),
]


@pytest.mark.parametrize(("method", "template"), ROUTES)
def test_can_a_customer_reach_another_customers_invoice_or_payment(
    client: FlaskClient, db: Session, method: str, template: str
) -> None:
    invoice = _invoice(db, "paid", MAKERS)
    payment = _payment(db, MAKERS)
    path = template.format(i=invoice.id, p=payment.id)
    sign_in(client, JORDAN)
    headers = {"X-CSRFToken": csrf_token(client, "/portal/")}
    db.rollback()
    before = db.exec(select(func.count()).select_from(OutboxMessage)).one()

    response = client.open(path, method=method, headers=headers, data={"form_token": "x"})

    assert response.status_code == 404
    db.rollback()
    assert db.exec(select(func.count()).select_from(OutboxMessage)).one() == before


def test_do_the_lists_show_only_the_customers_own_records(client: FlaskClient, db: Session) -> None:
    theirs = _invoices(db, MAKERS)
    their_payment = _payment(db, MAKERS)
    sign_in(client, JORDAN)

    invoices = client.get("/portal/invoices").get_data(as_text=True)
    payments = client.get("/portal/payments").get_data(as_text=True)

    for invoice in theirs:
        assert invoice.number not in invoices and invoice.number not in payments
    assert f'/portal/payments/{their_payment.id}"' not in payments


@pytest.mark.parametrize("path", ["/portal/invoices", "/portal/payments"])
def test_may_a_partner_user_open_the_portal_lists(
    client: FlaskClient, db: Session, path: str
) -> None:
    sign_in(client, US_ADMIN)
    assert client.get(path).status_code == 404


def test_is_a_payment_counted_on_its_partner_local_day(client: FlaskClient, db: Session) -> None:
    """A payment without a received day counts on the instant's day in the partner's zone."""
    declined = _declined(db)
    # 02:30 UTC on Mar 2 is still Mar 1 in New York.
    declined.created_at = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)
    db.add(declined)
    db.commit()
    sign_in(client, JORDAN)

    first = client.get("/portal/payments?from=2026-03-01&to=2026-03-01").get_data(as_text=True)
    second = client.get("/portal/payments?from=2026-03-02&to=2026-03-02").get_data(as_text=True)

    assert f'/portal/payments/{declined.id}"' in first and "Mar 1, 2026" in first
    assert f'/portal/payments/{declined.id}"' not in second
