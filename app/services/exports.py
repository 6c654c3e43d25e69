"""CSV exports of a partner's invoices and payments for a date range, streamed.

Each export checks the user and the range first (so errors come before any byte is
sent), then returns an iterator of CSV lines read with ``yield_per``: one statement
whatever the number of rows, and memory that does not grow with them.

Columns: amounts are decimal strings in the currency's units ("1234.50", "-5.00",
"1235" for JPY) with the currency in its own column; dates are ISO ``YYYY-MM-DD``.
Invoices are in the range by issue date; payments by their day (``received_on``, else the
settled or created instant in the partner's timezone, as on the dashboard). Refunds are
negative, so approved charges, manual payments and refunds add up to the money kept. Text that a
spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``) is prefixed
with an apostrophe.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from app.domain.errors import FieldsInvalid
from app.domain.money import format_plain
from app.models import CustomerAccount, Invoice, Payment, PaymentKind, User
from app.services.dashboard import payment_day_between
from app.services.tenancy import partner_of

INVOICE_HEADER: Final = (
    "number",
    "status",
    "issue_date",
    "due_date",
    "customer",
    "customer_email",
    "currency",
    "subtotal",
    "tax",
    "total",
    "amount_paid",
    "balance",
)
PAYMENT_HEADER: Final = (
    "id",
    "date",
    "customer",
    "customer_email",
    "invoice",
    "kind",
    "method",
    "status",
    "currency",
    "amount",
    "reference",
    "decline_reason",
)
BATCH: Final = 500
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


class ExportRangeInvalid(FieldsInvalid):
    """A bad date range; ``errors`` maps the field (``from``/``to``) to its message."""


@dataclass(frozen=True)
class DateRange:
    """Days ``start`` through ``end``, both included."""

    start: date
    end: date

    @property
    def slug(self) -> str:
        return f"{self.start.isoformat()}-to-{self.end.isoformat()}"


def parse_range(start: str, end: str) -> DateRange:
    """The range typed as ``from`` and ``to`` (``YYYY-MM-DD``, both days included).

    Raises:
        ExportRangeInvalid: a date is missing or malformed, or ``to`` is before ``from``;
            ``errors`` names each bad field.
    """
    errors: dict[str, str] = {}
    days: dict[str, date] = {}
    for field, text, name in (("from", start, "start"), ("to", end, "end")):
        try:
            days[field] = date.fromisoformat(text.strip())
        except ValueError:
            errors[field] = f"Enter the {name} date as YYYY-MM-DD, such as 2026-03-31."
    if not errors and days["to"] < days["from"]:
        errors["to"] = "The end date must be on or after the start date."
    if errors:
        raise ExportRangeInvalid(errors)
    return DateRange(days["from"], days["to"])


def invoice_csv(session: Session, user: User, period: DateRange) -> Iterator[str]:
    """CSV lines (header first) of the partner's invoices issued within ``period``.

    Raises:
        NotFound: ``user`` is not a partner user (raised now, before any line).
    """
    partner = partner_of(session, user)
    query = (
        select(Invoice, CustomerAccount.name, CustomerAccount.email)
        .join(CustomerAccount, CustomerAccount.id == Invoice.customer_account_id)
        .where(
            Invoice.partner_id == partner.id,
            col(Invoice.issue_date) >= period.start,
            col(Invoice.issue_date) <= period.end,
        )
        .order_by(Invoice.issue_date, Invoice.series, Invoice.sequence)
        .execution_options(yield_per=BATCH)
    )

    def rows() -> Iterator[list[str]]:
        for inv, name, email in session.exec(query):
            money = [inv.subtotal, inv.tax, inv.total, inv.amount_paid, inv.balance]
            yield [
                _text(inv.number),
                inv.status,
                inv.issue_date.isoformat(),
                inv.due_date.isoformat(),
                _text(name),
                _text(email),
                inv.currency,
                *(format_plain(amount, inv.currency) for amount in money),
            ]

    return csv_lines(INVOICE_HEADER, rows())


def payment_csv(session: Session, user: User, period: DateRange) -> Iterator[str]:
    """CSV lines (header first) of the partner's payments whose day is within ``period``.

    Every kind and status is listed; refunds have negative amounts.

    Raises:
        NotFound: ``user`` is not a partner user (raised now, before any line).
    """
    partner = partner_of(session, user)
    zone = ZoneInfo(partner.timezone)
    query = (
        select(Payment, CustomerAccount.name, CustomerAccount.email, Invoice.number)
        .outerjoin(CustomerAccount, CustomerAccount.id == Payment.customer_account_id)
        .outerjoin(Invoice, Invoice.id == Payment.invoice_id)
        .where(
            Payment.partner_id == partner.id,
            payment_day_between(period.start, period.end + timedelta(days=1), partner.timezone),
        )
        .order_by(Payment.id)
        .execution_options(yield_per=BATCH)
    )

    def rows() -> Iterator[list[str]]:
        for pay, name, email, number in session.exec(query):
            day = pay.received_on or (pay.settled_at or pay.created_at).astimezone(zone).date()
            amount = -pay.amount if pay.kind == PaymentKind.REFUND else pay.amount
            yield [
                str(pay.id),
                day.isoformat(),
                _text(name or ""),
                _text(email or ""),
                _text(number or ""),
                pay.kind,
                pay.method,
                pay.status,
                pay.currency,
                format_plain(amount, pay.currency),
                _text(pay.reference or pay.gateway_reference),
                _text(pay.decline_reason),
            ]

    return csv_lines(PAYMENT_HEADER, rows())


def csv_lines(header: Iterable[str], rows: Iterable[list[str]]) -> Iterator[str]:
    """Format ``header`` then each row as one CSV line (RFC 4180, CRLF). Raises nothing.

    The first line starts with a UTF-8 byte order mark: without it Excel reads the file
    in the machine's legacy code page and shows "Köln" as "KÃ¶ln".
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(list(header))
    yield "\ufeff" + _drain(buffer)
    for row in rows:
        writer.writerow(row)
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    """What the writer put in ``buffer`` since the last call, emptying it."""
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _text(value: str) -> str:
    """Keep spreadsheets from running a cell as a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value
