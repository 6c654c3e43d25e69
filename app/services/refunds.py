"""Refunds: card and bank payments through the processor, manual payments by record.

A refund is a ``refund`` payment row whose ``parent_payment_id`` is the payment it gives
money back from. Never more than the parent's amount minus earlier refunds (approved or
still in flight) can be refunded; the check runs under the parent's row lock.

Through the processor, a refund moves money exactly once (ARCHITECTURE §2): the attempt
with the form's purpose key (``form:<nonce>``) commits first, the processor is called
with its idempotency key and no transaction open, and the outcome and its effects commit
together. A lost answer leaves the attempt ``unknown`` for the reconciler, which calls
:func:`finish_refund` once the processor tells it what happened.

What an approved refund does to the invoice (docs/decisions/0012-invoices-cancellations-refunds.md):
the refunded amount is no longer counted as paid, so the balance reopens; a ``paid``
invoice goes back to ``created`` (or ``overdue`` when its due date has passed). The
reminder schedule is left alone: an invoice that had left the dunning sweep by being
paid is not put back automatically (a refund is the partner's choice; a long-paid
invoice must not jump straight to "service stopped"). To forgive the amount, cancel the
invoice once it has nothing paid on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from app.domain.errors import Conflict, FieldsInvalid, InvalidInput
from app.domain.money import format_money, parse_amount
from app.gateway.base import GatewayResult, GatewayUnavailable, PaymentGateway
from app.models import (
    Invoice,
    InvoiceStatus,
    Partner,
    Payment,
    PaymentKind,
    PaymentStatus,
    User,
)
from app.services import payments
from app.services.audit_log import add_event
from app.services.form_tokens import FormToken
from app.services.invoices import apply_paid_amount
from app.services.tenancy import owned, partner_id_of

GATEWAY_KINDS: Final = (PaymentKind.CHARGE, PaymentKind.CAPTURE)
MANUAL_KINDS: Final = (PaymentKind.CHECK, PaymentKind.CASH, PaymentKind.BANK_TRANSFER)
REFUND_SOURCE: Final = "refund"
MAX_NOTE: Final = 300


class RefundInvalid(FieldsInvalid):
    """A refund form with bad fields; ``errors`` maps field name to message."""


@dataclass(frozen=True)
class RefundForm:
    """The refund form as typed; ``refunded_on`` and ``reference`` are for manual refunds."""

    amount: str = ""
    note: str = ""
    reference: str = ""
    refunded_on: str = ""


@dataclass(frozen=True)
class RefundOutcome:
    """What happened to a refund: ``status`` is a payment status; emails to enqueue."""

    refund: Payment
    status: str
    message: str = ""
    created: bool = True
    email_ids: list[int] = field(default_factory=list)

    @property
    def approved(self) -> bool:
        return self.status == PaymentStatus.APPROVED


def refundable(payment: Payment) -> bool:
    """Whether the payment is of a kind, and in a state, that can be refunded."""
    return payment.status == PaymentStatus.APPROVED and (
        (payment.kind in GATEWAY_KINDS and bool(payment.gateway_reference))
        or payment.kind in MANUAL_KINDS
    )


def in_flight_refunds(session: Session, payment_id: int) -> int:
    """The amount of the payment's refunds not settled yet (pending or unknown)."""
    return int(
        session.exec(
            select(func.coalesce(func.sum(Payment.amount), 0)).where(
                Payment.parent_payment_id == payment_id,
                Payment.kind == PaymentKind.REFUND,
                col(Payment.status).in_(payments.OPEN_STATUSES),
            )
        ).one()
    )


def refundable_amount(session: Session, payment: Payment) -> int:
    """How much of ``payment`` may still be refunded (0 when it cannot be)."""
    if not refundable(payment):
        return 0
    left = payment.amount - payment.refunded_amount - in_flight_refunds(session, payment.id)  # type: ignore[arg-type]
    return max(0, left)


def partner_payment(session: Session, user: User, payment_id: int) -> Payment:
    """One of the partner user's payments. Raises NotFound otherwise (other tenants too)."""
    partner_id_of(user)
    return owned(session, user, Payment, payment_id)


def _amount(session: Session, parent: Payment, text: str) -> int:
    left = refundable_amount(session, parent)
    if not text.strip():
        return left
    try:
        amount = parse_amount(text, parent.currency, field="amount")
    except InvalidInput as exc:
        raise RefundInvalid({"amount": exc.message}) from None
    _check_limit(parent, amount, left)
    return amount


def _check_limit(parent: Payment, amount: int, left: int) -> None:
    if amount > left:
        if left <= 0:
            message = "Amount: nothing is left to refund on this payment."
        else:
            message = (
                f"Amount: {format_money(amount, parent.currency)} is more than the "
                f"{format_money(left, parent.currency)} that can still be refunded "
                "(the payment minus earlier refunds)."
            )
        raise RefundInvalid({"amount": message})


