"""Shared set-up for payer-facing service tests: form tokens, test cards, sandbox charges."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from sqlmodel import Session, select

from app.clock import utcnow
from app.gateway.base import BankAccountDetails, CardDetails, TokenizedMethod
from app.gateway.sandbox import SandboxChargeRecord, SandboxGateway
from app.gateway.sandbox_cards import TEST_ROUTING_NUMBER
from app.models import Partner, Widget
from app.services import form_tokens, widget_payments
from app.services.card_testing import DeclineLimit
from app.services.form_tokens import FormToken
from app.services.receipts import PaymentOutcome

# A fixed instant (services take the clock as an argument); 2026-03-02 is a Monday.
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
WIDGET_KEY = "harbor-support"
ADDRESS = "203.0.113.7"
VISA = "4242424242424242"


def secret(app: Flask) -> str:
    return app.config["PORTICO"].secret_key


def sandbox(app: Flask) -> SandboxGateway:
    gateway = app.extensions["portico"].gateway
    assert isinstance(gateway, SandboxGateway)
    return gateway


def new_form(app: Flask, subject: str = f"widget:{WIDGET_KEY}") -> FormToken:
    """A freshly rendered form's token, verified as the view would."""
    token = form_tokens.issue(secret(app), subject)
    return form_tokens.verify(secret(app), token, subject=subject)


def card(gateway: SandboxGateway, number: str = VISA) -> TokenizedMethod:
    """Tokenize a sandbox test card (what the card-entry boundary does before a service)."""
    details = CardDetails(
        number=number, exp_month=12, exp_year=utcnow().year + 3, cvc="123", name="Pat Payer"
    )
    return gateway.tokenize_card(details)


def bank_account(gateway: SandboxGateway, account_number: str) -> TokenizedMethod:
    details = BankAccountDetails(
        routing_number=TEST_ROUTING_NUMBER, account_number=account_number, account_holder="Pat"
    )
    return gateway.tokenize_bank_account(details)


def charges_for(gateway: SandboxGateway, form: FormToken) -> list[SandboxChargeRecord]:
    """The processor's charges made for one form token (found by our metadata)."""
    return [c for c in gateway.list_charges() if c.metadata.get("purpose_key") == form.purpose_key]


def partner(session: Session, slug: str) -> Partner:
    return session.exec(select(Partner).where(Partner.slug == slug)).one()


def harbor_widget(session: Session) -> Widget:
    return session.exec(select(Widget).where(Widget.key == WIDGET_KEY)).one()


def pay(
    app: Flask,
    session: Session,
    *,
    form: FormToken | None = None,
    method: TokenizedMethod | None = None,
    number: str = VISA,
    amount: str = "25.00",
    frequency: str = "once",
    email: str = "pat@example.com",
    address: str = ADDRESS,
    now: datetime = NOW,
) -> PaymentOutcome:
    """Submit the demo widget as its view does, after validation and tokenization."""
    widget, partner = widget_payments.load_widget(session, WIDGET_KEY)
    payer = widget_payments.validate_payer(
        widget,
        widget_payments.PayerInput(
            name="Pat Payer", email=email, amount=amount, frequency=frequency
        ),
    )
    return widget_payments.pay(
        session, sandbox(app), widget=widget, partner=partner, form=form or new_form(app),
        payer=payer, method=method or card(sandbox(app), number), client_address=address,
        now=now, as_of=now.date(), limit=DeclineLimit(),
    )  # fmt: skip
