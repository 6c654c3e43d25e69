"""Partner users' work on invoices: issue one by hand, cancel it, resend it.

Canceling follows ARCHITECTURE §1: the invoice becomes ``canceled`` and a cancellation
invoice in its own number series ("CN") carries the same lines at negative amounts, so
the two net to zero. Only an invoice with no money on it can be canceled (a paid or
partly paid one needs its payments refunded first), and one no payment is in flight for.

Every function checks the tenant (another partner's invoice is NotFound), commits once,
and returns the ids of the outbox rows it wrote, for the caller to enqueue after commit.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, func, select

from app.domain.errors import Conflict
from app.models import (
    CustomerAccount,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Partner,
    PayLink,
    Payment,
    PaymentKind,
    User,
)
from app.services import payments
from app.services.audit_log import add_event
from app.services.invoice_forms import InvoiceForm, check_invoice_form
from app.services.invoices import add_invoice, tax_rate_for
from app.services.notifications import write_email
from app.services.numbering import next_invoice_number
from app.services.pay_links import PAYABLE, token_for
from app.services.tenancy import customer_for, owned, partner_id_of

REFUND_FIRST = "Refund the payments first."


@dataclass(frozen=True)
class IssuedInvoice:
    invoice: Invoice
    email_ids: list[int]


@dataclass(frozen=True)
class Links:
    """Where emailed links point: the signing secret and the public base URL."""

    secret: str
    base_url: str


def record_event(
    session: Session,
    user: User,
    *,
    partner_id: int,
    account_id: int | None,
    action: str,
    subject_type: str,
    subject_id: int | None,
    **detail: object,
) -> None:
    """Add a history event done by ``user`` to the caller's transaction (no commit)."""
    add_event(
        session, action=action, subject_type=subject_type, subject_id=subject_id,
        partner_id=partner_id, customer_account_id=account_id, actor_user_id=user.id,
        actor_label=user.name or user.email, detail=detail,
    )  # fmt: skip


def invoice_context(
    session: Session, user: User, customer_id: int
) -> tuple[CustomerAccount, Partner, int]:
    """The account a new invoice is for, its partner and the tax rate (basis points).

    Raises NotFound for a customer of another partner (or a user who is not a partner's).
    """
    partner_id_of(user)
    account = customer_for(session, user, customer_id)
    partner = session.get(Partner, account.partner_id)
    assert partner is not None
    return account, partner, tax_rate_for(account, partner)


def issue_invoice(
    session: Session,
    user: User,
    customer_id: int,
    form: InvoiceForm,
    *,
    as_of: date,
    now: datetime,
    links: Links,
) -> IssuedInvoice:
    """Issue a numbered invoice from the form and email it to the billing address.

    The invoice, its lines, a pay link and the "invoice issued" email row commit
    together. Tax comes from the account's rate, else the partner's.

    Raises:
        NotFound: a customer of another partner.
        InvoiceInvalid: the form has bad fields (``errors`` says which).
    """
    account, partner, rate = invoice_context(session, user, customer_id)
    checked = check_invoice_form(form, currency=account.currency, rate_bp=rate, as_of=as_of)
    invoice = add_invoice(
        session,
        partner=partner,
        account=account,
        lines=checked.lines,
        issue_date=checked.issue_date,
        due_date=checked.due_date,
    )
    invoice.memo = checked.memo
    session.add(invoice)
    session.flush()
    email_ids = write_invoice_email(
        session, invoice, partner, account, f"invoice_issued:{invoice.id}", now, links, user
    )
    record_event(
        session, user, partner_id=partner.id, account_id=account.id,  # type: ignore[arg-type]
        action="invoice.issued", subject_type="invoice", subject_id=invoice.id,
        number=invoice.number, total=invoice.total,
    )  # fmt: skip
    session.commit()
    return IssuedInvoice(invoice, email_ids)


def resend_invoice(
    session: Session, user: User, invoice_id: int, *, nonce: str, now: datetime, links: Links
) -> list[int]:
    """Write the invoice email again (a fresh pay link when something is due); commits.

    ``nonce`` comes from the page's form token, so a double click sends one email.
    Raises NotFound for another partner's invoice.
    """
    invoice = find_invoice(session, user, invoice_id)
    partner = session.get(Partner, invoice.partner_id)
    account = session.get(CustomerAccount, invoice.customer_account_id)
    assert partner is not None and account is not None
    key = f"invoice_resent:{invoice.id}:{nonce}"
    email_ids = write_invoice_email(session, invoice, partner, account, key, now, links, user)
    session.commit()
    return email_ids


def write_invoice_email(
    session: Session,
    invoice: Invoice,
    partner: Partner,
    account: CustomerAccount,
    dedupe_key: str,
    now: datetime,
    links: Links,
    user: User,
    *,
    to_address: str = "",
) -> list[int]:
    """Add the invoice email (with a fresh pay link when something is due) to the caller's
    transaction; to ``to_address``, else the invoice's billing address. Returns row ids."""
    pay_url = ""
    if invoice.status in PAYABLE and invoice.balance > 0:
        pay_url = _fresh_pay_url(session, invoice, partner, now, links, user)
    lines = session.exec(
        select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id).order_by(InvoiceLine.id)
    ).all()
    row = write_email(
        session,
        template="invoice_issued",
        dedupe_key=dedupe_key,
        to_address=to_address or invoice.billing_email or account.email,
        subject=f"Invoice {invoice.number} from {partner.name}",
        partner_id=partner.id,
        invoice=invoice,
        lines=list(lines),
        partner=partner,
        account=account,
        pay_url=pay_url,
    )
    return [row.id] if row.id is not None else []


