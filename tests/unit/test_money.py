"""Money: exponents, parsing form input, formatting, arithmetic, tax and splitting."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.errors import CurrencyMismatch, InvalidInput
from app.domain.money import (
    MAX_MAJOR_UNITS,
    Money,
    allocate,
    exponent,
    format_money,
    format_plain,
    from_decimal,
    parse_amount,
    tax_amount,
    to_decimal,
)

CURRENCIES = ["USD", "EUR", "JPY", "BHD", "KWD", "GBP", "CLF", "IQD", "KRW", "CAD"]


# --- exponents ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "digits"),
    [("JPY", 0), ("KRW", 0), ("USD", 2), ("EUR", 2), ("BHD", 3), ("KWD", 3), ("CLF", 4)],
)
def test_how_many_minor_digits_does_each_currency_have(currency: str, digits: int) -> None:
    assert exponent(currency) == digits


@pytest.mark.parametrize(("currency", "digits"), [("IQD", 3), ("IRR", 2), ("RSD", 2)])
def test_does_iso_4217_win_where_cldr_disagrees(currency: str, digits: int) -> None:
    assert exponent(currency) == digits


@pytest.mark.parametrize("currency", ["ZZZ", "usd", "US", "", "XXX", "XAU", "DOLLARS"])
def test_is_an_unknown_currency_refused(currency: str) -> None:
    with pytest.raises(InvalidInput) as err:
        exponent(currency)
    assert err.value.field == "currency"


# --- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "expected"),
    [
        ("1,234.50", "USD", 123450),
        ("1234.5", "USD", 123450),
        (" 25 ", "USD", 2500),
        ("$25.00", "USD", 2500),
        ("$ 25", "USD", 2500),
        ("25 USD", "USD", 2500),
        ("USD 25", "USD", 2500),
        ("0.01", "USD", 1),
        (".5", "USD", 50),
        ("5.", "USD", 500),
        ("1,234,567.89", "USD", 123456789),
        ("25\u00a0€", "EUR", 2500),
        ("€1,000", "EUR", 100000),
        ("1,235", "JPY", 1235),
        ("¥1235", "JPY", 1235),
        ("1.234", "BHD", 1234),
        ("1.2", "BHD", 1200),
        ("12", "BHD", 12000),
        ("CA$5", "CAD", 500),
        ("$5", "CAD", 500),
    ],
)
def test_does_good_form_input_parse_to_minor_units(text: str, currency: str, expected: int) -> None:
    assert parse_amount(text, currency) == expected


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("", "USD", "Enter an amount such as 25.00."),
        ("   ", "USD", "Enter an amount such as 25.00."),
        ("abc", "USD", "Enter an amount such as 25.00."),
        ("1e5", "USD", "Enter an amount such as 25.00."),
        ("25.00.00", "USD", "Enter an amount such as 25.00."),
        (".", "USD", "Enter an amount such as 25.00."),
        ("€25", "USD", "Enter an amount such as 25.00."),
        ("NaN", "USD", "Enter an amount such as 25.00."),
        ("\u0661\u0662", "USD", "Enter an amount such as 25.00."),
        ("1" * 100, "USD", "Enter an amount such as 25.00."),
        ("", "JPY", "Enter an amount such as 25."),
        ("1.234", "USD", "Use at most 2 decimal places, as in 25.00."),
        ("1.2345", "BHD", "Use at most 3 decimal places, as in 25.000."),
        ("12.5", "JPY", "Enter a whole amount, such as 25."),
        ("1,23.00", "USD", "Check the thousands separators, as in 1,234.50."),
        ("1,2345", "USD", "Check the thousands separators, as in 1,234.50."),
        (",123", "USD", "Check the thousands separators, as in 1,234.50."),
        ("12,34", "JPY", "Check the thousands separators, as in 1,234."),
        ("12,50", "EUR", "Use a point for decimals, as in 25.00."),
        ("-5", "USD", "Enter an amount that is not negative."),
        ("-$5", "USD", "Enter an amount that is not negative."),
        ("0", "USD", "Enter an amount above zero."),
        ("0.00", "USD", "Enter an amount above zero."),
        ("1,000,000,000,000", "USD", "That amount is too large."),
    ],
)
def test_is_bad_form_input_refused_with_a_plain_message(
    text: str, currency: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_amount(text, currency, field="price")
    assert err.value.message == message
    assert err.value.field == "price"


def test_can_a_negative_amount_be_allowed() -> None:
    assert parse_amount("-$25.50", "USD", allow_negative=True) == -2550
    assert parse_amount("$-25.50", "USD", allow_negative=True) == -2550
    assert parse_amount("\u22121", "USD", allow_negative=True) == -100


def test_can_zero_be_allowed() -> None:
    assert parse_amount("0", "USD", allow_zero=True) == 0


def test_is_the_largest_accepted_amount_just_below_the_limit() -> None:
    assert parse_amount(str(MAX_MAJOR_UNITS - 1), "JPY") == MAX_MAJOR_UNITS - 1


def test_does_parsing_refuse_an_unknown_currency() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_amount("25", "ZZZ")
    assert err.value.field == "currency"


# --- formatting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        (123450, "USD", "en_US", "$1,234.50"),
        (-500, "USD", "en_US", "-$5.00"),
        (0, "USD", "en_US", "$0.00"),
        (1235, "JPY", "en_US", "¥1,235"),
        (1234, "BHD", "en_US", "BHD1.234"),
        (1234, "IQD", "en_US", "IQD1.234"),
        (123450, "EUR", "de_DE", "1.234,50\u00a0€"),
        (123450, "USD", "de_DE", "1.234,50\u00a0$"),
        (1235, "JPY", "de_DE", "1.235\u00a0¥"),
    ],
)
def test_does_money_format_for_people_by_locale(
    amount: int, currency: str, locale: str, expected: str
) -> None:
    assert format_money(amount, currency, locale) == expected


def test_does_an_unknown_locale_raise_invalid_input() -> None:
    with pytest.raises(InvalidInput) as err:
        format_money(100, "USD", "xx_NOPE")
    assert err.value.field == "locale"


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (123450, "USD", "1234.50"),
        (5, "USD", "0.05"),
        (-5, "USD", "-0.05"),
        (1235, "JPY", "1235"),
        (1234, "BHD", "1.234"),
        (1, "CLF", "0.0001"),
    ],
)
def test_does_plain_format_suit_form_values(amount: int, currency: str, expected: str) -> None:
    assert format_plain(amount, currency) == expected


def test_does_str_of_money_format_it() -> None:
    assert str(Money(2500, "USD")) == "$25.00"


# --- decimals ----------------------------------------------------------------------------


def test_does_to_decimal_respect_the_exponent() -> None:
    assert to_decimal(1234, "USD") == Decimal("12.34")
    assert to_decimal(1234, "JPY") == Decimal("1234")
    assert to_decimal(1234, "BHD") == Decimal("1.234")


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [
        ("12.345", "USD", 1235),
        ("12.344", "USD", 1234),
        ("-12.345", "USD", -1235),
        ("0.005", "USD", 1),
        ("-0.005", "USD", -1),
        ("0.5", "JPY", 1),
        ("1.2345", "BHD", 1235),
    ],
)
def test_does_from_decimal_round_half_up_away_from_zero(
    value: str, currency: str, expected: int
) -> None:
    assert from_decimal(Decimal(value), currency) == expected


def test_does_from_decimal_refuse_floats_and_nan() -> None:
    with pytest.raises(TypeError):
        from_decimal(1.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        from_decimal(Decimal("NaN"), "USD")


# --- arithmetic --------------------------------------------------------------------------


def test_does_money_add_subtract_and_negate_in_one_currency() -> None:
    a, b = Money(1050, "USD"), Money(250, "USD")
    assert a + b == Money(1300, "USD")
    assert a - b == Money(800, "USD")
    assert -a == Money(-1050, "USD")
    assert b * 3 == 3 * b == Money(750, "USD")
    assert b < a and a > b and a >= a and b <= b
    assert Money.zero("JPY").is_zero and not a.is_zero


def test_does_mixing_currencies_raise_currency_mismatch() -> None:
    usd, eur = Money(100, "USD"), Money(100, "EUR")
    for operation in (
        lambda: usd + eur,
        lambda: usd - eur,
        lambda: usd < eur,
        lambda: usd <= eur,
        lambda: usd > eur,
        lambda: usd >= eur,
    ):
        with pytest.raises(CurrencyMismatch):
            operation()


def test_are_equal_amounts_in_different_currencies_unequal_without_raising() -> None:
    assert Money(100, "USD") != Money(100, "EUR")
    assert len({Money(100, "USD"), Money(100, "USD"), Money(100, "EUR")}) == 2


def test_does_money_refuse_float_amounts_and_unknown_currencies() -> None:
    with pytest.raises(TypeError):
        Money(1.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(True, "USD")
    with pytest.raises(InvalidInput):
        Money(1, "ZZZ")
    with pytest.raises(TypeError):
        Money(1, "USD") + 1  # type: ignore[operator]


def test_is_money_immutable() -> None:
    m = Money(1, "USD")
    with pytest.raises(AttributeError):
        m.amount = 2  # type: ignore[misc]


# --- tax ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("net", "rate_bp", "expected"),
    [
        (10000, 1900, 1900),
        (1050, 1900, 200),  # 199.5 -> 200
        (1049, 1900, 199),  # 199.31 -> 199
        (50, 1000, 5),
        (5, 1000, 1),  # 0.5 -> 1
        (4, 1000, 0),
        (-1050, 1900, -200),
        (-5, 1000, -1),
        (0, 1900, 0),
        (12345, 0, 0),
    ],
)
def test_is_tax_rounded_half_up_per_line(net: int, rate_bp: int, expected: int) -> None:
    assert tax_amount(net, rate_bp) == expected


@given(st.integers(-(10**15), 10**15), st.integers(0, 10_000))
def test_is_tax_on_a_cancellation_line_the_exact_negation(net: int, rate_bp: int) -> None:
    assert tax_amount(-net, rate_bp) == -tax_amount(net, rate_bp)


@given(st.integers(0, 10**15), st.integers(0, 10_000))
def test_does_tax_match_decimal_half_up(net: int, rate_bp: int) -> None:
    exact = Decimal(net) * Decimal(rate_bp) / Decimal(10_000)
    assert tax_amount(net, rate_bp) == from_decimal(exact / 100, "USD")


def test_is_a_negative_tax_rate_refused() -> None:
    with pytest.raises(InvalidInput):
        tax_amount(100, -1)


# --- allocate ----------------------------------------------------------------------------


def test_does_allocate_split_without_losing_a_cent() -> None:
    assert allocate(100, 3) == [34, 33, 33]
    assert allocate(-100, 3) == [-34, -33, -33]
    assert allocate(2, 4) == [1, 1, 0, 0]
    assert allocate(0, 2) == [0, 0]


def test_does_allocate_refuse_zero_parts() -> None:
    with pytest.raises(InvalidInput):
        allocate(100, 0)


@given(st.integers(-(10**15), 10**15), st.integers(1, 500))
def test_do_allocated_shares_sum_to_the_amount_and_differ_by_at_most_one(
    amount: int, parts: int
) -> None:
    shares = allocate(amount, parts)
    assert len(shares) == parts
    assert sum(shares) == amount
    assert max(shares) - min(shares) <= 1


# --- round trip --------------------------------------------------------------------------


@st.composite
def amounts(draw: st.DrawFn) -> tuple[int, str]:
    currency = draw(st.sampled_from(CURRENCIES))
    bound = MAX_MAJOR_UNITS * 10 ** exponent(currency) - 1
    return draw(st.integers(-bound, bound)), currency


@given(amounts())
def test_does_parsing_the_plain_format_give_back_the_amount(pair: tuple[int, str]) -> None:
    amount, currency = pair
    text = format_plain(amount, currency)
    assert parse_amount(text, currency, allow_zero=True, allow_negative=True) == amount


@given(amounts())
def test_does_decimal_conversion_round_trip(pair: tuple[int, str]) -> None:
    amount, currency = pair
    assert from_decimal(to_decimal(amount, currency), currency) == amount


def test_does_tax_included_in_a_gross_amount_round_half_up() -> None:
    from app.domain.money import tax_included_in

    assert tax_included_in(5831, 1900) == 931  # 4900 net + 931 tax
    assert tax_included_in(100, 1900) == 16  # 15.97 -> 16
    assert tax_included_in(-5831, 1900) == -931
    assert tax_included_in(2500, 0) == 0


@given(st.integers(min_value=-(10**9), max_value=10**9), st.integers(min_value=0, max_value=5000))
def test_do_net_and_included_tax_add_up_to_the_gross(gross: int, rate: int) -> None:
    from app.domain.money import tax_amount, tax_included_in

    tax = tax_included_in(gross, rate)
    net = gross - tax
    assert net + tax == gross
    # The included tax is the tax on the net, give or take one minor unit of rounding.
    assert abs(tax_amount(net, rate) - tax) <= 1
