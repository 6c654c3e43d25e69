"""Read models of the invoice and payment pages (and their printed versions and PDFs).

Partner users load through ``invoice_detail`` / ``payment_detail``, customers through
``customer_invoice_detail`` / ``customer_payment_detail``. Each loader checks the tenant
first (another tenant's record is NotFound, and each refuses the other kind of user),
then ``detail_of_invoice`` / ``detail_of_payment`` read everything the page shows in a
few queries. What a page offers (cancel, refund, dunning) is the template's choice per
audience; the details are the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TypeVar

from sqlmodel import Session, SQLModel, col, select

from app.domain.errors import Conflict, NotFound
from app.models import (
    CustomerAccount,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Partner,
    Payment,
    PaymentKind,
    PaymentStatus,
    Role,
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
from app.services.tenancy import owned

WIDGET_SOURCE = "widget"
T = TypeVar("T", bound=SQLModel)


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
    """Everything the partner's invoice page shows.

    Raises NotFound for another partner's invoice, or a user who is not a partner user.
    """
    return detail_of_invoice(session, find_invoice(session, user, invoice_id))


def customer_invoice_detail(session: Session, user: User, invoice_id: int) -> InvoiceDetail:
    """One of the customer's own invoices, as its portal page shows it.

    Raises NotFound for another account's invoice, or a user who is not a customer.
    """
    return detail_of_invoice(session, _own(session, user, Invoice, invoice_id))


def detail_of_invoice(session: Session, invoice: Invoice) -> InvoiceDetail:
    """Everything an invoice page shows, for an invoice the caller has already scoped.

    Reads the lines, payments and cancellation pair in a few queries. Raises nothing.
    """
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
    """Everything the partner's payment page shows.

    Raises NotFound for another partner's payment, or a user who is not a partner user.
    """
    return detail_of_payment(session, partner_payment(session, user, payment_id))


def customer_payment_detail(session: Session, user: User, payment_id: int) -> PaymentDetail:
    """One of the customer's own payments, as its portal receipt page shows it.

    Raises NotFound for another account's payment, or a user who is not a customer.
    """
    return detail_of_payment(session, _own(session, user, Payment, payment_id))


def detail_of_payment(session: Session, payment: Payment) -> PaymentDetail:
    """Everything a payment page shows, for a payment the caller has already scoped.

    Raises nothing.
    """
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
    check_has_receipt(detail)
    invoice, account = detail.invoice, detail.account
    to_address = (invoice.billing_email if invoice else "") or (account.email if account else "")
    to_address = to_address or str(detail.payment.detail.get("payer_email", ""))
    if not to_address:
        raise Conflict("This payment has no email address to send its receipt to.")
    dedupe_key = f"receipt_resent:payment:{detail.payment.id}:{nonce}"
    email_ids = write_receipt_copy(session, detail, to_address=to_address, dedupe_key=dedupe_key)
    session.commit()
    return email_ids


def check_has_receipt(detail: PaymentDetail) -> None:
    """Raise Conflict unless the payment has a receipt (approved, and not a refund)."""
    if not detail.approved or detail.is_refund:
        raise Conflict("Only an approved payment has a receipt to send.")


def write_receipt_copy(
    session: Session, detail: PaymentDetail, *, to_address: str, dedupe_key: str
) -> list[int]:
    """Add a copy of the payment's receipt email to the caller's transaction (no commit).

    Written once per ``dedupe_key``. A donation's receipt carries the partner's receipt
    wording. Returns the outbox row's id. Raises nothing; callers check the receipt first.
    """
    row = write_email(
        session,
        template="receipt",
        dedupe_key=dedupe_key,
        to_address=to_address,
        subject=f"Your receipt from {detail.partner.name}",
        partner_id=detail.partner.id,
        receipt=receipt_for(session, detail.payment, message=detail.receipt_wording),
    )
    return [row.id] if row.id is not None else []


def _own(session: Session, user: User, model: type[T], record_id: int) -> T:
    """A row of the customer's own account. Raises NotFound for anyone else's (or a
    user who is not a customer: partner users have their own loaders above)."""
    if user.role != Role.CUSTOMER or user.customer_account_id is None:
        raise NotFound("Not found.")
    return owned(session, user, model, record_id)
