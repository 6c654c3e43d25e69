"""The partner's invoice and payment pages in the browser: issuing, canceling, manual
payments, refunds, resends, print and PDF; tenant isolation and CSRF on every form."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import timedelta

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
    InvoiceLine,
    InvoiceStatus,
    OutboxMessage,
    Payment,
    PaymentKind,
)
from tests.web.helpers import csrf_token, sign_in

US_ADMIN = "admin@us-partner.example"
US_SALES = "sales@us-partner.example"
DE_ADMIN = "admin@de-partner.example"
JORDAN = "customer@example.com"
HTMX = {"HX-Request": "true"}
_FORM_TOKEN = re.compile(
    r'action="([^"]+)"[^>]*>\s*<input type="hidden" name="csrf_token" value="([^"]+)">'
    r'\s*<input type="hidden" name="form_token" value="([^"]+)"'
)


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _today():  # noqa: ANN202
    return local_today("America/New_York")


def _invoice(db: Session, description: str) -> Invoice:
    db.rollback()
    return db.exec(
        select(Invoice)
        .join(InvoiceLine, InvoiceLine.invoice_id == Invoice.id)
        .where(InvoiceLine.description == description, Invoice.series == "INV")
    ).one()


def _count(db: Session, model: type, *where: object) -> int:
    db.rollback()
    return db.exec(select(func.count()).select_from(model).where(*where)).one()


def _forms(client: FlaskClient, path: str) -> dict[str, tuple[str, str]]:
    """The page's token-carrying forms: action → (csrf token, form token)."""
    page = client.get(path).get_data(as_text=True)
    return {action: (csrf, form) for action, csrf, form in _FORM_TOKEN.findall(page)}


def _jordan(db: Session) -> CustomerAccount:
    db.rollback()
    return db.exec(select(CustomerAccount).where(CustomerAccount.email == JORDAN)).one()


# -- issuing ---------------------------------------------------------------------------------


def test_can_a_sales_user_issue_an_invoice_with_the_form(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_SALES)
    account = _jordan(db)
    new = f"/partner/customers/{account.id}/invoices/new"
    page = client.get(new).get_data(as_text=True)
    for label in ("Issue date", "Due date", "Description", "Quantity", "Unit price"):
        assert f">{label}</label>" in page
    today = _today()
    response = client.post(new, data={
        "csrf_token": csrf_token(client, new), "issue_date": today.isoformat(),
        "due_date": (today + timedelta(days=14)).isoformat(), "memo": "Thanks!",
        "description": ["Coaching", ""], "quantity": ["3", "1"], "unit_price": ["40.00", ""],
    })  # fmt: skip
    assert response.status_code == 303
    invoice = db.exec(select(Invoice).order_by(Invoice.id.desc())).first()  # type: ignore[union-attr]
    assert response.headers["Location"] == f"/partner/invoices/{invoice.id}"
    assert (invoice.total, invoice.status) == (12000, InvoiceStatus.CREATED)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"issued and emailed to {invoice.billing_email}" in page
    for text in (invoice.number, "Coaching", "$120.00", "Amount paid", "Balance", "VAT/tax"):
        assert text in page
    sent = db.exec(select(OutboxMessage).where(OutboxMessage.kind == "invoice_issued")).one()
    assert sent.to_address == invoice.billing_email


def test_are_form_errors_shown_beside_their_fields(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_ADMIN)
    new = f"/partner/customers/{_jordan(db).id}/invoices/new"
    before = _count(db, Invoice)
    response = client.post(new, data={
        "csrf_token": csrf_token(client, new), "issue_date": _today().isoformat(),
        "due_date": "2000-01-01", "description": ["Work"], "quantity": ["two"],
        "unit_price": ["5.00"],
    })  # fmt: skip
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="line-0-quantity" name="quantity"' in page
    assert 'aria-describedby="line-0-quantity-error" aria-invalid="true"' in page
    assert '<p class="error" id="line-0-quantity-error">Enter a whole number' in page
    assert 'id="due_date-error">The due date cannot be before the issue date.' in page
    assert _count(db, Invoice) == before


