"""What a payer is shown after paying: a receipt, or why there is none yet."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlmodel import Session

from app.models import Invoice, Partner, Payment, PaymentStatus, Subscription

DECLINE_FALLBACK = "Your payment was declined."
UNKNOWN_MESSAGE = (
    "We could not confirm your payment with the processor yet. Please do not pay again: "
    "we will email your receipt as soon as it is confirmed."
)
PENDING_MESSAGE = "Your payment is being processed. This page will show the receipt shortly."


@dataclass(frozen=True)
class Receipt:
    partner_name: str
    payer_name: str
    amount: int
    currency: str
    method_label: str
    paid_on: date
    reference: str
    invoice_number: str
    balance_after: int = 0
    next_charge_date: date | None = None
    frequency: str = ""
    message: str = ""


@dataclass(frozen=True)
class PaymentOutcome:
    """The result of a payer's submission: ``approved`` carries a receipt."""

    status: str
    attempt_id: int | None = None
    receipt: Receipt | None = None
    message: str = ""
    email_ids: list[int] = field(default_factory=list)

    @property
    def approved(self) -> bool:
        return self.status == PaymentStatus.APPROVED


def method_label(kind: str, brand: str, last4: str) -> str:
    """ "Visa •••• 4242" or "Bank account •••• 6789"."""
    if kind == "bank_account":
        return f"Bank account •••• {last4}"
    return f"{(brand or 'Card').title()} •••• {last4}"


MANUAL_KINDS = {"check": "Check", "cash": "Cash", "bank_transfer": "Bank transfer"}


def payment_method_label(payment: Payment) -> str:
    """How a payment was made, for people: "Visa •••• 4242", "Check #1042", "Cash"."""
    if payment.method != "manual":
        return method_label(payment.method, payment.brand, payment.last4)
    kind = MANUAL_KINDS.get(payment.kind, "Manual payment")
    reference = payment.reference.strip()
    if not reference or reference.lower().startswith(kind.lower()):
        return reference or kind
    if payment.kind == "check":
        return f"Check #{reference.lstrip('#')}"
    return f"{kind} ({reference})"


def payment_reference(payment: Payment) -> str:
    """The reference a payer quotes to support."""
    return f"PAY-{payment.id:06d}"


def receipt_for(session: Session, payment: Payment, *, message: str = "") -> Receipt:
    """The receipt of an approved payment."""
    invoice = session.get(Invoice, payment.invoice_id) if payment.invoice_id else None
    partner = session.get(Partner, payment.partner_id)
    subscription = (
        session.get(Subscription, payment.subscription_id) if payment.subscription_id else None
    )
    assert partner is not None
    return Receipt(
        partner_name=partner.name,
        payer_name=str(payment.detail.get("payer_name", "")),
        amount=payment.amount,
        currency=payment.currency,
        method_label=payment_method_label(payment),
        paid_on=payment.received_on or payment.created_at.date(),
        reference=payment_reference(payment),
        invoice_number=invoice.number if invoice else "",
        balance_after=invoice.balance if invoice else 0,
        next_charge_date=subscription.next_charge_date if subscription else None,
        frequency=subscription.frequency if subscription else "",
        message=message,
    )


def outcome_for(session: Session, payment: Payment, *, success_message: str = "") -> PaymentOutcome:
    """The outcome a payer sees for an attempt in its current state."""
    if payment.status == PaymentStatus.APPROVED:
        receipt = receipt_for(session, payment, message=success_message)
        return PaymentOutcome(PaymentStatus.APPROVED, payment.id, receipt)
    if payment.status == PaymentStatus.DECLINED:
        return PaymentOutcome(
            PaymentStatus.DECLINED, payment.id, message=payment.decline_reason or DECLINE_FALLBACK
        )
    if payment.status == PaymentStatus.ERROR:
        reason = payment.decline_reason or "The payment could not be processed. Please try again."
        return PaymentOutcome(PaymentStatus.ERROR, payment.id, message=reason)
    if payment.status == PaymentStatus.UNKNOWN:
        return PaymentOutcome(PaymentStatus.UNKNOWN, payment.id, message=UNKNOWN_MESSAGE)
    return PaymentOutcome(PaymentStatus.PENDING, payment.id, message=PENDING_MESSAGE)
