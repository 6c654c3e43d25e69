"""Invoice pay links (``/pay/<token>``) and paying an invoice in full or in part."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import update
from sqlmodel import Session, col, func, select

from app.clock import local_today
from app.domain.errors import Conflict, InvalidInput, NotFound
from app.domain.money import format_money, parse_amount
from app.gateway.base import PaymentGateway, TokenizedMethod
from app.models import (
    CustomerAccount,
    Invoice,
    InvoiceStatus,
    OutboxMessage,
    Partner,
    PayLink,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
    User,
)
from app.services import card_testing, payments
from app.services.audit_log import add_event
from app.services.form_tokens import FormToken
from app.services.invoices import apply_paid_amount
from app.services.notifications import write_email, write_receipt
from app.services.receipts import PaymentOutcome, outcome_for
from app.services.service_stop import restore_if_settled
from app.services.tenancy import owned

PAYABLE = (InvoiceStatus.CREATED, InvoiceStatus.OVERDUE)


class LinkInvalid(NotFound):
    def __init__(self) -> None:
        super().__init__("This payment link is not valid. Ask the sender for a new one.")


@dataclass(frozen=True)
class LinkView:
    """A pay link and what it points at; ``state`` is payable, paid, expired or revoked."""

    link: PayLink | None  # None when a signed-in customer pays from the portal
    invoice: Invoice
    partner: Partner
    account: CustomerAccount
    state: str
    last_payment: Payment | None = None


def _serializer(secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt="portico-pay-link")


def token_for(secret: str, link: PayLink) -> str:
    """The URL token of ``link`` (signed; the link row decides expiry and revocation)."""
    return _serializer(secret).dumps({"l": link.id, "n": link.nonce})


def issue_link(
    session: Session, *, invoice: Invoice, partner: Partner, now: datetime, user_id: int | None
) -> PayLink:
    """Create the invoice's pay link, revoking any earlier one (commits).

    Raises Conflict for an invoice that cannot be paid (paid, canceled, cancellation).
    """
    if invoice.status not in PAYABLE:
        raise Conflict(f"Invoice {invoice.number} is {invoice.status}; it has nothing to pay.")
    session.execute(
        update(PayLink)
        .where(col(PayLink.invoice_id) == invoice.id, col(PayLink.revoked_at).is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    link = PayLink(
        partner_id=invoice.partner_id,
        invoice_id=invoice.id,  # type: ignore[arg-type]
        nonce=secrets.token_urlsafe(24),
        expires_at=now + timedelta(days=partner.pay_link_days),
        created_by_user_id=user_id,
    )
    session.add(link)
    session.commit()
    return link


def regenerate_link(session: Session, user: User, invoice_id: int, *, now: datetime) -> PayLink:
    """A partner user's new link for one of their invoices; the old link stops working.

    Raises NotFound for another tenant's invoice, Conflict for an invoice with nothing due.
    """
    invoice = owned(session, user, Invoice, invoice_id)
    partner = session.get(Partner, invoice.partner_id)
    assert partner is not None
    return issue_link(session, invoice=invoice, partner=partner, now=now, user_id=user.id)


def open_link(session: Session, secret: str, token: str, *, now: datetime) -> LinkView:
    """Resolve a URL token to its link, invoice and state. Raises LinkInvalid."""
    try:
        data = _serializer(secret).loads(token)
    except BadSignature:
        raise LinkInvalid() from None
    if not isinstance(data, dict):
        raise LinkInvalid()
    link = session.get(PayLink, data.get("l"))
    if link is None or not secrets.compare_digest(link.nonce, str(data.get("n", ""))):
        raise LinkInvalid()
    invoice = session.get(Invoice, link.invoice_id)
    partner = session.get(Partner, link.partner_id)
    assert invoice is not None and partner is not None
    account = session.get(CustomerAccount, invoice.customer_account_id)
    assert account is not None
    last = session.exec(
        select(Payment)
        .where(Payment.invoice_id == invoice.id, Payment.status == PaymentStatus.APPROVED)
        .order_by(col(Payment.id).desc())
    ).first()
    if invoice.status == InvoiceStatus.PAID:
        state = "paid"
    elif link.revoked_at is not None:
        state = "revoked"
    elif link.expires_at <= now:
        state = "expired"
    elif invoice.status not in PAYABLE:
        state = "closed"
    else:
        state = "payable"
    return LinkView(link, invoice, partner, account, state, last)


def invoice_view(session: Session, user: User, invoice_id: int) -> LinkView:
    """A customer's own invoice as a payable view (no link). Raises NotFound otherwise."""
    invoice = owned(session, user, Invoice, invoice_id)
    if user.customer_account_id != invoice.customer_account_id:
        raise NotFound("Not found.")
    partner = session.get(Partner, invoice.partner_id)
    account = session.get(CustomerAccount, invoice.customer_account_id)
    assert partner is not None and account is not None
    state = (
        "payable"
        if invoice.status in PAYABLE
        else ("paid" if invoice.status == InvoiceStatus.PAID else "closed")
    )
    return LinkView(None, invoice, partner, account, state)


