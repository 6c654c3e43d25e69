"""Paying through a partner's take-payment widget (one-time or recurring)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import bindparam
from sqlmodel import Session, func, select

from app.domain import schedule as rules
from app.domain.errors import DomainError, InvalidInput, NotFound
from app.domain.money import format_money, parse_amount
from app.gateway.base import GatewayResult, PaymentGateway, PaymentMethodRejected, TokenizedMethod
from app.models import (
    AmountMode,
    AuditEvent,
    CustomerAccount,
    InvoiceStatus,
    Partner,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Subscription,
    Widget,
)
from app.services import card_testing, payments
from app.services.form_tokens import FormToken
from app.services.invoices import LineInput, add_invoice
from app.services.notifications import write_email
from app.services.receipts import PaymentOutcome, outcome_for, receipt_for
from app.services.schedules import refresh_next_charge_date

ONE_TIME = "once"


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


def load_widget(session: Session, key: str) -> tuple[Widget, Partner]:
    """The active widget with public ``key`` and its partner. Raises NotFound."""
    row = session.exec(_WIDGET_BY_KEY, params={"key": key}).first()
    if row is None or not row[0].is_active:
        raise NotFound("This payment form does not exist or is no longer available.")
    return row[0], row[1]


_WIDGET_TABLE, _PARTNER_TABLE = Widget.__table__, Partner.__table__  # type: ignore[attr-defined]
_SNAPSHOT_BY_KEY = (
    select(*_WIDGET_TABLE.c, _PARTNER_TABLE.c.name, _PARTNER_TABLE.c.allowed_origins)
    .join(_PARTNER_TABLE, _PARTNER_TABLE.c.id == _WIDGET_TABLE.c.partner_id)
    .where(_WIDGET_TABLE.c.key == bindparam("key"))
)


def widget_snapshot(session: Session, key: str) -> tuple | None:
    """The widget with public ``key`` as one plain row; None when there is none.

    Every column of the widget, then its partner's name and allowed origins, read without
    building ORM objects (about a third of ``load_widget``'s cost). Equal to
    :func:`snapshot_of` the pair that ``load_widget`` returns.
    """
    row = session.connection().execute(_SNAPSHOT_BY_KEY, {"key": key}).first()
    return None if row is None else tuple(row)


def snapshot_of(widget: Widget, partner: Partner) -> tuple:
    """What ``widget_snapshot`` reads, from loaded objects."""
    columns = tuple(getattr(widget, column.name) for column in _WIDGET_TABLE.c)
    return (*columns, partner.name, partner.allowed_origins)


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
    if not _looks_like_email(email):
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


def _looks_like_email(value: str) -> bool:
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return len(value) <= 254


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
    account = _find_account(session, partner_id, email)
    return account.gateway_customer_ref if account else ""


def _find_account(session: Session, partner_id: int, email: str) -> CustomerAccount | None:
    return session.exec(
        select(CustomerAccount)
        .where(
            CustomerAccount.partner_id == partner_id,
            func.lower(CustomerAccount.email) == email.lower(),
        )
        .order_by(CustomerAccount.id)
    ).first()


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
            idempotency_key=f"{attempt.idempotency_key}:customer",
        )
        try:
            gateway.attach_payment_method(customer_ref=customer_ref, token=method.token)
        except PaymentMethodRejected as exc:
            return customer_ref, GatewayResult(
                status="declined",
                operation="charge",
                amount=attempt.amount,
                currency=attempt.currency,
                decline_code=exc.code,
                message=exc.message,
            )
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


def apply_widget_payment(
    session: Session,
    attempt: Payment,
    widget: Widget,
    partner: Partner,
    customer_ref: str,
    as_of: date,
) -> list[int]:
    """Every effect of an approved widget payment, in the caller's transaction.

    Also used by the reconciler once it learns that an ``unknown`` attempt was approved.
    Returns the ids of the email rows written (to enqueue after the commit).
    """
    detail = attempt.detail
    email = str(detail["payer_email"])
    account = _find_account(session, partner.id, email)  # type: ignore[arg-type]
    if account is None:
        account = CustomerAccount(
            partner_id=partner.id,  # type: ignore[arg-type]
            name=str(detail["payer_name"]),
            email=email,
            currency=widget.currency,
        )
    if customer_ref and not account.gateway_customer_ref:
        account.gateway_customer_ref = customer_ref
    session.add(account)
    session.flush()
    frequency = str(detail.get("frequency", ONE_TIME))
    method_row = None
    subscription = None
    if frequency != ONE_TIME:
        method_row = _save_method(session, account, partner, attempt)
        subscription = _start_subscription(
            session, account, partner, widget, attempt, method_row, as_of
        )
    label = widget.title if frequency == ONE_TIME else f"{widget.title} ({frequency})"
    invoice = add_invoice(
        session,
        partner=partner,
        account=account,
        lines=[LineInput(label, 1, attempt.amount)],
        issue_date=as_of,
        due_date=as_of,
        subscription_id=subscription.id if subscription else None,
        prices_include_tax=True,
    )
    invoice.amount_paid = invoice.total
    invoice.status = InvoiceStatus.PAID
    session.add(invoice)
    attempt.customer_account_id = account.id
    attempt.invoice_id = invoice.id
    attempt.subscription_id = subscription.id if subscription else None
    attempt.payment_method_id = method_row.id if method_row else None
    session.add(attempt)
    session.add(
        AuditEvent(
            partner_id=partner.id,
            customer_account_id=account.id,
            actor_label=f"payer {email}",
            action="widget.paid",
            subject_type="payment",
            subject_id=attempt.id,
            detail={"widget_id": widget.id, "amount": attempt.amount, "frequency": frequency},
        )
    )
    session.flush()
    receipt = receipt_for(session, attempt, message=widget.success_message)
    message = write_email(
        session,
        template="receipt",
        dedupe_key=f"receipt:payment:{attempt.id}",
        to_address=email,
        subject=f"Your receipt from {partner.name}",
        partner_id=partner.id,
        receipt=receipt,
    )
    return [message.id]  # type: ignore[list-item]


def _save_method(
    session: Session, account: CustomerAccount, partner: Partner, attempt: Payment
) -> PaymentMethod:
    saved = attempt.detail["method"]
    has_default = session.exec(
        select(PaymentMethod.id).where(
            PaymentMethod.customer_account_id == account.id,
            PaymentMethod.is_default == True,  # noqa: E712
        )
    ).first()
    method = PaymentMethod(
        partner_id=partner.id,  # type: ignore[arg-type]
        customer_account_id=account.id,  # type: ignore[arg-type]
        gateway=attempt.gateway,
        token=saved["token"],
        kind=saved["kind"],
        brand=saved.get("brand") or "",
        last4=saved["last4"],
        exp_month=saved.get("exp_month"),
        exp_year=saved.get("exp_year"),
        bank_name=saved.get("bank_name") or "",
        holder_name=account.name,
        is_default=has_default is None,
    )
    session.add(method)
    session.flush()
    return method


def _start_subscription(
    session: Session,
    account: CustomerAccount,
    partner: Partner,
    widget: Widget,
    attempt: Payment,
    method: PaymentMethod,
    as_of: date,
) -> Subscription:
    subscription = Subscription(
        partner_id=partner.id,  # type: ignore[arg-type]
        customer_account_id=account.id,  # type: ignore[arg-type]
        payment_method_id=method.id,
        description=widget.title,
        status=rules.SubscriptionStatus.RECURRING,
        frequency=str(attempt.detail["frequency"]),
        currency=attempt.currency,
        manual_amount=attempt.amount,
        start_date=as_of,
        stop_rule=rules.StopRule.UNENDING,
        recurring_count=1,  # this charge is the first period
        amount_charged=attempt.amount,
    )
    refresh_next_charge_date(subscription)
    session.add(subscription)
    session.flush()
    return subscription