def _lock_parent_row(session: Session, parent_id: int) -> None:
    session.execute(
        update(Payment)
        .where(col(Payment.id) == parent_id)
        .values(refunded_amount=Payment.refunded_amount)
        .execution_options(synchronize_session=False)
    )


def _lock_parent(session: Session, parent_id: int, amount: int) -> Payment:
    # The parent's row lock serializes refunds of one payment: the limit is read after it.
    _lock_parent_row(session, parent_id)
    parent = session.get(Payment, parent_id, populate_existing=True)
    assert parent is not None
    _check_limit(parent, amount, refundable_amount(session, parent))
    return parent


def refund_payment(
    session: Session,
    gateway: PaymentGateway,
    user: User,
    payment_id: int,
    form: RefundForm,
    *,
    token: FormToken,
    now: datetime,
) -> RefundOutcome:
    """Refund a card or bank payment, in full (blank amount) or in part, through the processor.

    Exactly once per form token: a repeated submission returns the first one's refund.

    Raises:
        NotFound: another partner's payment.
        Conflict: the payment is not an approved card or bank payment.
        RefundInvalid: a bad amount, or more than is left to refund (field ``amount``).
    """
    parent = partner_payment(session, user, payment_id)
    earlier = payments.find_attempt(session, token.purpose_key)
    if earlier is not None:
        settled = payments.wait_until_settled(session, earlier.id)  # type: ignore[arg-type]
        return _outcome(settled, created=False)
    if parent.kind not in GATEWAY_KINDS or not refundable(parent):
        raise Conflict(
            "Only an approved card or bank payment can be refunded through the processor."
        )
    amount = _amount(session, parent, form.amount)
    parent_id = parent.id
    assert parent_id is not None
    spec = payments.AttemptSpec(
        partner_id=parent.partner_id,
        purpose_key=token.purpose_key,
        amount=amount,
        currency=parent.currency,
        method=parent.method,
        kind=PaymentKind.REFUND,
        customer_account_id=parent.customer_account_id,
        invoice_id=parent.invoice_id,
        parent_payment_id=parent_id,
        payment_method_id=parent.payment_method_id,
        brand=parent.brand,
        last4=parent.last4,
        gateway=gateway.name,
        detail={
            "source": REFUND_SOURCE,
            "actor": user.email,
            "actor_user_id": user.id,
            "note": form.note.strip()[:MAX_NOTE],
        },
    )

    def still_refundable(tx: Session) -> None:
        _lock_parent(tx, parent_id, amount)

    attempt, created = payments.open_attempt(session, spec, precheck=still_refundable)
    if not created:
        return _outcome(payments.wait_until_settled(session, attempt.id), created=False)  # type: ignore[arg-type]
    try:
        result = gateway.refund(
            reference=parent.gateway_reference,
            amount=amount,
            idempotency_key=attempt.idempotency_key,
        )
    except GatewayUnavailable:  # refused before reaching the processor: no money moved
        result = GatewayResult(
            status="error",
            operation="refund",
            amount=amount,
            currency=attempt.currency,
            decline_code="processor_unavailable",
            message="The processor could not be reached; nothing was refunded. Try again.",
            retryable=True,
        )
    return finish_refund(session, attempt, result, now=now)


def finish_refund(
    session: Session, attempt: Payment, result: GatewayResult, *, now: datetime
) -> RefundOutcome:
    """Record the processor's answer to a refund attempt and apply it (commits).

    Approved: the parent's ``refunded_amount`` grows and the invoice's paid amount
    shrinks (see the module docstring). Declined or error: nothing else changes. Unknown:
    the attempt stays open for the reconciler. Called by the reconciler too; only the
    caller that moves the attempt out of pending/unknown applies the effects.
    """
    if attempt.parent_payment_id is not None:
        # Parent first, as every refund takes its locks: claiming the attempt first would
        # hold its purpose-key index entry while waiting for a concurrent submission that
        # holds the parent and waits on that entry (a deadlock).
        _lock_parent_row(session, attempt.parent_payment_id)
    if not payments.claim_outcome(session, attempt, result, now=now):
        session.rollback()
        settled = session.get(Payment, attempt.id, populate_existing=True)
        assert settled is not None
        return _outcome(settled, created=False)
    if result.approved:
        partner = session.get(Partner, attempt.partner_id)
        assert partner is not None
        _apply_refund(session, attempt, as_of=now.astimezone(ZoneInfo(partner.timezone)).date())
    session.commit()
    return _outcome(attempt)