def test_does_the_live_preview_swap_totals_and_lines_alone(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_ADMIN)
    account = _jordan(db)
    preview = f"/partner/customers/{account.id}/invoices/preview"
    data = {
        "csrf_token": csrf_token(client, f"/partner/customers/{account.id}/invoices/new"),
        "description": ["Coaching"], "quantity": ["3"], "unit_price": ["40.00"],
    }  # fmt: skip
    totals = client.post(preview, data=data, headers=HTMX)
    body = totals.get_data(as_text=True)
    assert totals.status_code == 200 and "HX-Request" in totals.headers["Vary"]
    assert body.lstrip().startswith('<div id="invoice-totals"') and "$120.00" in body
    lines = client.post(f"{preview}?op=add", data=data, headers=HTMX).get_data(as_text=True)
    assert lines.lstrip().startswith('<div id="invoice-lines"')
    assert lines.count("<fieldset") == 2 and 'id="line-1-description"' in lines
    # Without JavaScript, "Add line" redraws the whole form and saves nothing.
    page = client.post(f"/partner/customers/{account.id}/invoices/new", data={**data, "op": "add"})
    assert page.status_code == 200 and "<html" in page.get_data(as_text=True)


def test_does_the_account_page_link_each_invoice(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_ADMIN)
    account = _jordan(db)
    page = client.get(f"/partner/customers/{account.id}").get_data(as_text=True)
    invoice = _invoice(db, "Workshop series fee")
    assert f'<a href="/partner/invoices/{invoice.id}">{invoice.number}</a>' in page
    assert f'href="/partner/customers/{account.id}/invoices/new"' in page


# -- the invoice and payment pages --------------------------------------------------------------


def test_does_a_check_paid_invoice_show_and_link_its_payment(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_ADMIN)
    invoice = _invoice(db, "Mat storage — annual")
    page = client.get(f"/partner/invoices/{invoice.id}").get_data(as_text=True)
    payment = db.exec(select(Payment).where(Payment.invoice_id == invoice.id)).one()
    assert f'<a href="/partner/payments/{payment.id}">PAY-{payment.id:06d}</a>' in page
    assert "Check #1042" in page and "cannot be canceled" in page
    assert "Refund the payments first." in page
    assert "{# dunning timeline" not in page
    payment_page = client.get(f"/partner/payments/{payment.id}").get_data(as_text=True)
    for text in ("Check #1042", "Receipt date", "Balance after", "$0.00", "Record a refund"):
        assert text in payment_page


def test_does_canceling_link_the_cancellation_invoice(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_ADMIN)
    invoice = _invoice(db, "Book fair table")
    path = f"/partner/invoices/{invoice.id}"
    response = client.post(f"{path}/cancel", data={"csrf_token": csrf_token(client, path)})
    assert response.status_code == 303
    page = client.get(path).get_data(as_text=True)
    cancellation = db.exec(select(Invoice).where(Invoice.cancels_invoice_id == invoice.id)).one()
    assert f"Cancellation invoice {cancellation.number} issued." in page
    assert f'href="/partner/invoices/{cancellation.id}">{cancellation.number}</a>' in page
    cn_page = client.get(f"/partner/invoices/{cancellation.id}").get_data(as_text=True)
    assert f'href="{path}">{invoice.number}</a>' in cn_page and "-$30.00" in cn_page


def test_is_canceling_a_paid_invoice_refused_with_a_clear_message(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_ADMIN)
    invoice = _invoice(db, "Mat storage — annual")
    path = f"/partner/invoices/{invoice.id}"
    client.post(f"{path}/cancel", data={"csrf_token": csrf_token(client, path)})
    page = client.get(path).get_data(as_text=True)
    assert '<p class="alert" role="alert">' in page and "Refund the payments first." in page
    assert _invoice(db, "Mat storage — annual").status == InvoiceStatus.PAID


