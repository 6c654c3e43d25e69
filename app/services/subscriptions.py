"""Partner users manage a customer's subscription (payment schedule): the form with its
live preview, and the Stop, Resume, Set back to recurring, Charge now and Skip buttons
(ARCHITECTURE §1 Subscriptions, issue 4).

Partner users (admins and sales) reach their partner's subscriptions only; anyone else
gets NotFound, exactly like a record that does not exist. Every write commits once, and
bad input raises before anything is written.

Nobody is back-charged for time a schedule did not run: resuming a stopped schedule,
setting an ``error`` one back to recurring, and editing its timing (frequency, start
date, charge day) skip the periods dated before today. The initial amount of a new
schedule is charged at once as a manual charge (``app.services.manual_charges``); the
customer's card update and "Retry now" live in ``app.services.customer_billing``. Both
are re-exported here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from sqlmodel import Session

from app.domain import schedule as rules
from app.domain.errors import Conflict, InvalidInput, NotFound
from app.domain.money import exponent, format_plain, parse_amount
from app.gateway.base import PaymentGateway
from app.models import CustomerAccount, Partner, PaymentMethod, Subscription, User
from app.services import payments
from app.services.customer_billing import (
    CustomerSubscription,
    customer_subscription,
    replace_payment_method,
    retry_now,
)
from app.services.manual_charges import (
    CHARGEABLE,
    ManualCharge,
    apply_manual_charge,
    charge_now,
    finish_manual_charge,
    manual_charge_result,
    manual_count,
    manual_spec,
    send_manual,
)
from app.services.schedules import refresh_next_charge_date, schedule_of
from app.services.subscription_access import (
    audit,
    default_method,
    derived_next,
    lock,
    locked_for_partner,
    method_of,
    partner_subscription,
    store_next,
    word,
)
from app.services.tenancy import customer_for, partner_id_of

__all__ = [
    "AMOUNT_MODES",
    "PREVIEW_LENGTH",
    "CustomerSubscription",
    "ManualCharge",
    "SubscriptionInput",
    "SubscriptionInvalid",
    "SubscriptionOverview",
    "apply_manual_charge",
    "charge_now",
    "create_subscription",
    "customer_subscription",
    "finish_manual_charge",
    "manual_charge_result",
    "new_subscription_context",
    "pause",
    "preview",
    "replace_payment_method",
    "resume",
    "retry_now",
    "set_recurring",
    "skip_next",
    "subscription_overview",
    "update_subscription",
]

PREVIEW_LENGTH: Final = 6
# "fixed": every charge takes the installment amount; "balance": each takes what is due.
AMOUNT_MODES: Final = ("fixed", "balance")
MAX_DESCRIPTION: Final = 200
MAX_YEARS_AHEAD: Final = 100

_DIGITS: Final = re.compile(r"[0-9]{1,6}")


class SubscriptionInvalid(InvalidInput):
    """A subscription form with one or more bad fields; ``errors`` maps field to message.

    ``message`` and ``field`` name the first problem, for callers that show only one.
    """

    def __init__(self, errors: dict[str, str]) -> None:
        first_field, first_message = next(iter(errors.items()))
        super().__init__(first_message, first_field)
        self.errors = dict(errors)


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


def _timing(schedule: rules.Schedule) -> tuple[object, ...]:
    return (schedule.frequency, schedule.start_date, schedule.charge_day)


def _skip_missed(schedule: rules.Schedule, first_period: int, charged: int, as_of: date) -> int:
    """The first period to use so that nothing dated before ``as_of`` is charged."""
    return max(first_period, rules.period_index_on_or_after(schedule, as_of) - charged)


def _first_period_after_edit(sub: Subscription, schedule: rules.Schedule, as_of: date) -> int:
    """Keep the counting when the timing is unchanged; otherwise restart it from today.

    With a new frequency, start date or charge day, the old period numbers mean other
    dates: the next charge becomes the new schedule's first date on or after ``as_of``
    (after the recurring charges already taken), so no period is back-charged.
    """
    if _timing(schedule) == _timing(schedule_of(sub)):
        return sub.first_period
    return _skip_missed(schedule, 0, sub.recurring_count, as_of)


def preview(
    form: SubscriptionInput,
    *,
    currency: str,
    as_of: date,
    is_new: bool,
    subscription: Subscription | None = None,
) -> tuple[list[tuple[date, int]], dict[str, str]]:
    """The next six charges the form would give, or why it cannot be saved. Writes nothing.

    Returns ``(upcoming, {})`` with ``(date, amount)`` pairs (fewer when the stop rule
    ends the schedule first; an initial amount counts as paid), or ``([], errors)``
    mapping each bad field to a plain reason. For an edit, pass the saved
    ``subscription``: its charges so far are taken into account as :func:`update_subscription`
    would. ``currency`` is the customer's (invoices are in it). Raises nothing.
    """
    checked = _check(form, currency=currency, as_of=as_of, is_new=is_new)
    if checked.errors or checked.schedule is None:
        return [], checked.errors
    schedule = checked.schedule
    if subscription is None:
        charged, amount_charged, first_period = 0, checked.initial_amount, 0
    else:
        charged, amount_charged = subscription.recurring_count, subscription.amount_charged
        first_period = _first_period_after_edit(subscription, schedule, as_of)
        if subscription.status in (
            rules.SubscriptionStatus.STOPPED,
            rules.SubscriptionStatus.COMPLETE,
        ):  # what it would charge once running again: nothing missed meanwhile
            first_period = _skip_missed(schedule, first_period, charged, as_of)
    try:
        upcoming = rules.upcoming_charges(
            schedule,
            charged_periods=charged,
            amount_charged=amount_charged,
            first_period=first_period,
            limit=PREVIEW_LENGTH,
        )
    except OverflowError:
        return [], {"start_date": "Choose dates in this century."}
    except (InvalidInput, ValueError) as exc:
        message = exc.message if isinstance(exc, InvalidInput) else str(exc)
        return [], {getattr(exc, "field", "") or "start_date": message}
    # A period with nothing owed is skipped by the billing run, not charged.
    return [(day, amount) for day, amount in upcoming if amount > 0], {}


# -- partner: create and edit --------------------------------------------------------------


def new_subscription_context(
    session: Session, user: User, customer_id: int
) -> tuple[CustomerAccount, Partner]:
    """The customer a partner user is adding a subscription to, and the partner.

    Raises:
        NotFound: not a partner user, or a customer of another partner.
    """
    partner_id = partner_id_of(user)
    account = customer_for(session, user, customer_id)
    partner = session.get(Partner, partner_id)
    if partner is None:
        raise NotFound("Not found.")
    return account, partner


def create_subscription(
    session: Session,
    user: User,
    customer_id: int,
    form: SubscriptionInput,
    *,
    as_of: date,
    now: datetime,
    gateway: PaymentGateway,
) -> tuple[Subscription, ManualCharge | None]:
    """Create a customer's subscription (``recurring``); charge its initial amount now.

    Returns the subscription and the initial charge's outcome (None without one). The
    schedule and the initial charge's attempt are committed together before the
    processor is called; a declined initial charge leaves the schedule in ``error``.

    Raises:
        NotFound: not a partner user, or a customer of another partner.
        SubscriptionInvalid: every bad field (nothing is written).
    """
    account, partner = new_subscription_context(session, user, customer_id)
    checked = _check(form, currency=account.currency, as_of=as_of, is_new=True)
    if checked.errors or checked.schedule is None:
        raise SubscriptionInvalid(checked.errors or {"start_date": "Check the schedule."})
    method = default_method(session, account.id)  # type: ignore[arg-type]
    if checked.initial_amount > 0 and method is None:
        raise SubscriptionInvalid(
            {"initial_amount": "This customer has no payment method on file to charge it now."}
        )
    schedule = checked.schedule
    sub = Subscription(
        partner_id=partner.id,  # type: ignore[arg-type]
        customer_account_id=account.id,  # type: ignore[arg-type]
        description=checked.description,
        status=rules.SubscriptionStatus.RECURRING,
        frequency=schedule.frequency,
        currency=account.currency,
        total_amount=schedule.total_amount,
        manual_amount=schedule.manual_amount,
        initial_amount=checked.initial_amount,
        start_date=schedule.start_date,
        charge_day=schedule.charge_day,
        stop_rule=schedule.stop_rule,
        end_date=schedule.end_date,
        stop_count=schedule.stop_count,
        updated_at=now,
    )
    refresh_next_charge_date(sub)
    session.add(sub)
    session.flush()
    audit(session, user, sub, "subscription.created", initial_amount=checked.initial_amount)
    if checked.initial_amount <= 0:
        session.commit()
        return sub, None
    assert method is not None
    amount = checked.initial_amount
    spec = manual_spec(
        sub, account, method, 1, amount, user, gateway_name=gateway.name, initial=True
    )
    attempt, _ = payments.open_attempt(session, spec)  # commits the schedule with it
    charge = send_manual(
        session,
        gateway,
        attempt,
        token=method.token,
        customer_ref=account.gateway_customer_ref,
        description=sub.description,
        now=now,
    )
    session.refresh(sub)
    return sub, charge


def update_subscription(
    session: Session,
    user: User,
    subscription_id: int,
    form: SubscriptionInput,
    *,
    as_of: date,
    now: datetime | None = None,
) -> Subscription:
    """Save a partner's edit of a subscription; its charges so far are kept.

    A new frequency, start date or charge day restarts the counting from ``as_of`` (see
    ``preview``). An edit that moves the stop event past the charges taken reopens a
    ``complete`` schedule (from today on); one that reaches it completes the schedule.
    The initial amount is not edited (it was charged at sign-up).

    Raises:
        NotFound: not a partner user, or a subscription of another partner.
        SubscriptionInvalid: every bad field (nothing is written).
    """
    sub = partner_subscription(session, user, subscription_id)
    checked = _check(form, currency=sub.currency, as_of=as_of, is_new=False)
    if checked.errors or checked.schedule is None:
        raise SubscriptionInvalid(checked.errors or {"start_date": "Check the schedule."})
    schedule = checked.schedule
    sub = lock(session, sub.id)  # type: ignore[arg-type]
    first_period = _first_period_after_edit(sub, schedule, as_of)
    sub.description = checked.description
    sub.frequency = schedule.frequency
    sub.start_date = schedule.start_date
    sub.charge_day = schedule.charge_day
    sub.stop_rule = schedule.stop_rule
    sub.end_date = schedule.end_date
    sub.stop_count = schedule.stop_count
    sub.total_amount = schedule.total_amount
    sub.manual_amount = schedule.manual_amount
    sub.first_period = first_period
    if sub.status == rules.SubscriptionStatus.COMPLETE and derived_next(sub) is not None:
        sub.first_period = _skip_missed(schedule, first_period, sub.recurring_count, as_of)
        sub.status = rules.SubscriptionStatus.RECURRING
    store_next(sub)
    if now is not None:
        sub.updated_at = now
    session.add(sub)
    audit(session, user, sub, "subscription.updated", first_period=sub.first_period)
    session.commit()
    return sub


def subscription_overview(
    session: Session, user: User, subscription_id: int, *, as_of: date
) -> SubscriptionOverview:
    """A partner's subscription with its customer, partner and derived figures.

    Raises:
        NotFound: not a partner user, or a subscription of another partner.
    """
    sub = partner_subscription(session, user, subscription_id)
    account = session.get(CustomerAccount, sub.customer_account_id)
    partner = session.get(Partner, sub.partner_id)
    assert account is not None and partner is not None
    schedule = schedule_of(sub)
    balance = rules.balance_due(schedule, amount_charged=sub.amount_charged)
    try:
        amount = rules.charge_amount(schedule, amount_charged=sub.amount_charged)
    except InvalidInput:
        amount = 0
    return SubscriptionOverview(
        subscription=sub,
        account=account,
        partner=partner,
        as_of=as_of,
        balance_due=balance,
        payment_received=(
            rules.payment_received(sub.total_amount, sub.amount_charged)
            if sub.total_amount
            else None
        ),
        charge_amount=amount,
        payment_method=method_of(session, sub),
        next_manual_sequence=manual_count(session, sub.id) + 1,  # type: ignore[arg-type]
    )


# -- partner: state buttons ----------------------------------------------------------------


def pause(session: Session, user: User, subscription_id: int, *, now: datetime) -> Subscription:
    """Stop (pause) a ``recurring`` or ``error`` subscription: the billing run skips it.

    Raises:
        NotFound: not a partner user, or a subscription of another partner.
        Conflict: the subscription is not recurring or in error.
    """
    sub = locked_for_partner(session, user, subscription_id)
    if sub.status not in (rules.SubscriptionStatus.RECURRING, rules.SubscriptionStatus.ERROR):
        session.rollback()
        raise Conflict(f"A {word(sub.status)} subscription cannot be stopped.")
    sub.status = rules.SubscriptionStatus.STOPPED
    sub.next_charge_date = None
    sub.updated_at = now
    session.add(sub)
    audit(session, user, sub, "subscription.stopped")
    session.commit()
    return sub


def resume(
    session: Session, user: User, subscription_id: int, *, as_of: date, now: datetime
) -> Subscription:
    """Resume a stopped subscription, skipping the periods missed while it was stopped.

    The next charge is the first period dated on or after ``as_of`` (or later, if the
    schedule had not reached it yet); the schedule completes if its stop event passed.

    Raises:
        NotFound: not a partner user, or a subscription of another partner.
        Conflict: the subscription is not stopped.
    """
    sub = locked_for_partner(session, user, subscription_id)
    if sub.status != rules.SubscriptionStatus.STOPPED:
        session.rollback()
        raise Conflict(
            f"Only a stopped subscription can be resumed; this one is {word(sub.status)}."
        )
    return _back_to_recurring(session, user, sub, as_of=as_of, now=now, action="resumed")


def set_recurring(
    session: Session, user: User, subscription_id: int, *, as_of: date, now: datetime
) -> Subscription:
    """Set an ``error`` subscription back to recurring (periods before ``as_of`` are skipped).

    Raises:
        NotFound: not a partner user, or a subscription of another partner.
        Conflict: the subscription is not in error.
    """
    sub = locked_for_partner(session, user, subscription_id)
    if sub.status != rules.SubscriptionStatus.ERROR:
        session.rollback()
        raise Conflict(
            "Only a subscription in error can be set back to recurring; "
            f"this one is {word(sub.status)}."
        )
    return _back_to_recurring(session, user, sub, as_of=as_of, now=now, action="set_recurring")


def _back_to_recurring(
    session: Session, user: User, sub: Subscription, *, as_of: date, now: datetime, action: str
) -> Subscription:
    schedule = schedule_of(sub)
    skipped_from = sub.first_period
    sub.first_period = _skip_missed(schedule, sub.first_period, sub.recurring_count, as_of)
    sub.status = rules.SubscriptionStatus.RECURRING
    sub.last_error = ""
    sub.updated_at = now
    store_next(sub)
    session.add(sub)
    audit(
        session,
        user,
        sub,
        f"subscription.{action}",
        periods_skipped=sub.first_period - skipped_from,
    )
    session.commit()
    return sub


def skip_next(
    session: Session, user: User, subscription_id: int, *, now: datetime | None = None
) -> Subscription:
    """Skip the next scheduled charge: the schedule moves on by one period, uncharged.

    Under a ``count`` stop rule a skipped period does not count; under ``date`` skipping
    the last charge completes the schedule.

    Raises:
        NotFound: not a partner user, or a subscription of another partner.
        Conflict: nothing is scheduled (stopped, complete or suspended).
    """
    sub = locked_for_partner(session, user, subscription_id)
    if (
        sub.status not in (rules.SubscriptionStatus.RECURRING, rules.SubscriptionStatus.ERROR)
        or sub.next_charge_date is None
    ):
        session.rollback()
        raise Conflict("There is no scheduled charge to skip.")
    skipped = sub.next_charge_date
    sub.first_period += 1
    store_next(sub)
    if now is not None:
        sub.updated_at = now
    session.add(sub)
    audit(session, user, sub, "subscription.skipped", date=skipped.isoformat())
    session.commit()
    return sub
