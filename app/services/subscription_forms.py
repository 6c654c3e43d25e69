"""The subscription form: raw fields, their checks and the schedule they describe."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Final

from app.domain import schedule as rules
from app.domain.errors import FieldsInvalid, InvalidInput
from app.domain.money import exponent, format_plain, parse_amount
from app.models import CustomerAccount, Partner, PaymentMethod, Subscription
from app.services.manual_charges import (
    CHARGEABLE,
)

PREVIEW_LENGTH: Final = 6
# "fixed": every charge takes the installment amount; "balance": each takes what is due.
AMOUNT_MODES: Final = ("fixed", "balance")
MAX_DESCRIPTION: Final = 200
MAX_YEARS_AHEAD: Final = 100

_DIGITS: Final = re.compile(r"[0-9]{1,6}")


class SubscriptionInvalid(FieldsInvalid):
    """A subscription form with one or more bad fields; ``errors`` maps field to message.

    ``message`` and ``field`` name the first problem, for callers that show only one.
    """


@dataclass(frozen=True)
class SubscriptionInput:
    """The subscription form as typed: raw strings, nothing checked yet.

    ``amount_mode`` is ``fixed`` (every charge takes ``manual_amount``) or ``balance``
    (each charge takes what is still due of ``total_amount``). ``end_date`` and
    ``stop_count`` are read only for their stop rule; ``initial_amount`` only when the
    subscription is created.
    """

    description: str = ""
    currency: str = ""
    frequency: str = rules.Frequency.MONTHLY.value
    start_date: str = ""
    charge_day: str = ""
    stop_rule: str = rules.StopRule.UNENDING.value
    end_date: str = ""
    stop_count: str = ""
    amount_mode: str = "fixed"
    manual_amount: str = ""
    total_amount: str = ""
    initial_amount: str = ""

    @classmethod
    def blank(cls, currency: str, as_of: date) -> SubscriptionInput:
        """The form of a new subscription: monthly from today, unending, fixed amount."""
        return cls(currency=currency, start_date=as_of.isoformat())

    @classmethod
    def from_subscription(cls, sub: Subscription) -> SubscriptionInput:
        """The form showing a saved subscription, amounts written as typed ("25.00")."""

        def plain(amount: int | None) -> str:
            return "" if amount is None else format_plain(amount, sub.currency)

        return cls(
            description=sub.description,
            currency=sub.currency,
            frequency=sub.frequency,
            start_date=sub.start_date.isoformat(),
            charge_day="" if sub.charge_day is None else str(sub.charge_day),
            stop_rule=sub.stop_rule,
            end_date=sub.end_date.isoformat() if sub.end_date else "",
            stop_count="" if sub.stop_count is None else str(sub.stop_count),
            amount_mode="fixed" if sub.manual_amount is not None else "balance",
            manual_amount=plain(sub.manual_amount),
            total_amount=plain(sub.total_amount),
            initial_amount=plain(sub.initial_amount) if sub.initial_amount else "",
        )


@dataclass(frozen=True)
class _Checked:
    """A checked form: the schedule when every field is valid, else the problems."""

    description: str
    currency: str
    schedule: rules.Schedule | None
    initial_amount: int
    errors: dict[str, str]


@dataclass(frozen=True)
class SubscriptionOverview:
    """A subscription as the partner's page shows it, with its derived figures."""

    subscription: Subscription
    account: CustomerAccount
    partner: Partner
    as_of: date
    balance_due: int | None
    payment_received: str | None
    charge_amount: int
    payment_method: PaymentMethod | None
    next_manual_sequence: int

    @property
    def can_stop(self) -> bool:
        return self.subscription.status in (
            rules.SubscriptionStatus.RECURRING,
            rules.SubscriptionStatus.ERROR,
        )

    @property
    def can_resume(self) -> bool:
        return self.subscription.status == rules.SubscriptionStatus.STOPPED

    @property
    def can_set_recurring(self) -> bool:
        return self.subscription.status == rules.SubscriptionStatus.ERROR

    @property
    def can_charge(self) -> bool:
        return (
            self.subscription.status in CHARGEABLE
            and self.charge_amount > 0
            and self.payment_method is not None
        )


# -- the form ------------------------------------------------------------------------------


def _parse_day(text: str, name: str, as_of: date, errors: dict[str, str]) -> date | None:
    value = text.strip()
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        errors.setdefault(name, f"Enter a date such as {as_of.isoformat()}.")
        return None
    if day.year > as_of.year + MAX_YEARS_AHEAD:
        errors.setdefault(name, f"Choose a date within the next {MAX_YEARS_AHEAD} years.")
        return None
    return day