def test_is_a_manual_payment_counted_once_and_overpayment_refused(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_SALES)
    invoice = _invoice(db, "Workshop series fee")  # $40.00
    path = f"/partner/invoices/{invoice.id}"
    action = f"{path}/payments"
    csrf, form_token = _forms(client, path)[action]
    form = {"csrf_token": csrf, "form_token": form_token, "kind": "check", "reference": "555",
            "received_on": _today().isoformat()}  # fmt: skip
    over = client.post(action, data={**form, "amount": "40.01"})
    body = over.get_data(as_text=True)
    assert over.status_code == 422
    assert 'id="amount-error">Amount: $40.01 is more than the $40.00 still due' in body
    for _ in range(2):
        assert client.post(action, data={**form, "amount": "15.00"}).status_code == 303
    page = client.get(path).get_data(as_text=True)
    assert "This payment was already recorded; it was not counted twice." in page
    invoice = _invoice(db, "Workshop series fee")
    assert (invoice.amount_paid, invoice.status) == (1500, InvoiceStatus.CREATED)
    assert _count(db, Payment, Payment.invoice_id == invoice.id) == 1


def test_does_a_card_refund_from_the_payment_page_go_through_once(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_ADMIN)
    invoice = _invoice(db, "Tool library deposit")
    payment = db.exec(
        select(Payment).where(Payment.invoice_id == invoice.id, Payment.status == "approved")
    ).one()
    path = f"/partner/payments/{payment.id}"
    page = client.get(path).get_data(as_text=True)
    assert "•••• 4444" in page and ">Refund</button>" in page
    csrf, form_token = _forms(client, path)[f"{path}/refund"]
    form = {"csrf_token": csrf, "form_token": form_token, "amount": "20.00", "note": "Goodwill"}
    for _ in range(2):
        assert client.post(f"{path}/refund", data=form).status_code == 303
    page = client.get(path).get_data(as_text=True)
    assert "nothing was refunded twice" in page and "Goodwill" in page
    assert _count(db, Payment, Payment.kind == PaymentKind.REFUND) == 1
    db.rollback()
    assert db.get(Payment, payment.id, populate_existing=True).refunded_amount == 2000
    reopened = _invoice(db, "Tool library deposit")  # due 15 days ago: overdue again
    assert (reopened.status, reopened.balance) == (InvoiceStatus.OVERDUE, 2000)


def test_does_each_resend_write_a_new_email(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_ADMIN)
    invoice = _invoice(db, "Workshop series fee")
    path = f"/partner/invoices/{invoice.id}"
    for _ in range(2):
        csrf, form_token = _forms(client, path)[f"{path}/resend"]
        data = {"csrf_token": csrf, "form_token": form_token}
        client.post(f"{path}/resend", data=data)
        client.post(f"{path}/resend", data=data)  # a double click: one email
    assert "Invoice sent again." in client.get(path).get_data(as_text=True)
    assert _count(db, OutboxMessage, OutboxMessage.kind == "invoice_issued") == 2
    payment = db.exec(
        select(Payment).where(Payment.invoice_id == _invoice(db, "Tool library deposit").id)
    ).first()
    receipts_before = _count(db, OutboxMessage, OutboxMessage.kind == "receipt")
    ppath = f"/partner/payments/{payment.id}"
    csrf, form_token = _forms(client, ppath)[f"{ppath}/resend"]
    client.post(f"{ppath}/resend", data={"csrf_token": csrf, "form_token": form_token})
    assert "Receipt sent again." in client.get(ppath).get_data(as_text=True)
    assert _count(db, OutboxMessage, OutboxMessage.kind == "receipt") == receipts_before + 1


