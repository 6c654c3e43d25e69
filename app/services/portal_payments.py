"""The customer portal's payments: the history with its date range, and receipts.

Every function starts from the signed-in customer's own account (``tenancy.own_account``);
a list reads a constant number of queries, whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import Date, cast
from sqlmodel import Session, col, func, select

from app.domain.errors import FieldsInvalid
from app.models import CustomerAccount, Invoice, Partner, Payment, PaymentKind, Subscription, User
from app.services.billing_pages import PaymentDetail, check_has_receipt, customer_payment_detail
from app.services.dashboard import payment_day_between
from app.services.directory import Page
from app.services.receipts import payment_method_label
from app.services.tenancy import own_account

PAYMENTS_PER_PAGE: Final = 25
OPEN_START: Final = date(1900, 1, 1)
OPEN_END: Final = date(9000, 1, 1)
# Money a customer paid (or tried to): refunds show on their payment's row, holds
# (authorizations, voids) moved no money.
MONEY_IN: Final = (
    PaymentKind.CHARGE,
    PaymentKind.CAPTURE,
    PaymentKind.CHECK,
    PaymentKind.CASH,
    PaymentKind.BANK_TRANSFER,
)


@dataclass(frozen=True)
class PaymentLine:
    """A payment as the portal lists it: its day (partner-local), what it paid for, how."""

    payment: Payment
    day: date
    description: str
    label: str
    invoice_id: int | None


def customer_and_partner(session: Session, user: User) -> tuple[CustomerAccount, Partner]:
    """The customer's own account and its partner. Raises NotFound for non-customers."""
    account = own_account(session, user)
    partner = session.get(Partner, account.partner_id)
    assert partner is not None
    return account, partner


def payment_lines(
    session: Session, partner: Partner, conditions: list[Any], *, offset: int = 0, limit: int
) -> list[PaymentLine]:
    """Payments matching ``conditions``, newest first, with what each paid for (invoice
    number, subscription), read in one statement."""
    rows = session.exec(
        select(Payment, Invoice.number, Subscription.description)
        .outerjoin(Invoice, col(Invoice.id) == Payment.invoice_id)
        .outerjoin(Subscription, col(Subscription.id) == Payment.subscription_id)
        .where(*conditions)
        .order_by(
            day_of_payment(session, partner.timezone).desc(),
            col(Payment.created_at).desc(),
            col(Payment.id).desc(),
        )
        .offset(offset)
        .limit(limit)
    ).all()
    zone = ZoneInfo(partner.timezone)
    lines = []
    for payment, number, plan in rows:
        instant = payment.settled_at or payment.created_at
        words = [f"Invoice {number}" if number else "", plan or ""]
        fallback = "Donation" if payment.detail.get("source") == "widget" else "Payment"
        lines.append(
            PaymentLine(
                payment=payment,
                day=payment.received_on or instant.astimezone(zone).date(),
                description=" · ".join(w for w in words if w) or fallback,
                label=payment_method_label(payment),
                invoice_id=payment.invoice_id,
            )
        )
    return lines


def day_of_payment(session: Session, timezone: str) -> Any:
    """SQL: the payment's day, to list payments by it (the shown day is computed exactly
    in Python): ``received_on``, else the settled (or created) instant's day."""
    instant = func.coalesce(Payment.settled_at, Payment.created_at)
    if session.get_bind().dialect.name == "postgresql":
        return func.coalesce(Payment.received_on, cast(func.timezone(timezone, instant), Date))
    # SQLite keeps instants as UTC text: its UTC day is near enough to order by.
    return func.coalesce(Payment.received_on, func.date(instant))


class RangeInvalid(FieldsInvalid):
    """A date range with bad fields (``from``, ``to``); nothing was filtered."""


@dataclass(frozen=True)
class PaymentRange:
    """Partner-local days, both included; None leaves that side open."""

    start: date | None = None
    end: date | None = None

    def query_args(self) -> dict[str, str]:
        """The range as query-string arguments (for links that keep it)."""
        args = {"from": self.start.isoformat() if self.start else ""}
        args["to"] = self.end.isoformat() if self.end else ""
        return {name: value for name, value in args.items() if value}


def parse_range(args: Mapping[str, str]) -> PaymentRange:
    """Read ``from`` and ``to`` (YYYY-MM-DD, either may be empty).

    Raises:
        RangeInvalid: a malformed date (on its field), or ``from`` after ``to`` (on "to").
    """
    errors: dict[str, str] = {}
    days: dict[str, date | None] = {}
    for name, word in (("from", "From"), ("to", "To")):
        text = args.get(name, "").strip()
        days[name] = None
        if text:
            try:
                days[name] = date.fromisoformat(text)
            except ValueError:
                errors[name] = f"{word}: enter a date such as 2026-03-31."
    start, end = days["from"], days["to"]
    if start and end and start > end:
        errors["to"] = "The end date cannot be before the start date."
    if errors:
        raise RangeInvalid(errors)
    return PaymentRange(start, end)


@dataclass(frozen=True)
class PaymentHistory:
    range: PaymentRange
    page: Page[PaymentLine]
    partner: Partner


def payment_history(
    session: Session,
    user: User,
    *,
    days: PaymentRange | None = None,
    page: int = 1,
    per_page: int = PAYMENTS_PER_PAGE,
) -> PaymentHistory:
    """The customer's payments (money in, any outcome) newest day first, a page at a time.

    A payment's day is its ``received_on``, else the instant it settled (or was made) read
    in the partner's timezone; ``days`` keeps the payments whose day is in the range,
    both ends included. Refunds show as the refunded amount of their payment.

    Raises:
        NotFound: ``user`` is not a customer.
    """
    account, partner = customer_and_partner(session, user)
    days = days or PaymentRange()
    conditions = [Payment.customer_account_id == account.id, col(Payment.kind).in_(MONEY_IN)]
    if days.start or days.end:
        # An open side reaches past any stored day (date.min would overflow in UTC+ zones).
        start = days.start or OPEN_START
        end = days.end + timedelta(days=1) if days.end else OPEN_END  # exclusive
        conditions.append(payment_day_between(start, end, partner.timezone))
    total = int(session.exec(select(func.count()).select_from(Payment).where(*conditions)).one())
    page = min(max(1, page), max(1, -(-total // per_page)))
    rows = payment_lines(session, partner, conditions, offset=(page - 1) * per_page, limit=per_page)
    return PaymentHistory(days, Page(rows, page, per_page, total), partner)


def portal_receipt(session: Session, user: User, payment_id: int) -> PaymentDetail:
    """The receipt of one of the customer's payments (for its printable page and PDF).

    Raises:
        NotFound: another account's payment, or ``user`` is not a customer.
        Conflict: the payment has no receipt (not approved, or a refund).
    """
    detail = customer_payment_detail(session, user, payment_id)
    check_has_receipt(detail)
    return detail
