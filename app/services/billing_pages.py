"""Read models of the partner's invoice and payment pages (and their printed versions).

Each loader checks the tenant first (another partner's record is NotFound), then reads
everything the page shows in a few queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlmodel import Session, col, select

from app.domain.errors import Conflict
from app.models import (
    CustomerAccount,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Partner,
    Payment,
    PaymentKind,
    PaymentStatus,
    User,
)
from app.services.invoice_admin import REFUND_FIRST, cancellation_of, find_invoice
from app.services.notifications import write_email
from app.services.pay_links import PAYABLE
from app.services.receipts import payment_method_label, payment_reference, receipt_for
from app.services.refunds import (
    GATEWAY_KINDS,
    MANUAL_KINDS,
    partner_payment,
    refundable_amount,
    refunds_of,
)

WIDGET_SOURCE = "widget"


@dataclass(frozen=True)
class PaymentRow:
    """A payment as listed on its invoice's page."""

    payment: Payment
    label: str
    refunded: int


@dataclass(frozen=True)
class InvoiceDetail:
    invoice: Invoice
    lines: list[InvoiceLine]
    account: CustomerAccount
    partner: Partner
    payments: list[PaymentRow]
    cancels: Invoice | None  # the invoice this cancellation invoice cancels
    canceled_by: Invoice | None  # the cancellation invoice of this canceled invoice
    tax_rates: list[int]  # the distinct tax rates of its lines (basis points)

    @property
    def is_cancellation(self) -> bool:
        return self.invoice.status == InvoiceStatus.CANCELLATION

    @property
    def payable(self) -> bool:
        return self.invoice.status in PAYABLE and self.invoice.balance > 0

    @property
    def cancel_blocker(self) -> str:
        """Why the invoice cannot be canceled ("" when it can)."""
        if self.invoice.status in (InvoiceStatus.CANCELED, InvoiceStatus.CANCELLATION):
            return "it is already canceled." if self.canceled_by else "it is a cancellation."
        if self.invoice.amount_paid != 0 or self.invoice.status == InvoiceStatus.PAID:
            return f"it has payments on it. {REFUND_FIRST}"
        return ""


@dataclass(frozen=True)
class PaymentDetail:
    payment: Payment
    label: str
    reference: str
    account: CustomerAccount | None
    partner: Partner
    invoice: Invoice | None
    refunds: list[Payment]
    parent: Payment | None  # for a refund: the payment it gives money back from
    refundable: int
    balance_after: int | None
    refund_labels: dict[int, str] = field(default_factory=dict)

    @property
    def is_donation(self) -> bool:
        return str(self.payment.detail.get("source", "")) == WIDGET_SOURCE

    @property
    def is_refund(self) -> bool:
        return self.payment.kind == PaymentKind.REFUND

    @property
    def approved(self) -> bool:
        return self.payment.status == PaymentStatus.APPROVED

    @property
    def refund_through_gateway(self) -> bool:
        return self.refundable > 0 and self.payment.kind in GATEWAY_KINDS

    @property
    def refund_by_hand(self) -> bool:
        return self.refundable > 0 and self.payment.kind in MANUAL_KINDS

    @property
    def receipt_date(self) -> date:
        return self.payment.received_on or self.payment.created_at.date()

    @property
    def receipt_wording(self) -> str:
        """The partner's donation receipt wording, for donations only."""
        return self.partner.receipt_wording.strip() if self.is_donation else ""