def _parse_money(
    text: str, currency: str, name: str, errors: dict[str, str], *, allow_zero: bool = False
) -> int | None:
    if not text.strip():
        return None
    try:
        return parse_amount(text, currency, field=name, allow_zero=allow_zero)
    except InvalidInput as exc:
        errors.setdefault(name, exc.message)
        return None


def _check(form: SubscriptionInput, *, currency: str, as_of: date, is_new: bool) -> _Checked:
    """Every problem with the form, field by field (the first message per field wins)."""
    errors: dict[str, str] = {}
    description = " ".join(form.description.split())
    if not description:
        errors["description"] = "Enter a description, such as Monthly membership."
    elif len(description) > MAX_DESCRIPTION:
        errors["description"] = f"Use at most {MAX_DESCRIPTION} characters."

    chosen_currency = form.currency.strip().upper() or currency
    money_ok = True
    try:
        exponent(chosen_currency)
        if chosen_currency != currency:
            errors["currency"] = f"This customer is billed in {currency}: use {currency}."
            money_ok = False
    except InvalidInput as exc:
        errors["currency"] = exc.message
        money_ok = False

    frequency = form.frequency.strip()
    if frequency not in {f.value for f in rules.Frequency}:
        errors["frequency"] = "Choose how often to charge."
    stop_rule = form.stop_rule.strip()
    if stop_rule not in {r.value for r in rules.StopRule}:
        errors["stop_rule"] = "Choose when the payments stop."

    start_date = _parse_day(form.start_date, "start_date", as_of, errors)
    if start_date is None:
        errors.setdefault("start_date", "Enter the date of the first charge.")
    charge_day: int | None = None
    if form.charge_day.strip():
        if _DIGITS.fullmatch(form.charge_day.strip()):
            charge_day = int(form.charge_day.strip())
        else:
            errors["charge_day"] = "Enter a day of the month from 1 to 31, or leave it empty."
    end_date = None
    if stop_rule == rules.StopRule.DATE:
        end_date = _parse_day(form.end_date, "end_date", as_of, errors)
    stop_count: int | None = None
    if stop_rule == rules.StopRule.COUNT and form.stop_count.strip():
        if _DIGITS.fullmatch(form.stop_count.strip()):
            stop_count = int(form.stop_count.strip())
        else:
            errors["stop_count"] = "Enter how many payments to take (1 or more)."

    amount_mode = form.amount_mode.strip()
    if amount_mode not in AMOUNT_MODES:
        errors["amount_mode"] = (
            "Choose a fixed amount per charge, or charges that follow the balance."
        )
    total_amount = manual_amount = None
    initial_amount = 0
    if money_ok:
        total_amount = _parse_money(form.total_amount, currency, "total_amount", errors)
        if amount_mode == "fixed":
            manual_amount = _parse_money(form.manual_amount, currency, "manual_amount", errors)
            if manual_amount is None:
                errors.setdefault("manual_amount", "Enter the amount of each charge.")
        elif amount_mode == "balance" and total_amount is None:
            errors.setdefault(
                "total_amount", "Enter the total: each charge takes what is still due of it."
            )
        if is_new:
            initial = _parse_money(
                form.initial_amount, currency, "initial_amount", errors, allow_zero=True
            )
            initial_amount = initial or 0
            if total_amount is not None and initial_amount > total_amount:
                errors.setdefault("initial_amount", "The initial amount cannot exceed the total.")

    schedule = None
    if "frequency" not in errors and "stop_rule" not in errors and start_date is not None:
        schedule = rules.Schedule(
            frequency=rules.Frequency(frequency),
            start_date=start_date,
            charge_day=charge_day,
            stop_rule=rules.StopRule(stop_rule),
            end_date=end_date,
            stop_count=stop_count,
            total_amount=total_amount,
            manual_amount=manual_amount,
        )
        if money_ok:
            for name, message in rules.validate(schedule, is_new=is_new, as_of=as_of):
                errors.setdefault(name, message)
        else:  # amounts could not be read: check the rest only
            for name, message in rules.validate(schedule, is_new=is_new, as_of=as_of):
                if name not in ("manual_amount", "total_amount"):
                    errors.setdefault(name, message)
    return _Checked(
        description, chosen_currency, None if errors else schedule, initial_amount, errors
    )
