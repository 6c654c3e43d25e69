"""Paying through a partner's take-payment widget (one-time or recurring)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import bindparam
from sqlmodel import Session, select

from app.domain.contact import is_email
from app.domain.errors import DomainError, InvalidInput, NotFound
from app.domain.money import format_money, parse_amount
from app.gateway.base import GatewayResult, PaymentGateway, TokenizedMethod
from app.models import (
    AmountMode,
    Partner,
    Payment,
    PaymentStatus,
    Widget,
)
from app.services import card_testing, payments
from app.services.form_tokens import FormToken
from app.services.receipts import PaymentOutcome, outcome_for
from app.services.widget_effects import ONE_TIME, apply_widget_payment, find_account


class FieldErrors(InvalidInput):
    """Several field errors at once; ``errors`` maps field name to message."""

    def __init__(self, errors: dict[str, str]) -> None:
        first_field, first_message = next(iter(errors.items()))
        super().__init__(first_message, first_field)
        self.errors = errors


class FormTampered(DomainError):
    """A field the payer cannot change arrived changed (HTTP 400); nothing is charged."""

    status_code = 400


@dataclass(frozen=True)
class PayerInput:
    """The non-sensitive fields a payer typed (card data is tokenized before this)."""

    name: str
    email: str
    amount: str = ""
    frequency: str = ONE_TIME
    currency: str = ""


@dataclass(frozen=True)
class ValidPayer:
    name: str
    email: str
    amount: int
    frequency: str  # "once" or a Frequency value


# Built once, not per call: every widget page view runs it, and building the expression
# was about 40% of the lookup's cost.
_WIDGET_BY_KEY = (
    select(Widget, Partner)
    .join(Partner, Partner.id == Widget.partner_id)
    .where(Widget.key == bindparam("key"))
)


def widget_not_found() -> NotFound:
    """The error for an unknown or inactive widget (HTTP 404)."""
    return NotFound("This payment form does not exist or is no longer available.")


def load_widget(session: Session, key: str) -> tuple[Widget, Partner]:
    """The active widget with public ``key`` and its partner. Raises NotFound."""
    row = session.exec(_WIDGET_BY_KEY, params={"key": key}).first()
    if row is None or not row[0].is_active:
        raise widget_not_found()
    return row[0], row[1]


def frequency_choices(widget: Widget) -> list[str]:
    """The frequencies a payer may choose, one-time first."""
    return ([ONE_TIME] if widget.allow_one_time else []) + list(widget.recurring_frequencies)


def validate_payer(widget: Widget, payer: PayerInput) -> ValidPayer:
    """Check the payer's fields against the widget.

    Raises:
        FormTampered: the posted currency is not the widget's, or a fixed amount was changed.
        FieldErrors: every problem with what the payer typed.
    """
    if payer.currency and payer.currency != widget.currency:
        raise FormTampered(
            f"This form takes payments in {widget.currency}, not {payer.currency[:3]}. "
            "Reload the page; nothing was charged."
        )
    if widget.amount_mode == AmountMode.FIXED and payer.amount.strip():
        try:
            posted = parse_amount(payer.amount, widget.currency)
        except InvalidInput:
            posted = -1
        if posted != widget.fixed_amount:
            raise FormTampered(
                "The amount of this form was changed. Reload the page; nothing was charged."
            )
    errors: dict[str, str] = {}
    name = " ".join(payer.name.split())
    email = payer.email.strip()
    if not name:
        errors["name"] = "Enter your name."
    elif len(name) > 200:
        errors["name"] = "Use at most 200 characters."
    if not is_email(email):
        errors["email"] = "Enter an email address like name@example.com."
    amount = 0
    if widget.amount_mode == AmountMode.FIXED:
        amount = widget.fixed_amount or 0
    else:
        try:
            amount = parse_amount(payer.amount, widget.currency)
        except InvalidInput as exc:
            errors["amount"] = exc.message
        else:
            low, high = widget.min_amount or 0, widget.max_amount
            low_text = format_money(low, widget.currency)
            if high is not None and not low <= amount <= high:
                high_text = format_money(high, widget.currency)
                errors["amount"] = f"Enter an amount between {low_text} and {high_text}."
            elif amount < low:
                errors["amount"] = f"Enter at least {low_text}."
    if payer.frequency not in frequency_choices(widget):
        errors["frequency"] = "Choose how often to pay."
    if errors:
        raise FieldErrors(errors)
    return ValidPayer(name=name, email=email, amount=amount, frequency=payer.frequency)


def replay(session: Session, widget: Widget, form: FormToken) -> PaymentOutcome | None:
    """The outcome of an earlier submission of this form token, or None if it is unused.

    A submission still in flight (double click, second tab) is waited for briefly.
    """
    attempt = payments.find_attempt(session, form.purpose_key)
    if attempt is None:
        return None
    if attempt.status == PaymentStatus.PENDING:
        attempt = payments.wait_until_settled(session, attempt.id)  # type: ignore[arg-type]
    return outcome_for(session, attempt, success_message=widget.success_message)


def pay(
    session: Session,
    gateway: PaymentGateway,
    *,
    widget: Widget,
    partner: Partner,
    form: FormToken,
    payer: ValidPayer,
    method: TokenizedMethod,
    client_address: str,
    now: datetime,
    as_of: date,
    limit: card_testing.DeclineLimit,
) -> PaymentOutcome:
    """Charge a widget payment once per form token and apply its effects.

    Approved: a customer account (found by email or created), a paid invoice, a payment,
    a subscription for a recurring choice (its first period is this charge), a receipt
    email row. Declined: the attempt keeps the reason and the decline is counted.

    Raises:
        TooManyDeclines: the address or email is over the card-testing limit.
    """
    earlier = replay(session, widget, form)
    if earlier is not None:
        return earlier
    source = f"widget:{widget.id}"
    card_testing.ensure_allowed(
        session,
        source=source,
        client_address=client_address,
        email=payer.email,
        now=now,
        limit=limit,
    )
    recurring = payer.frequency != ONE_TIME
    existing_ref = _gateway_customer_ref(session, partner.id, payer.email) if recurring else ""  # type: ignore[arg-type]
    session.rollback()
    spec = payments.AttemptSpec(
        partner_id=partner.id,  # type: ignore[arg-type]
        purpose_key=form.purpose_key,
        amount=payer.amount,
        currency=widget.currency,
        method=method.kind,
        brand=method.brand,
        last4=method.last4,
        is_recurring=recurring,
        period_date=as_of if recurring else None,
        gateway=gateway.name,
        detail={
            "source": "widget",
            "widget_id": widget.id,
            "payer_name": payer.name,
            "payer_email": payer.email,
            "frequency": payer.frequency,
            "client_address": client_address,
            "method": {
                "token": method.token,
                "kind": method.kind,
                "brand": method.brand,
                "last4": method.last4,
                "exp_month": method.exp_month,
                "exp_year": method.exp_year,
                "bank_name": method.bank_name,
            },
        },
    )
    attempt, created = payments.open_attempt(session, spec)
    if not created:
        return replay(session, widget, form) or outcome_for(session, attempt)
    customer_ref, result = _call_gateway(gateway, attempt, payer, method, existing_ref, recurring)
    return _finish(session, attempt, result, widget, partner, customer_ref, source, now, as_of)


def _gateway_customer_ref(session: Session, partner_id: int, email: str) -> str:
    account = find_account(session, partner_id, email)
    return account.gateway_customer_ref if account else ""


def _customer_key(attempt: Payment) -> str:
    return f"{attempt.idempotency_key}:customer"


def widget_customer_ref(gateway: PaymentGateway, attempt: Payment) -> str:
    """The processor customer an approved recurring widget payment saved its card to.

    For a late answer (the reconciler): the customer was created before the charge with
    a key derived from the attempt, so asking again with that key returns the same
    customer and creates nothing. A one-time payment saves no card and gets "". Raises
    what the gateway raises when it cannot be reached.
    """
    if str(attempt.detail.get("frequency", ONE_TIME)) == ONE_TIME:
        return ""
    return gateway.create_customer(
        email=str(attempt.detail.get("payer_email", "")),
        name=str(attempt.detail.get("payer_name", "")),
        idempotency_key=_customer_key(attempt),
    )


def _call_gateway(
    gateway: PaymentGateway,
    attempt: Payment,
    payer: ValidPayer,
    method: TokenizedMethod,
    existing_ref: str,
    recurring: bool,
) -> tuple[str, GatewayResult]:
    """Save the method to a processor customer when it will be charged again, then charge."""
    customer_ref = ""
    if recurring:
        customer_ref = existing_ref or gateway.create_customer(
            email=payer.email,
            name=payer.name,
            idempotency_key=_customer_key(attempt),
        )
        refused = payments.attach_or_decline(
            gateway, attempt, customer_ref=customer_ref, token=method.token
        )
        if refused is not None:
            return customer_ref, refused
    description = f"{payer.frequency} payment" if recurring else "payment"
    return customer_ref, payments.charge(
        gateway, attempt, token=method.token, customer_ref=customer_ref, description=description
    )


def _finish(
    session: Session,
    attempt: Payment,
    result: GatewayResult,
    widget: Widget,
    partner: Partner,
    customer_ref: str,
    source: str,
    now: datetime,
    as_of: date,
) -> PaymentOutcome:
    if not payments.claim_outcome(session, attempt, result, now=now):
        session.rollback()  # someone else settled it; show what they recorded
        settled = payments.wait_until_settled(session, attempt.id)  # type: ignore[arg-type]
        return outcome_for(session, settled, success_message=widget.success_message)
    email_ids: list[int] = []
    if result.approved:
        email_ids = apply_widget_payment(session, attempt, widget, partner, customer_ref, as_of)
    elif result.status == "declined":
        card_testing.record_decline(
            session,
            partner_id=partner.id,  # type: ignore[arg-type]
            source=source,
            client_address=str(attempt.detail.get("client_address", "")),
            email=str(attempt.detail.get("payer_email", "")),
            now=now,
        )
    session.commit()
    outcome = outcome_for(session, attempt, success_message=widget.success_message)
    return PaymentOutcome(
        outcome.status, outcome.attempt_id, outcome.receipt, outcome.message, email_ids
    )