def _fresh_pay_url(
    session: Session, invoice: Invoice, partner: Partner, now: datetime, links: Links, user: User
) -> str:
    # As pay_links.issue_link, but in the caller's transaction: the email that carries
    # the link commits with it. Earlier links of the invoice stop working.
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
        created_by_user_id=user.id,
    )
    session.add(link)
    session.flush()
    return f"{links.base_url}/pay/{token_for(links.secret, link)}"


def cancel_invoice(session: Session, user: User, invoice_id: int, *, as_of: date) -> Invoice:
    """Cancel an unpaid invoice and issue its cancellation invoice; returns the latter.

    The invoice becomes ``canceled`` (and leaves the dunning sweep); the cancellation
    invoice, numbered in the partner's "CN" series and dated ``as_of``, repeats every
    line with negated amounts and tax, so the two net to zero. Both commit together.
    The status change is a conditional UPDATE, so of two simultaneous cancels one wins.

    Raises:
        NotFound: another partner's invoice.
        Conflict: already canceled, a cancellation invoice, paid or partly paid
            ("Refund the payments first."), or a payment of it is being processed.
    """
    invoice = find_invoice(session, user, invoice_id)
    _check_cancelable(invoice)
    claimed = session.execute(
        update(Invoice)
        .where(
            col(Invoice.id) == invoice.id,
            col(Invoice.status).in_(PAYABLE),
            col(Invoice.amount_paid) == 0,
        )
        .values(status=InvoiceStatus.CANCELED, next_dunning_on=None)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        session.rollback()
        _check_cancelable(session.get(Invoice, invoice_id, populate_existing=True))  # type: ignore[arg-type]
        raise Conflict("This invoice changed meanwhile: reload the page.")
    in_flight = session.exec(
        select(func.count())
        .select_from(Payment)
        .where(
            Payment.invoice_id == invoice.id,
            col(Payment.kind).in_((PaymentKind.CHARGE, PaymentKind.CAPTURE)),
            col(Payment.status).in_(payments.OPEN_STATUSES),
        )
    ).one()
    if in_flight:
        session.rollback()
        raise Conflict(
            "A payment of this invoice is being processed. Try again in a few minutes; "
            "if it goes through, refund it first."
        )
    invoice = session.get(Invoice, invoice.id, populate_existing=True)  # type: ignore[assignment]
    cancellation = _cancellation_of(session, invoice, as_of)
    record_event(
        session, user, partner_id=invoice.partner_id, account_id=invoice.customer_account_id,
        action="invoice.canceled", subject_type="invoice", subject_id=invoice.id,
        number=invoice.number, cancellation=cancellation.number,
    )  # fmt: skip
    session.commit()
    return cancellation


def _check_cancelable(invoice: Invoice) -> None:
    if invoice.status == InvoiceStatus.CANCELED:
        raise Conflict(f"Invoice {invoice.number} is already canceled.")
    if invoice.status == InvoiceStatus.CANCELLATION:
        raise Conflict("A cancellation invoice cannot be canceled.")
    if invoice.status == InvoiceStatus.PAID or invoice.amount_paid != 0:
        raise Conflict(f"Invoice {invoice.number} has payments on it. {REFUND_FIRST}")


def _cancellation_of(session: Session, invoice: Invoice, as_of: date) -> Invoice:
    """The cancellation invoice of ``invoice``: its lines copied with negated amounts.

    Lines are copied rather than recomputed, so a tax rate changed since the invoice
    was issued cannot make the pair differ by a cent.
    """
    assert invoice.id is not None
    sequence, number = next_invoice_number(session, partner_id=invoice.partner_id, series="CN")
    cancellation = Invoice(
        partner_id=invoice.partner_id,
        customer_account_id=invoice.customer_account_id,
        subscription_id=invoice.subscription_id,
        cancels_invoice_id=invoice.id,
        series="CN",
        sequence=sequence,
        number=number,
        status=InvoiceStatus.CANCELLATION,
        currency=invoice.currency,
        issue_date=as_of,
        due_date=as_of,
        subtotal=-invoice.subtotal,
        tax=-invoice.tax,
        total=-invoice.total,
        billing_email=invoice.billing_email,
        memo=f"Cancels invoice {invoice.number}.",
        next_dunning_on=None,
    )
    session.add(cancellation)
    session.flush()
    lines = session.exec(
        select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id).order_by(InvoiceLine.id)
    ).all()
    for line in lines:
        session.add(
            InvoiceLine(
                invoice_id=cancellation.id,  # type: ignore[arg-type]
                product_id=line.product_id,
                description=line.description,
                quantity=line.quantity,
                unit_amount=-line.unit_amount,
                tax_rate_bp=line.tax_rate_bp,
                amount=-line.amount,
                tax_amount=-line.tax_amount,
            )
        )
    session.flush()
    return cancellation


def cancellation_of(session: Session, invoice: Invoice) -> Invoice | None:
    """The cancellation invoice issued for ``invoice``, if it was canceled."""
    return session.exec(select(Invoice).where(Invoice.cancels_invoice_id == invoice.id)).first()


def find_invoice(session: Session, user: User, invoice_id: int) -> Invoice:
    """One of the partner user's invoices. Raises NotFound otherwise (other tenants too)."""
    partner_id_of(user)
    return owned(session, user, Invoice, invoice_id)