def send_new_link(
    session: Session, view: LinkView, *, secret: str, base_url: str, now: datetime
) -> int | None:
    """Issue a fresh link for an expired one and email it to the invoice's billing address.

    The new link goes to the address on file, never to whoever asked, and at most once an
    hour per invoice. Returns the email row id to enqueue (None when already sent this hour).
    Raises Conflict when the invoice has nothing left to pay.
    """
    dedupe = f"paylink:{view.invoice.id}:{now:%Y%m%d%H}"
    if _already_sent(session, dedupe):
        return None
    link = issue_link(session, invoice=view.invoice, partner=view.partner, now=now, user_id=None)
    message = write_email(
        session,
        template="pay_link",
        dedupe_key=dedupe,
        to_address=view.invoice.billing_email or view.account.email,
        subject=f"Pay invoice {view.invoice.number} to {view.partner.name}",
        partner_id=view.partner.id,
        invoice=view.invoice,
        partner=view.partner,
        url=f"{base_url}/pay/{token_for(secret, link)}",
        expires_at=link.expires_at,
    )
    session.commit()
    return message.id


def _already_sent(session: Session, dedupe_key: str) -> bool:
    return (
        session.exec(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)).first()
        is not None
    )


def parse_invoice_amount(view: LinkView, text: str) -> int:
    """The amount to pay: the balance, or (where the partner allows) a part of it.

    Raises InvalidInput (field ``amount``) for malformed amounts, more than the balance,
    or a partial amount when the partner does not allow partial payments.
    """
    balance = view.invoice.balance
    if not text.strip():
        return balance
    amount = parse_amount(text, view.invoice.currency)
    if amount > balance:
        raise InvalidInput(
            f"That is more than the {format_money(balance, view.invoice.currency)} due. "
            "Enter the amount due or less.",
            "amount",
        )
    if amount < balance and not view.partner.allow_partial_payments:
        raise InvalidInput(
            f"This invoice must be paid in full ({format_money(balance, view.invoice.currency)}).",
            "amount",
        )
    return amount


def saved_methods(session: Session, view: LinkView, user: User | None) -> list[PaymentMethod]:
    """Cards and bank accounts on file, offered only to the invoice's own signed-in customer."""
    if user is None or user.customer_account_id != view.account.id:
        return []
    return list(
        session.exec(
            select(PaymentMethod)
            .where(PaymentMethod.customer_account_id == view.account.id)
            .order_by(col(PaymentMethod.is_default).desc(), PaymentMethod.id)
        ).all()
    )


def pay_invoice(
    session: Session,
    gateway: PaymentGateway,
    *,
    view: LinkView,
    form: FormToken,
    amount: int,
    method: TokenizedMethod | PaymentMethod,
    payer_email: str,
    client_address: str,
    now: datetime,
    limit: card_testing.DeclineLimit,
) -> PaymentOutcome:
    """Charge ``amount`` against the invoice once per form token and record it.

    Approved: the invoice's amount paid grows (``paid`` at zero balance) and a receipt
    email row is written. Declined: the reason is kept and the decline counted.

    Raises:
        TooManyDeclines: over the card-testing limit.
        InvalidInput: ``amount`` exceeds what is still due (checked under a row lock,
            counting payments in flight), or the invoice has nothing due.
    """
    existing = payments.find_attempt(session, form.purpose_key)
    if existing is None:
        source = f"paylink:invoice:{view.invoice.id}"
        card_testing.ensure_allowed(
            session,
            source=source,
            client_address=client_address,
            email=payer_email,
            now=now,
            limit=limit,
        )
        saved = isinstance(method, PaymentMethod)
        spec = payments.AttemptSpec(
            partner_id=view.partner.id,  # type: ignore[arg-type]
            purpose_key=form.purpose_key,
            amount=amount,
            currency=view.invoice.currency,
            method=method.kind,
            kind=PaymentKind.CHARGE,
            customer_account_id=view.account.id,
            invoice_id=view.invoice.id,
            payment_method_id=method.id if saved else None,  # type: ignore[union-attr]
            brand=method.brand,
            last4=method.last4,
            gateway=gateway.name,
            detail={
                "source": "paylink",
                "pay_link_id": view.link.id if view.link else None,
                "payer_email": payer_email,
                "client_address": client_address,
            },
        )
        existing, created = payments.open_attempt(
            session,
            spec,
            precheck=lambda s: _lock_and_check_balance(s, view.invoice.id, amount),  # type: ignore[arg-type]
        )
        if created:
            customer_ref = view.account.gateway_customer_ref if saved else ""
            result = payments.charge(
                gateway, existing, token=method.token, customer_ref=customer_ref,
                description=f"Invoice {view.invoice.number}",
            )  # fmt: skip
            return _finish(session, existing, result, view, source, now)
    if existing.status == PaymentStatus.PENDING:
        existing = payments.wait_until_settled(session, existing.id)  # type: ignore[arg-type]
    return outcome_for(session, existing)


