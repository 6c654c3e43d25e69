"""Building invoices: lines, per-line tax, totals and gapless numbers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlmodel import Session

from app.domain.errors import InvalidInput
from app.domain.money import tax_amount, tax_included_in
from app.models import CustomerAccount, Invoice, InvoiceLine, InvoiceStatus, Partner
from app.services.numbering import next_invoice_number


@dataclass(frozen=True)
class LineInput:
    description: str
    quantity: int
    unit_amount: int
    product_id: int | None = None


def billing_address(account: CustomerAccount, on: date) -> str:
    """Where the account's invoices dated ``on`` go: the billing-on-behalf email from its
    start date on, else the account's billing email, else its email."""
    if account.on_behalf_start is not None and on >= account.on_behalf_start:
        return account.on_behalf_email
    return account.billing_email or account.email


def tax_rate_for(account: CustomerAccount, partner: Partner) -> int:
    """The account's own tax rate (basis points) if set, else the partner's."""
    return effective_tax_rate(account.tax_rate_bp, partner.tax_rate_bp)


def effective_tax_rate(account_rate_bp: int | None, partner_rate_bp: int) -> int:
    """The account's own rate when it has one, else the partner's (basis points)."""
    return partner_rate_bp if account_rate_bp is None else account_rate_bp


def line_amounts(
    quantity: int, unit_amount: int, rate_bp: int, *, prices_include_tax: bool
) -> tuple[int, int, int]:
    """A line's (stored unit amount, net amount, tax), tax rounded half-up.

    With ``prices_include_tax`` the unit amount is gross and the tax is the part of it
    that is tax (the stored unit amount is then the net one).
    """
    gross_or_net = quantity * unit_amount
    if prices_include_tax:
        line_tax = tax_included_in(gross_or_net, rate_bp)
        net = gross_or_net - line_tax
        return net, net, line_tax
    return unit_amount, gross_or_net, tax_amount(gross_or_net, rate_bp)


def add_invoice(
    session: Session,
    *,
    partner: Partner,
    account: CustomerAccount,
    lines: list[LineInput],
    issue_date: date,
    due_date: date,
    subscription_id: int | None = None,
    series: str = "INV",
    status: str = InvoiceStatus.CREATED,
    cancels_invoice_id: int | None = None,
    prices_include_tax: bool = False,
) -> Invoice:
    """Add a numbered invoice with its lines to the caller's transaction (no commit).

    Tax is computed per line and rounded half-up; the total is net plus tax. With
    ``prices_include_tax`` the unit amounts are gross (what a payer chose to pay): each
    line's tax is the tax contained in it, so the total equals the sum of the lines.
    Raises InvalidInput for an invoice without lines, a due date before the issue
    date, or a line with a quantity below 1.
    """
    if not lines:
        raise InvalidInput("Add at least one line.", "lines")
    if due_date < issue_date:
        raise InvalidInput("The due date cannot be before the issue date.", "due_date")
    rate = tax_rate_for(account, partner)
    built: list[InvoiceLine] = []
    for line in lines:
        if line.quantity < 1:
            raise InvalidInput("Quantity must be at least 1.", "quantity")
        if prices_include_tax and line.quantity != 1:
            raise InvalidInput("Tax-inclusive lines have a quantity of 1.", "quantity")
        unit, net, line_tax = line_amounts(
            line.quantity, line.unit_amount, rate, prices_include_tax=prices_include_tax
        )
        built.append(
            InvoiceLine(
                invoice_id=0,
                product_id=line.product_id,
                description=line.description,
                quantity=line.quantity,
                unit_amount=unit,
                tax_rate_bp=rate,
                amount=net,
                tax_amount=line_tax,
            )
        )
    assert partner.id is not None and account.id is not None
    sequence, number = next_invoice_number(session, partner_id=partner.id, series=series)
    subtotal = sum(line.amount for line in built)
    tax = sum(line.tax_amount for line in built)
    invoice = Invoice(
        partner_id=partner.id,
        customer_account_id=account.id,
        subscription_id=subscription_id,
        cancels_invoice_id=cancels_invoice_id,
        series=series,
        sequence=sequence,
        number=number,
        status=status,
        currency=account.currency,
        issue_date=issue_date,
        due_date=due_date,
        subtotal=subtotal,
        tax=tax,
        total=subtotal + tax,
        billing_email=billing_address(account, issue_date),
        next_dunning_on=first_dunning_day(due_date) if status == InvoiceStatus.CREATED else None,
    )
    session.add(invoice)
    session.flush()
    for line in built:
        line.invoice_id = invoice.id  # type: ignore[assignment]
        session.add(line)
    session.flush()
    return invoice


def first_dunning_day(due_date: date) -> date:
    """An unpaid invoice turns ``overdue`` the day after its due date: the sweep's first look."""
    return due_date + timedelta(days=1)


def apply_paid_amount(invoice: Invoice, amount: int) -> None:
    """Count ``amount`` as received on the invoice (no commit).

    A fully paid invoice becomes ``paid`` and leaves the dunning sweep.
    """
    invoice.amount_paid += amount
    if invoice.balance <= 0:
        invoice.status = InvoiceStatus.PAID
        invoice.next_dunning_on = None
