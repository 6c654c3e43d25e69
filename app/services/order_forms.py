"""The order builder's lines as typed: their checks and live totals (no database).

The form is kept as strings so a page can be drawn again with the person's input and an
error beside each field. :func:`check_lines` turns it into lines ready to store, or
raises :class:`LinesInvalid` with every problem at once; :func:`preview_totals` adds up
the rows that are already valid with the same per-line, half-up tax the saved order uses.

Line fields are named ``line-<n>-<field>`` (n from 0) for ``product``, ``description``,
``quantity``, ``unit_price``, ``activation_date`` and ``frequency``; ``lines`` names the
form as a whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Final

from app.domain.errors import FieldsInvalid, InvalidInput
from app.domain.ids import parse_id
from app.domain.money import format_plain, parse_amount
from app.domain.orders import line_amounts
from app.domain.schedule import Frequency
from app.models import OrderLine, Product
from app.services.invoice_forms import MAX_LINES, check_description_and_quantity

FREQUENCIES: Final = tuple(f.value for f in Frequency)


class LinesInvalid(FieldsInvalid):
    """Every bad field of the order's lines, by field name (nothing was saved)."""


@dataclass(frozen=True)
class LineRow:
    """One line as typed; ``product`` is a product id or "" for a free line."""

    product: str = ""
    description: str = ""
    quantity: str = "1"
    unit_price: str = ""
    activation_date: str = ""
    frequency: str = Frequency.ONCE.value

    @property
    def blank(self) -> bool:
        """Nothing typed yet (the prefilled date and quantity do not count)."""
        typed = self.product.strip() or self.description.strip() or self.unit_price.strip()
        return not typed and self.quantity.strip() in ("", "1")


@dataclass(frozen=True)
class LinesForm:
    """The builder's rows as typed, nothing checked yet."""

    lines: tuple[LineRow, ...] = field(default_factory=lambda: (LineRow(),))

    @classmethod
    def blank(cls, as_of: date) -> LinesForm:
        """One empty line that activates on ``as_of``."""
        return cls((LineRow(activation_date=as_of.isoformat()),))

    @classmethod
    def from_fields(cls, fields: Mapping[str, Sequence[str]]) -> LinesForm:
        """The form from repeated fields (row n is the n-th value of each name)."""
        names = ("product", "description", "quantity", "unit_price", "activation_date")
        count = min(max([len(fields.get(name, ())) for name in names] + [1]), MAX_LINES)

        def nth(name: str, n: int, default: str = "") -> str:
            values = fields.get(name, ())
            return values[n].strip() if n < len(values) else default

        return cls(
            tuple(
                LineRow(
                    product=nth("product", n),
                    description=nth("description", n),
                    quantity=nth("quantity", n, "1"),
                    unit_price=nth("unit_price", n),
                    activation_date=nth("activation_date", n),
                    frequency=nth("frequency", n, Frequency.ONCE.value),
                )
                for n in range(count)
            )
        )

    @classmethod
    def from_lines(cls, lines: Sequence[OrderLine], currency: str, as_of: date) -> LinesForm:
        """The saved lines as the form shows them (one blank line when there are none)."""
        if not lines:
            return cls.blank(as_of)
        return cls(
            tuple(
                LineRow(
                    product=str(line.product_id or ""),
                    description=line.description,
                    quantity=str(line.quantity),
                    unit_price=format_plain(line.unit_amount, currency),
                    activation_date=line.activation_date.isoformat(),
                    frequency=line.frequency,
                )
                for line in lines
            )
        )

    def with_line_added(self, as_of: date) -> LinesForm:
        """The same rows and one more empty one (at most MAX_LINES)."""
        if len(self.lines) >= MAX_LINES:
            return self
        return replace(self, lines=(*self.lines, LineRow(activation_date=as_of.isoformat())))

    def without_line(self, index: int, as_of: date) -> LinesForm:
        """The same rows without row ``index`` (one blank row is always left)."""
        rows = tuple(row for n, row in enumerate(self.lines) if n != index)
        return replace(self, lines=rows or LinesForm.blank(as_of).lines)

    def edited(self, op: str, as_of: date) -> LinesForm:
        """Apply an "add" or "remove-<n>" button; anything else leaves the rows as they are."""
        if op == "add":
            return self.with_line_added(as_of)
        index = parse_id(op[7:]) if op.startswith("remove-") else None
        if index is not None:
            return self.without_line(index, as_of)
        return self