def _lock_and_check_balance(session: Session, invoice_id: int, amount: int) -> None:
    # A no-op UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite) before
    # reading, so two payments of the same invoice cannot both pass this check.
    session.execute(
        update(Invoice).where(col(Invoice.id) == invoice_id).values(amount_paid=Invoice.amount_paid)
    )
    invoice = session.get(Invoice, invoice_id, populate_existing=True)
    assert invoice is not None
    in_flight = session.exec(
        select(func.coalesce(func.sum(Payment.amount), 0)).where(
            Payment.invoice_id == invoice_id,
            col(Payment.status).in_(payments.OPEN_STATUSES),
            Payment.kind == PaymentKind.CHARGE,
        )
    ).one()
    if invoice.status not in PAYABLE:
        raise InvalidInput(f"Invoice {invoice.number} has nothing left to pay.", "amount")
    if amount > invoice.balance - int(in_flight):
        raise InvalidInput(
            "That is more than is still due on this invoice (another payment may be in progress). "
            "Reload the page to see the current balance.",
            "amount",
        )


def _finish(
    session: Session,
    attempt: Payment,
    result,
    view: LinkView,
    source: str,
    now: datetime,  # noqa: ANN001
) -> PaymentOutcome:
    if not payments.claim_outcome(session, attempt, result, now=now):
        session.rollback()
        return outcome_for(session, payments.wait_until_settled(session, attempt.id))  # type: ignore[arg-type]
    email_ids: list[int] = []
    if result.approved:
        email_ids = apply_invoice_payment(session, attempt)
    elif result.status == "declined":
        card_testing.record_decline(
            session,
            partner_id=attempt.partner_id,
            source=source,
            client_address=str(attempt.detail.get("client_address", "")),
            email=str(attempt.detail.get("payer_email", "")),
            now=now,
        )
    session.commit()
    outcome = outcome_for(session, attempt)
    return PaymentOutcome(
        outcome.status, outcome.attempt_id, outcome.receipt, outcome.message, email_ids
    )


def apply_invoice_payment(session: Session, attempt: Payment) -> list[int]:
    """Every effect of an approved invoice payment, in the caller's transaction.

    Returns the ids of the email rows written (to enqueue after the commit).
    """
    invoice = session.get(Invoice, attempt.invoice_id, populate_existing=True)
    partner = session.get(Partner, attempt.partner_id)
    account = session.get(CustomerAccount, attempt.customer_account_id)
    assert invoice is not None and partner is not None and account is not None
    apply_paid_amount(invoice, attempt.amount)
    session.add(invoice)
    if attempt.detail.get("source") == "paylink":  # a scheduled payment has its own events
        _audit_payment(session, attempt, invoice)
    session.flush()
    emails = write_receipt(
        session, attempt, to_address=invoice.billing_email or account.email, partner=partner
    )
    paid_on = attempt.received_on or local_today(partner.timezone)
    return emails + restore_if_settled(session, account.id, as_of=paid_on)  # type: ignore[arg-type]


def _audit_payment(session: Session, attempt: Payment, invoice: Invoice) -> None:
    """The audit event of an approved pay-now payment (pay link, its embed, the portal)."""
    add_event(
        session,
        action="invoice.paid_by_payer",
        subject_type="payment",
        subject_id=attempt.id,
        partner_id=attempt.partner_id,
        customer_account_id=attempt.customer_account_id,
        actor_label=f"payer {attempt.detail.get('payer_email', '')}",
        detail={
            "invoice": invoice.number,
            "amount": format_money(attempt.amount, attempt.currency),
            "via": "pay link" if attempt.detail.get("pay_link_id") else "portal",
            "method": f"{attempt.brand or attempt.method} •••• {attempt.last4}",
        },
    )