def _apply_refund(session: Session, refund: Payment, *, as_of: date) -> None:
    """Every effect of an approved refund, in the caller's transaction."""
    add_event(
        session, action="payment.refunded", subject_type="payment",
        subject_id=refund.parent_payment_id, partner_id=refund.partner_id,
        customer_account_id=refund.customer_account_id,
        actor_user_id=refund.detail.get("actor_user_id"),  # type: ignore[arg-type]
        actor_label=str(refund.detail.get("actor", "")),
        detail={"refund_id": refund.id, "amount": refund.amount, "method": refund.method},
    )  # fmt: skip
    session.execute(
        update(Payment)
        .where(col(Payment.id) == refund.parent_payment_id)
        .values(refunded_amount=Payment.refunded_amount + refund.amount)
        .execution_options(synchronize_session=False)
    )
    if refund.invoice_id is None:
        return
    invoice = session.get(Invoice, refund.invoice_id, populate_existing=True)
    assert invoice is not None
    apply_paid_amount(invoice, -refund.amount)  # counted as paid no longer
    if invoice.status == InvoiceStatus.PAID and invoice.balance > 0:
        invoice.status = (
            InvoiceStatus.OVERDUE if as_of > invoice.due_date else InvoiceStatus.CREATED
        )
    session.add(invoice)
    session.flush()


def record_manual_refund(
    session: Session,
    user: User,
    payment_id: int,
    form: RefundForm,
    *,
    token: FormToken,
    as_of: date,
    now: datetime,
) -> RefundOutcome:
    """Record money given back by hand for a check, cash or bank transfer payment.

    One transaction, once per form token (a repeated submission returns the first
    refund). The invoice follows as for a processor refund.

    Raises:
        NotFound: another partner's payment.
        Conflict: the payment is not an approved manual payment.
        RefundInvalid: a bad field, or more than is left to refund (field ``amount``).
    """
    parent = partner_payment(session, user, payment_id)
    earlier = payments.find_attempt(session, token.purpose_key)
    if earlier is not None:
        session.rollback()
        return _outcome(earlier, created=False)
    if parent.kind not in MANUAL_KINDS or not refundable(parent):
        raise Conflict("Only an approved check, cash or bank transfer payment is refunded by hand.")
    errors: dict[str, str] = {}
    refunded_on = as_of
    try:
        refunded_on = date.fromisoformat(form.refunded_on.strip())
        if refunded_on > as_of:
            errors["refunded_on"] = "The refund date cannot be after today."
    except ValueError:
        errors["refunded_on"] = "Enter the date the money was given back, such as 2026-03-31."
    if len(form.reference.strip()) > 120:
        errors["reference"] = "Use at most 120 characters."
    try:
        amount = _amount(session, parent, form.amount)
    except RefundInvalid as exc:
        errors.update(exc.errors)
    if errors:
        raise RefundInvalid(errors)
    try:
        parent = _lock_parent(session, parent.id, amount)  # type: ignore[arg-type]
        refund = Payment(
            partner_id=parent.partner_id,
            customer_account_id=parent.customer_account_id,
            invoice_id=parent.invoice_id,
            parent_payment_id=parent.id,
            purpose_key=token.purpose_key,
            idempotency_key=payments.idempotency_key_for(token.purpose_key),
            kind=PaymentKind.REFUND,
            method="manual",
            status=PaymentStatus.APPROVED,
            amount=amount,
            currency=parent.currency,
            reference=form.reference.strip(),
            received_on=refunded_on,
            settled_at=now,
            detail={
                "source": REFUND_SOURCE,
                "actor": user.email,
                "actor_user_id": user.id,
                "note": form.note.strip()[:MAX_NOTE],
            },
        )
        session.add(refund)
        session.flush()
        _apply_refund(session, refund, as_of=as_of)
        session.commit()
    except IntegrityError:
        session.rollback()
        winner = payments.find_attempt(session, token.purpose_key)
        if winner is None:
            raise
        return _outcome(winner, created=False)
    except BaseException:
        session.rollback()
        raise
    return _outcome(refund)


def refunds_of(session: Session, payment_id: int) -> list[Payment]:
    """The refund attempts of a payment (any outcome), oldest first."""
    return list(
        session.exec(
            select(Payment)
            .where(Payment.parent_payment_id == payment_id, Payment.kind == PaymentKind.REFUND)
            .order_by(Payment.id)
        ).all()
    )


def _outcome(refund: Payment, *, created: bool = True) -> RefundOutcome:
    amount = format_money(refund.amount, refund.currency)
    messages = {
        PaymentStatus.APPROVED: f"Refunded {amount}.",
        PaymentStatus.DECLINED: f"The refund of {amount} was declined: {refund.decline_reason}",
        PaymentStatus.ERROR: f"The refund of {amount} failed: {refund.decline_reason}",
        PaymentStatus.UNKNOWN: (
            f"The processor's answer about the refund of {amount} was lost. Do not refund "
            "again: it is confirmed with the processor shortly."
        ),
        PaymentStatus.PENDING: f"The refund of {amount} is being processed.",
    }
    message = messages.get(PaymentStatus(refund.status), "")
    return RefundOutcome(refund, str(refund.status), message, created)