@dataclass(frozen=True)
class CheckedLine:
    """A valid line, ready to store (amounts in minor units of the order's currency)."""

    product_id: int | None
    description: str
    quantity: int
    unit_amount: int
    activation_date: date
    frequency: str
    amount: int  # before tax
    tax_amount: int


@dataclass(frozen=True)
class Totals:
    """What the valid rows add up to; ``line_amounts`` has None for a row not valid yet."""

    line_amounts: tuple[int | None, ...]
    subtotal: int
    tax: int

    @property
    def total(self) -> int:
        return self.subtotal + self.tax


def _line(
    row: LineRow,
    n: int,
    *,
    currency: str,
    rate_bp: int,
    products: Mapping[int, Product],
    as_of: date,
    errors: dict[str, str],
) -> CheckedLine | None:
    prefix = f"line-{n}-"
    before = len(errors)
    product = None
    if row.product.strip():
        text = row.product.strip()
        product_id = parse_id(text)
        product = products.get(product_id) if product_id is not None else None
        if product is None:
            errors[prefix + "product"] = "Choose one of your products, or none for a free line."
    description = row.description.strip() or (product.name if product else "")
    quantity = check_description_and_quantity(description, row.quantity, prefix, errors)
    unit = None
    if product is not None and not row.unit_price.strip():
        unit = product.unit_amount
    else:
        try:
            unit = parse_amount(
                row.unit_price, currency, field=prefix + "unit_price", allow_zero=True
            )
        except InvalidInput as exc:
            errors[prefix + "unit_price"] = exc.message
    day = None
    try:
        day = date.fromisoformat(row.activation_date.strip())
    except ValueError:
        errors[prefix + "activation_date"] = "Enter the activation date, such as 2026-03-31."
    else:
        if day < as_of:
            errors[prefix + "activation_date"] = f"Choose {as_of:%B %-d, %Y} or later."
    frequency = (product.frequency or Frequency.ONCE.value) if product else row.frequency.strip()
    if frequency not in FREQUENCIES:
        errors[prefix + "frequency"] = "Choose how often this line is charged."
    if len(errors) > before or unit is None or day is None:
        return None
    net, tax = line_amounts(quantity, unit, rate_bp)
    return CheckedLine(
        product_id=product.id if product else None,
        description=description,
        quantity=quantity,
        unit_amount=unit,
        activation_date=day,
        frequency=frequency,
        amount=net,
        tax_amount=tax,
    )


def check_lines(
    form: LinesForm,
    *,
    currency: str,
    rate_bp: int,
    products: Mapping[int, Product],
    as_of: date,
) -> list[CheckedLine]:
    """The form's non-blank rows, checked, with their net amount and tax.

    ``products`` are the partner's active products in ``currency`` by id; a row with a
    product takes the product's frequency, and its name and price when those are left
    empty. Raises LinesInvalid (every problem at once) for: no line; an unknown product;
    no description or one over 300 characters; a quantity that is not a whole number from
    1 to 1,000,000; a price that is not an amount of ``currency`` (negative included); an
    activation date that is not a date or is before ``as_of``; a free line's frequency
    that is not a known one; an order total of zero.
    """
    errors: dict[str, str] = {}
    lines = []
    for n, row in enumerate(form.lines):
        if row.blank:
            continue
        line = _line(
            row, n, currency=currency, rate_bp=rate_bp, products=products, as_of=as_of,
            errors=errors,
        )  # fmt: skip
        if line is not None:
            lines.append(line)
    if not errors and not lines:
        errors["lines"] = "Add at least one line."
    if not errors and sum(line.amount + line.tax_amount for line in lines) <= 0:
        errors["lines"] = "The order total must be above zero."
    if errors:
        raise LinesInvalid(errors)
    return lines


def preview_totals(
    form: LinesForm,
    *,
    currency: str,
    rate_bp: int,
    products: Mapping[int, Product],
    as_of: date,
) -> Totals:
    """Net amount per row and the totals of the rows valid so far (raises nothing).

    Tax is computed per line and rounded half-up, exactly as :func:`check_lines` does.
    """
    amounts: list[int | None] = []
    subtotal = tax = 0
    for n, row in enumerate(form.lines):
        line = None
        if not row.blank:
            line = _line(
                row, n, currency=currency, rate_bp=rate_bp, products=products, as_of=as_of,
                errors={},
            )  # fmt: skip
        if line is None:
            amounts.append(None)
            continue
        amounts.append(line.amount)
        subtotal += line.amount
        tax += line.tax_amount
    return Totals(tuple(amounts), subtotal, tax)