def invoice_detail(session: Session, user: User, invoice_id: int) -> InvoiceDetail:
    """Everything the invoice page shows. Raises NotFound for another partner's invoice."""
    invoice = find_invoice(session, user, invoice_id)
    account = session.get(CustomerAccount, invoice.customer_account_id)
    partner = session.get(Partner, invoice.partner_id)
    assert account is not None and partner is not None
    lines = list(
        session.exec(
            select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id).order_by(InvoiceLine.id)
        ).all()
    )
    rows = session.exec(
        select(Payment)
        .where(Payment.invoice_id == invoice.id, Payment.kind != PaymentKind.REFUND)
        .order_by(Payment.id)
    ).all()
    payments = [PaymentRow(p, payment_method_label(p), p.refunded_amount) for p in rows]
    cancels = (
        session.get(Invoice, invoice.cancels_invoice_id) if invoice.cancels_invoice_id else None
    )
    canceled_by = (
        cancellation_of(session, invoice) if invoice.status == InvoiceStatus.CANCELED else None
    )
    rates = sorted({line.tax_rate_bp for line in lines})
    return InvoiceDetail(invoice, lines, account, partner, payments, cancels, canceled_by, rates)


def payment_detail(session: Session, user: User, payment_id: int) -> PaymentDetail:
    """Everything the payment page shows. Raises NotFound for another partner's payment."""
    payment = partner_payment(session, user, payment_id)
    partner = session.get(Partner, payment.partner_id)
    assert partner is not None
    account = (
        session.get(CustomerAccount, payment.customer_account_id)
        if payment.customer_account_id
        else None
    )
    invoice = session.get(Invoice, payment.invoice_id) if payment.invoice_id else None
    parent = session.get(Payment, payment.parent_payment_id) if payment.parent_payment_id else None
    refunds = [] if payment.kind == PaymentKind.REFUND else refunds_of(session, payment.id)  # type: ignore[arg-type]
    return PaymentDetail(
        payment=payment,
        label=payment_method_label(parent or payment),
        reference=payment_reference(payment),
        account=account,
        partner=partner,
        invoice=invoice,
        refunds=refunds,
        parent=parent,
        refundable=refundable_amount(session, payment),
        balance_after=_balance_after(session, payment, invoice),
        refund_labels={r.id: payment_reference(r) for r in refunds},  # type: ignore[misc]
    )


def _balance_after(session: Session, payment: Payment, invoice: Invoice | None) -> int | None:
    """The invoice's balance right after ``payment`` was counted (None without an invoice).

    Approved money in and refunds out on the invoice up to this payment, in the order
    they were made; later payments and refunds (this payment's own included) come after.
    """
    if invoice is None or payment.status != PaymentStatus.APPROVED:
        return None
    rows = session.exec(
        select(Payment.kind, Payment.amount).where(
            Payment.invoice_id == invoice.id,
            Payment.status == PaymentStatus.APPROVED,
            col(Payment.id) <= payment.id,
        )
    ).all()
    paid = sum(-amount if kind == PaymentKind.REFUND else amount for kind, amount in rows)
    return invoice.total - paid


def resend_receipt(
    session: Session, user: User, payment_id: int, *, nonce: str, now: datetime
) -> list[int]:
    """Write the payment's receipt email again (a new outbox row); commits.

    ``nonce`` comes from the page's form token, so a double click sends one email. A
    donation's receipt carries the partner's receipt wording.
    Raises NotFound for another partner's payment, Conflict for a payment that has no
    receipt (not approved, or a refund).
    """
    detail = payment_detail(session, user, payment_id)
    if not detail.approved or detail.is_refund:
        raise Conflict("Only an approved payment has a receipt to send.")
    invoice, account = detail.invoice, detail.account
    to_address = (invoice.billing_email if invoice else "") or (account.email if account else "")
    to_address = to_address or str(detail.payment.detail.get("payer_email", ""))
    if not to_address:
        raise Conflict("This payment has no email address to send its receipt to.")
    row = write_email(
        session,
        template="receipt",
        dedupe_key=f"receipt_resent:payment:{detail.payment.id}:{nonce}",
        to_address=to_address,
        subject=f"Your receipt from {detail.partner.name}",
        partner_id=detail.partner.id,
        receipt=receipt_for(session, detail.payment, message=detail.receipt_wording),
    )
    session.commit()
    return [row.id] if row.id is not None else []