def test_are_the_pdfs_and_printable_pages_served(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_ADMIN)
    invoice = _invoice(db, "Workshop series fee")
    pdf = client.get(f"/partner/invoices/{invoice.id}/pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert f'filename="{invoice.number}.pdf"' in pdf.headers["Content-Disposition"]
    text = PdfReader(io.BytesIO(pdf.data)).pages[0].extract_text()
    assert invoice.number in text and "$40.00" in text
    printable = client.get(f"/partner/invoices/{invoice.id}/print").get_data(as_text=True)
    assert invoice.number in printable and "$40.00" in printable
    payment = db.exec(select(Payment).where(Payment.kind == PaymentKind.CHECK)).first()
    receipt = client.get(f"/partner/payments/{payment.id}/pdf")
    assert "Check #1042" in PdfReader(io.BytesIO(receipt.data)).pages[0].extract_text()
    assert "Check #1042" in client.get(f"/partner/payments/{payment.id}/print").get_data(
        as_text=True
    )


# -- tenancy and CSRF ----------------------------------------------------------------------------

INVOICE_ROUTES = [
    ("GET", "/partner/invoices/{i}"),
    ("GET", "/partner/invoices/{i}/print"),
    ("GET", "/partner/invoices/{i}/pdf"),
    ("POST", "/partner/invoices/{i}/cancel"),
    ("POST", "/partner/invoices/{i}/payments"),
    ("POST", "/partner/invoices/{i}/resend"),
    ("GET", "/partner/customers/{c}/invoices/new"),
    ("POST", "/partner/customers/{c}/invoices/new"),
    ("POST", "/partner/customers/{c}/invoices/preview"),
    ("GET", "/partner/payments/{p}"),
    ("GET", "/partner/payments/{p}/print"),
    ("GET", "/partner/payments/{p}/pdf"),
    ("POST", "/partner/payments/{p}/refund"),
    ("POST", "/partner/payments/{p}/resend"),
]


@pytest.mark.parametrize(("method", "template"), INVOICE_ROUTES)
def test_can_another_partner_reach_an_invoice_or_payment(
    client: FlaskClient, db: Session, method: str, template: str
) -> None:
    invoice = _invoice(db, "Tool library deposit")
    payment = db.exec(select(Payment).where(Payment.invoice_id == invoice.id)).first()
    path = template.format(i=invoice.id, c=invoice.customer_account_id, p=payment.id)
    sign_in(client, DE_ADMIN)
    headers = {"X-CSRFToken": csrf_token(client, "/partner/")}
    response = client.open(path, method=method, headers=headers, data={"amount": "1.00"})
    assert response.status_code == 404
    assert _invoice(db, "Tool library deposit").status == InvoiceStatus.PAID
    assert _count(db, Payment, Payment.kind == PaymentKind.REFUND) == 0


@pytest.mark.parametrize(("method", "template"), [r for r in INVOICE_ROUTES if r[0] == "POST"])
def test_is_every_form_refused_without_a_csrf_token(
    client: FlaskClient, db: Session, method: str, template: str
) -> None:
    invoice = _invoice(db, "Workshop series fee")
    payment = db.exec(select(Payment).where(Payment.kind == PaymentKind.CHECK)).first()
    path = template.format(i=invoice.id, c=invoice.customer_account_id, p=payment.id)
    sign_in(client, US_ADMIN)
    outbox_before = _count(db, OutboxMessage)
    response = client.post(path, data={"amount": "1.00", "kind": "cash"})
    assert response.status_code == 400
    assert _invoice(db, "Workshop series fee").status == InvoiceStatus.CREATED
    assert _count(db, OutboxMessage) == outbox_before


def test_does_an_overdue_invoice_page_show_its_dunning_timeline(
    client: FlaskClient, db: Session
) -> None:
    from app.models import InvoiceStatus

    def first_usd(status: str) -> Invoice:
        found = db.exec(
            select(Invoice).where(Invoice.status == status, Invoice.currency == "USD")
        ).first()
        assert found is not None
        return found

    sign_in(client, US_ADMIN)
    page = client.get(f"/partner/invoices/{first_usd(InvoiceStatus.OVERDUE).id}")
    assert "Overdue reminders" in page.get_data(as_text=True)
    assert 'class="status">next</span>' in page.get_data(as_text=True)  # the stage to come
    paid = client.get(f"/partner/invoices/{first_usd(InvoiceStatus.PAID).id}")
    assert 'class="status">next</span>' not in paid.get_data(as_text=True)
