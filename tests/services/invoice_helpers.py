"""Shared set-up for the partner's invoice, payment and refund tests.

A partner with an admin and a customer (with a saved sandbox card), invoices issued by
hand through the service, card payments made through the pay-link service against the
sandbox processor (the boundary fake), and form tokens as the pages issue them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from flask import Flask
from sqlmodel import Session, select

from app.models import CustomerAccount, Invoice, Partner, Payment, PaymentMethod, User
from app.services import form_tokens, invoice_admin, pay_links
from app.services.card_testing import DeclineLimit
from app.services.form_tokens import FormToken
from app.services.invoice_forms import InvoiceForm
from tests.services.billing_helpers import make_customer, make_partner, partner_admin
from tests.services.payer_helpers import ADDRESS, NOW, card, sandbox, secret

DAY: date = NOW.date()


@dataclass
class Shop:
    partner: Partner
    admin: User
    account: CustomerAccount
    method: PaymentMethod


def make_shop(app: Flask, session: Session, slug: str = "harbor", *, tax_bp: int = 0) -> Shop:
    """A partner (tax rate ``tax_bp``), its admin, and one customer with a saved card."""
    partner = make_partner(session, slug)
    partner.tax_rate_bp = tax_bp
    session.add(partner)
    session.commit()
    account, method = make_customer(session, sandbox(app), partner, f"Casey {slug.title()}")
    return Shop(partner, partner_admin(session, partner), account, method)


def links(app: Flask) -> invoice_admin.Links:
    return invoice_admin.Links(secret=secret(app), base_url="http://localhost")


def invoice_form(*lines: tuple[str, str, str], issue: date = DAY, due_in: int = 30) -> InvoiceForm:
    """The invoice form with ``(description, quantity, unit price)`` lines."""
    return InvoiceForm.from_fields(
        issue_date=issue.isoformat(),
        due_date=(issue + timedelta(days=due_in)).isoformat(),
        memo="",
        descriptions=[line[0] for line in lines],
        quantities=[line[1] for line in lines],
        unit_prices=[line[2] for line in lines],
    )


def issue(
    app: Flask, session: Session, shop: Shop, *lines: tuple[str, str, str], due_in: int = 30
) -> Invoice:
    """Issue an invoice by hand as the partner admin (lines default to one $100.00 line)."""
    form = invoice_form(*(lines or (("Consulting", "1", "100.00"),)), due_in=due_in)
    issued = invoice_admin.issue_invoice(
        session, shop.admin, shop.account.id, form, as_of=DAY, now=NOW, links=links(app)
    )
    return issued.invoice


def token(app: Flask, subject: str) -> FormToken:
    """A freshly rendered form's token, verified as the view would."""
    raw = form_tokens.issue(secret(app), subject)
    return form_tokens.verify(secret(app), raw, subject=subject)


def pay_by_card(app: Flask, session: Session, shop: Shop, invoice: Invoice, amount: int) -> Payment:
    """The customer pays ``amount`` of the invoice by card (the pay-link service, approved)."""
    view = pay_links.LinkView(None, invoice, shop.partner, shop.account, "payable")
    form = token(app, f"paylink:{invoice.id}")
    outcome = pay_links.pay_invoice(
        session, sandbox(app), view=view, form=form, amount=amount, method=card(sandbox(app)),
        payer_email=shop.account.email, client_address=ADDRESS, now=NOW, limit=DeclineLimit(),
    )  # fmt: skip
    assert outcome.approved, outcome
    payment = session.exec(select(Payment).where(Payment.purpose_key == form.purpose_key)).one()
    return payment


def fresh(session: Session, model: type, row_id: int):  # noqa: ANN201
    """The row as the database has it now."""
    session.rollback()
    return session.get(model, row_id, populate_existing=True)
