"""Recording money received outside the processor: checks, cash, bank transfers.

No processor is called, so the whole payment is one transaction: the payment row
(approved at once, method ``manual``), the amount counted on the invoice with
:func:`app.services.invoices.apply_paid_amount`, the receipt email, and a service
restore when that was the last overdue invoice. The form's token nonce is the purpose
key (``form:<nonce>``), unique in the database: a second submission of the same form
finds the first one's payment and counts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from app.domain.errors import InvalidInput
from app.domain.money import format_money, parse_amount
from app.models import (
    CustomerAccount,
    Invoice,
    Partner,
    Payment,
    PaymentKind,
    PaymentStatus,
    User,
)
from app.services import payments
from app.services.form_tokens import FormToken
from app.services.invoice_admin import record_event
from app.services.invoices import apply_paid_amount
from app.services.notifications import write_receipt
from app.services.pay_links import PAYABLE
from app.services.service_stop import restore_if_settled
from app.services.tenancy import owned, partner_id_of

MANUAL_KINDS: Final = (
    (PaymentKind.CHECK.value, "Check"),
    (PaymentKind.CASH.value, "Cash"),
    (PaymentKind.BANK_TRANSFER.value, "Bank transfer"),
)
MAX_REFERENCE: Final = 120


class ManualPaymentInvalid(InvalidInput):
    """A manual payment form with bad fields; ``errors`` maps field name to message."""

    def __init__(self, errors: dict[str, str]) -> None:
        first_field, first_message = next(iter(errors.items()))
        super().__init__(first_message, first_field)
        self.errors = dict(errors)


@dataclass(frozen=True)
class ManualPaymentForm:
    """The form as typed: kind (check, cash, bank_transfer), amount, reference, date."""

    kind: str = PaymentKind.CHECK.value
    amount: str = ""
    reference: str = ""
    received_on: str = ""


@dataclass(frozen=True)
class RecordedPayment:
    """The payment recorded (or found, for a repeated form); emails to enqueue."""

    payment: Payment
    created: bool
    email_ids: list[int]


def _check_form(
    form: ManualPaymentForm, invoice: Invoice, as_of: date
) -> tuple[str, int, str, date]:
    errors: dict[str, str] = {}
    if form.kind not in dict(MANUAL_KINDS):
        errors["kind"] = "Choose check, cash or bank transfer."
    amount = 0
    try:
        amount = parse_amount(form.amount, invoice.currency, field="amount")
    except InvalidInput as exc:
        errors["amount"] = exc.message
    reference = form.reference.strip()
    if len(reference) > MAX_REFERENCE:
        errors["reference"] = f"Use at most {MAX_REFERENCE} characters."
    elif form.kind == PaymentKind.CHECK and not reference:
        errors["reference"] = "Enter the check number."
    received_on = as_of
    try:
        received_on = date.fromisoformat(form.received_on.strip())
    except ValueError:
        errors["received_on"] = "Enter the date the payment was received, such as 2026-03-31."
    else:
        if received_on > as_of:
            errors["received_on"] = "The received date cannot be after today."
    if errors:
        raise ManualPaymentInvalid(errors)
    return form.kind, amount, reference, received_on


def record_manual_payment(
    session: Session,
    user: User,
    invoice_id: int,
    form: ManualPaymentForm,
    *,
    token: FormToken,
    as_of: date,
    now: datetime,
) -> RecordedPayment:
    """Record a check, cash or bank transfer payment of an invoice, in full or in part.

    Runs once per form token: a repeated submission returns the payment the first one
    recorded (``created=False``) and changes nothing. The balance is checked under the
    invoice's row lock, counting card payments still in flight.

    Raises:
        NotFound: another partner's invoice.
        ManualPaymentInvalid: a bad field, including an amount above what is due
            (field ``amount``) or an invoice with nothing left to pay.
    """
    partner_id_of(user)
    invoice = owned(session, user, Invoice, invoice_id)
    earlier = payments.find_attempt(session, token.purpose_key)
    if earlier is not None:
        session.rollback()
        return RecordedPayment(earlier, False, [])
    kind, amount, reference, received_on = _check_form(form, invoice, as_of)
    try:
        invoice = _lock_for_payment(session, invoice_id, amount)
        payment = Payment(
            partner_id=invoice.partner_id,
            customer_account_id=invoice.customer_account_id,
            invoice_id=invoice.id,
            purpose_key=token.purpose_key,
            idempotency_key=payments.idempotency_key_for(token.purpose_key),
            kind=kind,
            method="manual",
            status=PaymentStatus.APPROVED,
            amount=amount,
            currency=invoice.currency,
            reference=reference,
            received_on=received_on,
            settled_at=now,
            detail={"source": "manual_payment", "actor": user.email},
        )
        session.add(payment)
        session.flush()
        email_ids = _count_on_invoice(session, payment, invoice, as_of)
        record_event(
            session, user, partner_id=invoice.partner_id, account_id=invoice.customer_account_id,
            action="payment.recorded", subject_type="payment", subject_id=payment.id,
            kind=kind, amount=amount, invoice=invoice.number,
        )  # fmt: skip
        session.commit()
    except IntegrityError:
        session.rollback()
        winner = payments.find_attempt(session, token.purpose_key)
        if winner is None:
            raise
        return RecordedPayment(winner, False, [])
    except BaseException:
        session.rollback()
        raise
    return RecordedPayment(payment, True, email_ids)


def _lock_for_payment(session: Session, invoice_id: int, amount: int) -> Invoice:
    # A no-op UPDATE takes the invoice's row lock (the write lock on SQLite) before the
    # balance is read, as the pay-link payments do, so two payments cannot both pass.
    session.execute(
        update(Invoice).where(col(Invoice.id) == invoice_id).values(amount_paid=Invoice.amount_paid)
    )
    invoice = session.get(Invoice, invoice_id, populate_existing=True)
    assert invoice is not None
    if invoice.status not in PAYABLE or invoice.balance <= 0:
        raise ManualPaymentInvalid(
            {"amount": f"Invoice {invoice.number} is {invoice.status}: nothing is left to pay."}
        )
    in_flight = int(
        session.exec(
            select(func.coalesce(func.sum(Payment.amount), 0)).where(
                Payment.invoice_id == invoice_id,
                col(Payment.status).in_(payments.OPEN_STATUSES),
                col(Payment.kind).in_((PaymentKind.CHARGE, PaymentKind.CAPTURE)),
            )
        ).one()
    )
    due = invoice.balance - in_flight
    if amount > due:
        pending = " (a card payment of it is being processed)" if in_flight else ""
        raise ManualPaymentInvalid(
            {
                "amount": f"Amount: {format_money(amount, invoice.currency)} is more than the "
                f"{format_money(due, invoice.currency)} still due{pending}. "
                "Enter the amount due or less."
            }
        )
    return invoice


def _count_on_invoice(
    session: Session, payment: Payment, invoice: Invoice, as_of: date
) -> list[int]:
    apply_paid_amount(invoice, payment.amount)
    session.add(invoice)
    session.flush()
    account = session.get(CustomerAccount, invoice.customer_account_id)
    partner = session.get(Partner, invoice.partner_id)
    assert account is not None and partner is not None
    email_ids = write_receipt(
        session, payment, to_address=invoice.billing_email or account.email, partner=partner
    )
    email_ids += restore_if_settled(session, account.id, as_of=as_of)  # type: ignore[arg-type]
    return email_ids
