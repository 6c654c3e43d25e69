"""The hand-made invoice form: raw lines and dates, their checks, and live totals.

The form is kept as typed (strings) so a page can be re-rendered with the person's input
and an error beside each field. :func:`check_invoice_form` turns it into lines the
invoices service accepts, or raises :class:`InvoiceInvalid` with every problem at once;
:func:`preview_totals` computes the totals of the lines that are already valid, with the
same per-line rounding the saved invoice will use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Final

from app.domain.errors import FieldsInvalid, InvalidInput
from app.domain.money import parse_amount
from app.services.invoices import LineInput, line_amounts

MAX_LINES: Final = 50
MAX_DESCRIPTION: Final = 300
MAX_QUANTITY: Final = 1_000_000
DEFAULT_TERMS_DAYS: Final = 30
_QUANTITY: Final = re.compile(r"[0-9]{1,7}")


class InvoiceInvalid(FieldsInvalid):
    """An invoice form with bad fields; ``errors`` maps field name to message.

    Line fields are named ``line-<n>-description``, ``line-<n>-quantity`` and
    ``line-<n>-unit_price`` (n from 0); the others ``issue_date``, ``due_date`` and
    ``lines`` (the form as a whole).
    """


@dataclass(frozen=True)
class LineRow:
    """One line of the form as typed."""

    description: str = ""
    quantity: str = "1"
    unit_price: str = ""

    @property
    def blank(self) -> bool:
        return not (self.description.strip() or self.unit_price.strip()) and self.quantity in (
            "",
            "1",
        )


@dataclass(frozen=True)
class InvoiceForm:
    """The invoice form as typed: raw strings, nothing checked yet."""

    issue_date: str = ""
    due_date: str = ""
    memo: str = ""
    lines: tuple[LineRow, ...] = field(default_factory=lambda: (LineRow(),))

    @classmethod
    def blank(cls, as_of: date) -> InvoiceForm:
        """A new invoice: issued today, due in 30 days, one empty line."""
        due = as_of + timedelta(days=DEFAULT_TERMS_DAYS)
        return cls(issue_date=as_of.isoformat(), due_date=due.isoformat())

    @classmethod
    def from_fields(
        cls,
        *,
        issue_date: str,
        due_date: str,
        memo: str,
        descriptions: list[str],
        quantities: list[str],
        unit_prices: list[str],
    ) -> InvoiceForm:
        """The form from repeated line fields (row n is the n-th of each list)."""
        count = min(max(len(descriptions), len(quantities), len(unit_prices), 1), MAX_LINES)

        def nth(values: list[str], n: int, default: str = "") -> str:
            return values[n].strip() if n < len(values) else default

        rows = tuple(
            LineRow(nth(descriptions, n), nth(quantities, n, "1"), nth(unit_prices, n))
            for n in range(count)
        )
        return cls(issue_date.strip(), due_date.strip(), memo.strip()[:500], rows)

    def with_line_added(self) -> InvoiceForm:
        """The same form with one more empty line (at most MAX_LINES)."""
        if len(self.lines) >= MAX_LINES:
            return self
        return replace(self, lines=(*self.lines, LineRow()))

    def without_line(self, index: int) -> InvoiceForm:
        """The same form without line ``index`` (always keeps one line)."""
        rows = tuple(row for n, row in enumerate(self.lines) if n != index)
        return replace(self, lines=rows or (LineRow(),))


@dataclass(frozen=True)
class CheckedInvoice:
    """A valid form: lines and dates the invoices service accepts."""

    lines: list[LineInput]
    issue_date: date
    due_date: date
    memo: str


@dataclass(frozen=True)
class Totals:
    """What the valid lines of a form add up to (minor units)."""

    line_amounts: tuple[int | None, ...]  # per row; None for a row not valid yet
    subtotal: int
    tax: int

    @property
    def total(self) -> int:
        return self.subtotal + self.tax


def check_description_and_quantity(
    description: str, quantity_text: str, prefix: str, errors: dict[str, str]
) -> int:
    """Check a line's description and quantity (invoices and orders alike); add each
    problem to ``errors`` under ``<prefix>description`` / ``<prefix>quantity``.

    Returns the quantity (0 when it is not a whole number). Raises nothing.
    """
    if not description:
        errors[prefix + "description"] = "Describe what this line is for."
    elif len(description) > MAX_DESCRIPTION:
        errors[prefix + "description"] = f"Use at most {MAX_DESCRIPTION} characters."
    if not _QUANTITY.fullmatch(quantity_text.strip()):
        errors[prefix + "quantity"] = "Enter a whole number, such as 1."
        return 0
    quantity = int(quantity_text.strip())
    if not 1 <= quantity <= MAX_QUANTITY:
        errors[prefix + "quantity"] = f"Enter a quantity from 1 to {MAX_QUANTITY:,}."
    return quantity


def _line(row: LineRow, n: int, currency: str, errors: dict[str, str]) -> LineInput | None:
    prefix = f"line-{n}-"
    description = row.description.strip()
    quantity = check_description_and_quantity(description, row.quantity, prefix, errors)
    unit = None
    try:
        unit = parse_amount(row.unit_price, currency, field=prefix + "unit_price", allow_zero=True)
    except InvalidInput as exc:
        errors[prefix + "unit_price"] = exc.message
    if any(key.startswith(prefix) for key in errors) or unit is None:
        return None
    return LineInput(description=description, quantity=quantity, unit_amount=unit)


def _day(text: str, name: str, label: str, errors: dict[str, str]) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        errors[name] = f"Enter the {label} as a date, such as 2026-03-31."
        return None


def check_invoice_form(
    form: InvoiceForm, *, currency: str, rate_bp: int, as_of: date
) -> CheckedInvoice:
    """The form's lines and dates, checked.

    Empty rows are ignored. Raises InvoiceInvalid (every problem at once) for: no line,
    a line without a description, a quantity that is not a whole number from 1, a unit
    price that is not an amount of ``currency`` (negative included), a total of zero,
    an issue date after ``as_of``, or a due date before the issue date.
    """
    errors: dict[str, str] = {}
    lines: list[LineInput] = []
    for n, row in enumerate(form.lines):
        if row.blank:
            continue
        line = _line(row, n, currency, errors)
        if line is not None:
            lines.append(line)
    if not errors and not lines:
        errors["lines"] = "Add at least one line."
    issue = _day(form.issue_date, "issue_date", "issue date", errors)
    due = _day(form.due_date, "due_date", "due date", errors)
    if issue is not None and issue > as_of:
        errors["issue_date"] = "The issue date cannot be after today."
    if issue is not None and due is not None and due < issue:
        errors["due_date"] = "The due date cannot be before the issue date."
    if not errors and preview_totals(form, currency=currency, rate_bp=rate_bp).total <= 0:
        errors["lines"] = "The invoice total must be above zero."
    if errors:
        raise InvoiceInvalid(errors)
    assert issue is not None and due is not None
    return CheckedInvoice(lines=lines, issue_date=issue, due_date=due, memo=form.memo)


def preview_totals(form: InvoiceForm, *, currency: str, rate_bp: int) -> Totals:
    """Net amount per row and the totals of the rows that are valid so far.

    Tax is computed per line and rounded half-up, exactly as the saved invoice will be.
    """
    amounts: list[int | None] = []
    subtotal = tax = 0
    for n, row in enumerate(form.lines):
        line = None if row.blank else _line(row, n, currency, {})
        if line is None:
            amounts.append(None)
            continue
        _, net, line_tax = line_amounts(
            line.quantity, line.unit_amount, rate_bp, prices_include_tax=False
        )
        amounts.append(net)
        subtotal += net
        tax += line_tax
    return Totals(tuple(amounts), subtotal, tax)
