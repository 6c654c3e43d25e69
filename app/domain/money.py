"""Money as an integer count of minor units plus an ISO 4217 currency code.

This is the only module that knows how many minor-unit digits a currency has. Everything
else passes ``int`` amounts around with their currency and asks here to parse, format,
convert or split them. No float anywhere; ``Decimal`` appears only at the edges
(``to_decimal``/``from_decimal`` and Babel formatting).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from functools import cache
from typing import Final

from babel import Locale, UnknownLocaleError
from babel.numbers import (
    NumberPattern,
    get_currency_precision,
    get_currency_symbol,
    list_currencies,
)

from app.domain.errors import CurrencyMismatch, InvalidInput

__all__ = [
    "MAX_MAJOR_UNITS",
    "Money",
    "allocate",
    "exponent",
    "format_money",
    "format_plain",
    "from_decimal",
    "parse_amount",
    "tax_amount",
    "to_decimal",
]

# parse_amount refuses anything at or above this many major units. It is deliberately
# currency-neutral and generous (some currencies trade at ~10^6 per dollar); its job is to
# stop typos and overflow, not to enforce business limits.
MAX_MAJOR_UNITS: Final = 10**12

# CLDR's "digits" (what Babel reports) differ from the ISO 4217 minor unit for these
# currencies; gateways and ledgers follow ISO, so ISO wins.
_ISO_CORRECTIONS: Final[dict[str, int]] = {
    "AFN": 2,
    "ALL": 2,
    "IQD": 3,
    "IRR": 2,
    "KPW": 2,
    "LAK": 2,
    "LBP": 2,
    "MGA": 2,
    "MMK": 2,
    "RSD": 2,
    "SLL": 2,
    "SOS": 2,
    "SYP": 2,
    "YER": 2,
}

# ISO 4217 gives these codes no minor unit ("N.A."): metals, funds, testing, no currency.
_NOT_MONEY: Final = frozenset(
    {"XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"}
)

_CODE_RE: Final = re.compile(r"[A-Z]{3}")
_NUMBER_RE: Final = re.compile(
    r"(?P<int>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)?(?:\.(?P<frac>[0-9]*))?", re.ASCII
)
_MAX_INPUT_LENGTH: Final = 64
_MINUS_SIGNS: Final = ("-", "\u2212")


@cache
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies()) - _NOT_MONEY


def exponent(currency: str) -> int:
    """Return the number of minor-unit digits of ``currency`` (JPY 0, USD 2, BHD 3).

    Follows ISO 4217. Codes must be three upper-case letters.

    Raises:
        InvalidInput: the code is not a known currency (field ``currency``).
    """
    if not isinstance(currency, str) or not _CODE_RE.fullmatch(currency):
        raise InvalidInput("Choose a currency such as USD or EUR.", "currency")
    if currency not in _known_currencies():
        raise InvalidInput(f"{currency} is not a currency we can bill in.", "currency")
    corrected = _ISO_CORRECTIONS.get(currency)
    return corrected if corrected is not None else get_currency_precision(currency)


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: ``amount`` minor units of ``currency``.

    Equality never raises (amounts in different currencies are simply unequal); ordering
    and arithmetic across currencies raise ``CurrencyMismatch``.
    """

    amount: int
    currency: str

    def __post_init__(self) -> None:
        # bool is an int subclass; True dollars is always a bug.
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise TypeError(f"Money amount must be int minor units, not {type(self.amount)}")
        exponent(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Return zero in ``currency``. Raises InvalidInput for an unknown currency."""
        return cls(0, currency)

    @property
    def is_zero(self) -> bool:
        """True when the amount is exactly zero."""
        return self.amount == 0

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(
                f"Cannot combine {self.currency} with {other.currency}.", "currency"
            )

    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __mul__(self, factor: object) -> Money:
        # Only whole quantities: a fractional factor needs an explicit rounding decision.
        if not isinstance(factor, int) or isinstance(factor, bool):
            return NotImplemented
        return Money(self.amount * factor, self.currency)

    __rmul__ = __mul__

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __pos__(self) -> Money:
        return self

    def __abs__(self) -> Money:
        return Money(abs(self.amount), self.currency)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount <= other.amount

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount > other.amount

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount >= other.amount

    def __str__(self) -> str:
        return format_money(self.amount, self.currency)


def _example(currency: str, *, grouped: bool = False) -> str:
    """An example amount for messages: 25.00, 25 or 25.000 (1,234.50 when ``grouped``)."""
    exp = exponent(currency)
    if not grouped:
        return format_plain(25 * 10**exp, currency)
    whole, dot, frac = format_plain(123_450 * 10**exp // 100, currency).partition(".")
    return f"{int(whole):,}{dot}{frac}"


@cache
def _tolerated_affixes(currency: str) -> tuple[str, ...]:
    symbol = get_currency_symbol(currency, "en_US")
    affixes = {currency, symbol}
    # "$25" in a CAD or AUD form means the form's dollars, whose en symbol is "CA$"/"A$".
    if symbol.endswith("$"):
        affixes.add("$")
    # Longest first so "CA$" is stripped before "$" would leave a stray "CA".
    return tuple(sorted(affixes, key=len, reverse=True))


def _strip_affix(text: str, affixes: tuple[str, ...]) -> str:
    for affix in affixes:
        if text.startswith(affix):
            return text[len(affix) :].strip()
        if text.endswith(affix):
            return text[: -len(affix)].strip()
    return text


def _split_sign(text: str, affixes: tuple[str, ...]) -> tuple[bool, str]:
    """Accept "-$25", "$-25", "-25 USD" and "+25": a sign before or after the symbol."""
    negative = False
    text = _strip_affix(text, affixes)
    if text[:1] in (*_MINUS_SIGNS, "+"):
        negative = text[0] in _MINUS_SIGNS
        text = _strip_affix(text[1:].strip(), affixes)
    return negative, text


def parse_amount(
    text: str,
    currency: str,
    *,
    field: str = "amount",
    allow_zero: bool = False,
    allow_negative: bool = False,
) -> int:
    """Parse form input such as "1,234.50", " 25 " or "$25.00" into minor units.

    Accepts "." as the decimal point and "," as a thousands separator in groups of three,
    a leading sign, and this currency's code or symbol before or after the number.

    Raises:
        InvalidInput: (with ``field``) the text is empty or not a number, has more
            decimals than the currency allows, misplaces thousands separators, is
            negative (unless ``allow_negative``), zero (unless ``allow_zero``), or not
            below ``MAX_MAJOR_UNITS``; or the currency is unknown (field ``currency``).
    """
    exp = exponent(currency)
    example = f"Enter an amount such as {_example(currency)}."
    cleaned = (text or "").strip()
    if not cleaned or len(cleaned) > _MAX_INPUT_LENGTH:
        raise InvalidInput(example, field)
    negative, number = _split_sign(cleaned, _tolerated_affixes(currency))
    match = _NUMBER_RE.fullmatch(number)
    if match is None:
        if exp > 0 and re.fullmatch(rf"[0-9]+,[0-9]{{1,{exp}}}", number, re.ASCII):
            # "12,50" is a decimal comma, not a misplaced separator: say what to do.
            raise InvalidInput(f"Use a point for decimals, as in {_example(currency)}.", field)
        if re.fullmatch(r"[0-9,]+(?:\.[0-9]*)?", number, re.ASCII) and "," in number:
            raise InvalidInput(
                f"Check the thousands separators, as in {_example(currency, grouped=True)}.",
                field,
            )
        raise InvalidInput(example, field)
    whole, frac = match["int"] or "", match["frac"] or ""
    if not whole and not frac:
        raise InvalidInput(example, field)
    if len(frac) > exp:
        if exp == 0:
            raise InvalidInput(f"Enter a whole amount, such as {_example(currency)}.", field)
        raise InvalidInput(f"Use at most {exp} decimal places, as in {_example(currency)}.", field)
    major = int(whole.replace(",", "") or "0")
    if major >= MAX_MAJOR_UNITS:
        raise InvalidInput("That amount is too large.", field)
    amount = major * 10**exp + int(frac.ljust(exp, "0") or "0")
    if negative:
        amount = -amount
    if amount < 0 and not allow_negative:
        raise InvalidInput("Enter an amount that is not negative.", field)
    if amount == 0 and not allow_zero:
        raise InvalidInput("Enter an amount above zero.", field)
    return amount


def format_plain(amount: int, currency: str) -> str:
    """Format minor units without symbol or grouping, for form values: "1234.50", "-5".

    Raises:
        InvalidInput: the currency is unknown.
    """
    exp = exponent(currency)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**exp)
    if exp == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{exp}d}"


@cache
def _currency_pattern(locale: str, exp: int) -> tuple[Locale, NumberPattern]:
    try:
        parsed = Locale.parse(locale)
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise InvalidInput(f"Unknown locale {locale!r}.", "locale") from exc
    # Babel would use CLDR's digits; ours are ISO's, so force them on a private copy.
    pattern = copy.copy(parsed.currency_formats["standard"])
    pattern.frac_prec = (exp, exp)
    return parsed, pattern


def format_money(amount: int, currency: str, locale: str = "en_US") -> str:
    """Format minor units for people with Babel: "$1,234.50", "¥1,235", "1.234,50 €".

    The de_DE output separates the symbol with a no-break space, as CLDR specifies.

    Raises:
        InvalidInput: the currency (field ``currency``) or locale (field ``locale``) is
            unknown.
    """
    exp = exponent(currency)
    parsed, pattern = _currency_pattern(locale, exp)
    return pattern.apply(
        to_decimal(amount, currency), parsed, currency=currency, currency_digits=False
    )


def to_decimal(amount: int, currency: str) -> Decimal:
    """Return minor units as an exact Decimal in major units (1234, "USD" -> 12.34).

    Raises:
        InvalidInput: the currency is unknown.
    """
    return Decimal(amount).scaleb(-exponent(currency))


def from_decimal(value: Decimal, currency: str) -> int:
    """Convert a Decimal in major units to minor units, rounding half-up.

    Half-up means ties move away from zero: 0.005 USD -> 1, -0.005 USD -> -1.

    Raises:
        TypeError: ``value`` is not a Decimal (floats are refused on purpose).
        InvalidInput: ``value`` is NaN or infinite, or the currency is unknown.
    """
    if not isinstance(value, Decimal):
        raise TypeError(f"from_decimal needs a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise InvalidInput("Enter a finite amount.", "amount")
    exp = exponent(currency)
    with localcontext() as ctx:
        ctx.prec = max(ctx.prec, value.adjusted() + exp + 10)
        return int(value.scaleb(exp).to_integral_value(rounding=ROUND_HALF_UP))


def tax_amount(net: int, rate_bp: int) -> int:
    """Return the tax on one line of ``net`` minor units at ``rate_bp`` basis points.

    1900 bp is 19 %. Rounds half-up to the minor unit and is symmetric, so a
    cancellation line gets exactly the negated tax: ``tax_amount(-x, r) == -tax_amount(x, r)``.

    Raises:
        InvalidInput: ``rate_bp`` is negative (field ``tax_rate``).
    """
    if rate_bp < 0:
        raise InvalidInput("A tax rate cannot be negative.", "tax_rate")
    # floor(x + 1/2) in integers: (2 * |net| * rate + 10_000) // 20_000.
    magnitude = (2 * abs(net) * rate_bp + 10_000) // 20_000
    return -magnitude if net < 0 else magnitude


def tax_included_in(gross: int, rate_bp: int) -> int:
    """Return the tax contained in a tax-inclusive ``gross`` amount at ``rate_bp``.

    ``gross * rate / (1 + rate)`` rounded half-up, symmetric for negatives; the net part
    is ``gross - tax_included_in(gross, rate_bp)``, so net and tax always add up to gross.

    Raises:
        InvalidInput: ``rate_bp`` is negative (field ``tax_rate``).
    """
    if rate_bp < 0:
        raise InvalidInput("A tax rate cannot be negative.", "tax_rate")
    denominator = 10_000 + rate_bp
    magnitude = (2 * abs(gross) * rate_bp + denominator) // (2 * denominator)
    return -magnitude if gross < 0 else magnitude


def allocate(amount: int, parts: int) -> list[int]:
    """Split ``amount`` into ``parts`` shares that sum to it and differ by at most 1.

    Larger shares come first; a negative amount splits as the negation of its magnitude.

    Raises:
        InvalidInput: ``parts`` is below 1 (field ``parts``).
    """
    if parts < 1:
        raise InvalidInput("Split into at least one part.", "parts")
    base, remainder = divmod(abs(amount), parts)
    shares = [base + 1] * remainder + [base] * (parts - remainder)
    return [-s for s in shares] if amount < 0 else shares
