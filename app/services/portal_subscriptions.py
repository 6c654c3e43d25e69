"""A customer's own subscriptions in the portal, and canceling one at the end of its period.

Canceling never refunds and never charges: the schedule stops after the period already
paid. Its stop rule becomes ``date`` with the last day of that period as the end date,
and the stored next charge date is cleared so no billing run charges it again; it stays
``recurring`` (the customer keeps the service) until :func:`complete_ended_cancellations`
marks it ``complete`` on the day after. A subscription whose first period was never
charged ends at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from sqlmodel import Session, col, select

from app.clock import local_day
from app.domain import schedule as rules
from app.domain.errors import Conflict, Forbidden
from app.domain.money import format_money
from app.models import CustomerAccount, Partner, Payment, PaymentMethod, Subscription, User
from app.services import payments
from app.services.notifications import write_email
from app.services.schedules import schedule_of
from app.services.subscription_access import (
    audit,
    customer_subscription_row,
    lock,
    lock_in_transaction,
    method_of,
)
from app.services.tenancy import own_account

S = rules.SubscriptionStatus
FREQUENCY_WORDS: Final = {
    "once": "One time",
    "daily": "Daily",
    "weekly": "Weekly",
    "biweekly": "Every two weeks",
    "monthly": "Monthly",
    "bimonthly": "Every two months",
    "quarterly": "Quarterly",
    "semiannual": "Every six months",
    "annual": "Yearly",
    "biennial": "Every two years",
}
# "$25.00 a month": the price of one period in words.
PER_PERIOD: Final = {
    "daily": "a day",
    "weekly": "a week",
    "biweekly": "every two weeks",
    "monthly": "a month",
    "bimonthly": "every two months",
    "quarterly": "a quarter",
    "semiannual": "every six months",
    "annual": "a year",
    "biennial": "every two years",
}
_ORDER: Final = {S.RECURRING: 0, S.ERROR: 1, S.SUSPENDED: 2, S.STOPPED: 3, S.COMPLETE: 4}


@dataclass(frozen=True)
class SubscriptionLine:
    """One subscription as the customer's list shows it."""

    subscription: Subscription
    frequency: str  # in words
    next_charge_date: date | None
    next_amount: int | None  # what that charge takes (None: nothing scheduled)
    stop_rule: str  # in words
    method: PaymentMethod | None
    can_cancel: bool
    canceled_on: date | None  # the partner-local day the customer canceled
    ends_on: date | None  # the last day of the paid period, once canceled


@dataclass(frozen=True)
class SubscriptionsPage:
    account: CustomerAccount
    partner: Partner
    lines: list[SubscriptionLine]


@dataclass(frozen=True)
class CancelPlan:
    """What canceling a subscription now would do (the confirmation step says it)."""

    subscription: Subscription
    partner: Partner
    ends_on: date  # the last day of service
    at_once: bool  # nothing paid ahead: it ends today
    sentence: str


@dataclass(frozen=True)
class Cancellation:
    subscription: Subscription
    ends_on: date
    at_once: bool
    sentence: str
    email_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Refusal:
    """Why a cancellation is refused: 403 (the partner does not allow it) or 409."""

    status: int
    message: str

    def error(self) -> Forbidden | Conflict:
        return Forbidden(self.message) if self.status == 403 else Conflict(self.message)


def frequency_words(frequency: str) -> str:
    """ "Monthly", "Every two weeks", … (the stored value when unknown)."""
    return FREQUENCY_WORDS.get(frequency, str(frequency).replace("_", " "))


def price_per_period(amount: int, currency: str, frequency: str) -> str:
    """ "$25.00 a month", "$120.00 a year"."""
    return f"{format_money(amount, currency)} {PER_PERIOD.get(frequency, frequency)}"


def stop_rule_words(sub: Subscription) -> str:
    """The stop rule in words: "Until canceled", "Until Dec 31, 2026", "12 payments (3 made)",
    "Until $600.00 is paid (balance $300.00)"."""
    rule = sub.stop_rule
    if rule == rules.StopRule.DATE and sub.end_date is not None:
        return f"Until {sub.end_date:%b} {sub.end_date.day}, {sub.end_date.year}"
    if rule == rules.StopRule.COUNT and sub.stop_count is not None:
        unit = "payment" if sub.stop_count == 1 else "payments"
        return f"{sub.stop_count} {unit} ({sub.recurring_count} made)"
    if rule == rules.StopRule.BALANCE_DUE and sub.total_amount is not None:
        balance = max(0, sub.total_amount - sub.amount_charged)
        total = format_money(sub.total_amount, sub.currency)
        return f"Until {total} is paid (balance {format_money(balance, sub.currency)})"
    if sub.frequency == rules.Frequency.ONCE:
        return "One payment"
    return "Until canceled"


def _scheduled(sub: Subscription) -> bool:
    """A next charge is planned (paused and finished schedules have none)."""
    return sub.next_charge_date is not None and sub.status in (S.RECURRING, S.ERROR, S.SUSPENDED)


def _next_amount(sub: Subscription) -> int | None:
    if not _scheduled(sub):
        return None
    return rules.charge_amount(schedule_of(sub), amount_charged=sub.amount_charged)


def refusal(sub: Subscription, partner: Partner) -> Refusal | None:
    """Why the customer may not cancel ``sub`` now (None when they may)."""
    if not partner.portal_cancel_allowed:
        return Refusal(
            403,
            f"Your provider does not allow canceling online; contact {partner.name} "
            "to cancel this subscription.",
        )
    if sub.canceled_at is not None:
        return Refusal(409, "You already canceled this subscription.")
    if sub.status == S.ERROR:
        return Refusal(
            409,
            "Your last payment for this subscription failed. Pay what is owed first "
            "(update your card and retry), then you can cancel.",
        )
    if sub.status == S.SUSPENDED:
        return Refusal(
            409,
            "This subscription is suspended because invoices are overdue. Pay them first, "
            "then you can cancel.",
        )
    if sub.status == S.STOPPED:
        return Refusal(409, f"This subscription is paused. Contact {partner.name} to end it.")
    if sub.status != S.RECURRING or sub.next_charge_date is None:
        return Refusal(409, "This subscription has already ended.")
    if sub.stop_rule == rules.StopRule.BALANCE_DUE:
        # An installment plan pays off what is owed; stopping it online would leave a debt.
        balance = max(0, (sub.total_amount or 0) - sub.amount_charged)
        return Refusal(
            409,
            f"This is an installment plan with {format_money(balance, sub.currency)} still "
            f"to pay; it ends once that is paid. Contact {partner.name} to change it.",
        )
    return None


def subscriptions_page(session: Session, user: User) -> SubscriptionsPage:
    """The customer's own subscriptions with their figures in words, active ones first.

    Raises:
        NotFound: the user is not a customer.
    """
    account = own_account(session, user)
    partner = session.get(Partner, account.partner_id)
    assert partner is not None
    subs = session.exec(
        select(Subscription)
        .where(Subscription.customer_account_id == account.id)
        .order_by(col(Subscription.id))
    ).all()
    lines = [
        SubscriptionLine(
            subscription=sub,
            frequency=frequency_words(sub.frequency),
            next_charge_date=sub.next_charge_date if _scheduled(sub) else None,
            next_amount=_next_amount(sub),
            stop_rule=stop_rule_words(sub),
            method=method_of(session, sub),
            can_cancel=refusal(sub, partner) is None,
            canceled_on=local_day(partner.timezone, sub.canceled_at) if sub.canceled_at else None,
            ends_on=sub.end_date if sub.canceled_at else None,
        )
        for sub in subs
    ]
    lines.sort(key=lambda line: _ORDER.get(line.subscription.status, 9))
    return SubscriptionsPage(account, partner, lines)


def _plan(sub: Subscription, partner: Partner, *, as_of: date) -> CancelPlan:
    """The last day of service: the day before the next charge, or today when nothing is
    paid ahead (no period charged yet, or the period due has already begun)."""
    assert sub.next_charge_date is not None
    last_paid_day = sub.next_charge_date - timedelta(days=1)
    at_once = sub.recurring_count == 0 or last_paid_day < as_of
    ends_on = as_of if at_once else last_paid_day
    if at_once:
        sentence = f"{sub.description} ends today; no further payments are taken."
    else:
        sentence = (
            f"{sub.description} stays active until {ends_on:%b} {ends_on.day}, {ends_on.year}; "
            "no further payments are taken."
        )
    return CancelPlan(sub, partner, ends_on, at_once, sentence)


def cancel_plan(session: Session, user: User, subscription_id: int, *, as_of: date) -> CancelPlan:
    """What canceling the customer's subscription at the end of its period would do.

    Raises:
        NotFound: not a customer, or not their subscription.
        Forbidden: the partner does not let customers cancel online.
        Conflict: the subscription cannot be canceled now (in error, paused, suspended,
            ended, already canceled, or an installment plan with a balance to pay), with
            the reason.
    """
    sub = customer_subscription_row(session, user, subscription_id)
    partner = session.get(Partner, sub.partner_id)
    assert partner is not None
    problem = refusal(sub, partner)
    if problem is not None:
        raise problem.error()
    return _plan(sub, partner, as_of=as_of)


def cancel_at_period_end(
    session: Session, user: User, subscription_id: int, *, now: datetime, as_of: date
) -> Cancellation:
    """Cancel the customer's subscription at the end of the period already paid (commits).

    Under the subscription's row lock: ``canceled_at`` is set, the stop rule becomes
    ``date`` with the last paid day as end date and the next charge date is cleared, so
    no billing run charges it again; it stays ``recurring`` until that day has passed.
    With nothing paid ahead (first period never charged, or the period due already
    begun) it is ``complete`` at once. Writes a history event and a confirmation email
    (enqueue ``email_ids`` after the commit).

    Raises:
        NotFound: not a customer, or not their subscription.
        Forbidden: the partner does not let customers cancel online.
        Conflict: the subscription cannot be canceled now (see :func:`cancel_plan`), or a
            payment for it is being processed.
    """
    sub = customer_subscription_row(session, user, subscription_id)
    sub = lock(session, sub.id)  # type: ignore[arg-type]
    partner = session.get(Partner, sub.partner_id)
    account = session.get(CustomerAccount, sub.customer_account_id)
    assert partner is not None and account is not None
    problem = refusal(sub, partner)
    if problem is not None:
        session.rollback()
        raise problem.error()
    if _payment_in_flight(session, sub.id):  # type: ignore[arg-type]
        session.rollback()
        raise Conflict(
            "A payment for this subscription is being processed. Try again in a few minutes."
        )
    plan = _plan(sub, partner, as_of=as_of)
    sub.canceled_at = now
    sub.stop_rule = rules.StopRule.DATE
    sub.end_date = plan.ends_on
    sub.next_charge_date = None
    if plan.at_once:
        sub.status = S.COMPLETE
    sub.updated_at = now
    session.add(sub)
    audit(
        session,
        user,
        sub,
        "subscription.canceled_by_customer",
        ends_on=plan.ends_on.isoformat(),
        at_once=plan.at_once,
    )
    message = write_email(
        session,
        template="subscription_canceled",
        dedupe_key=f"subscription_canceled:{sub.id}",
        to_address=account.billing_email or account.email,
        subject=f"You canceled {sub.description}",
        partner_id=partner.id,
        account=account,
        partner=partner,
        subscription=sub,
        ends_on=plan.ends_on,
        at_once=plan.at_once,
        canceled_on=as_of,
    )
    session.commit()
    ids = (message.id,) if message.id is not None else ()
    return Cancellation(sub, plan.ends_on, plan.at_once, plan.sentence, ids)


def _payment_in_flight(session: Session, subscription_id: int) -> bool:
    return (
        session.exec(
            select(Payment.id).where(
                Payment.subscription_id == subscription_id,
                col(Payment.status).in_(payments.OPEN_STATUSES),
            )
        ).first()
        is not None
    )


def complete_ended_cancellations(
    session: Session, *, partner_id: int, as_of: date, now: datetime
) -> int:
    """Mark the partner's customer-canceled subscriptions ``complete`` once their end
    date is before ``as_of`` (the partner-local day). Each commits on its own; running
    again changes nothing. Returns how many were completed.
    """
    ids = session.exec(
        select(Subscription.id).where(
            Subscription.partner_id == partner_id,
            Subscription.status == S.RECURRING,
            col(Subscription.canceled_at).is_not(None),
            col(Subscription.end_date) < as_of,
        )
    ).all()
    session.rollback()
    completed = 0
    for subscription_id in ids:
        sub = lock_in_transaction(session, subscription_id)  # type: ignore[arg-type]
        ended = sub.end_date is not None and sub.end_date < as_of
        if sub.status != S.RECURRING or sub.canceled_at is None or not ended:
            session.rollback()
            continue
        sub.status = S.COMPLETE
        sub.next_charge_date = None
        sub.updated_at = now
        session.add(sub)
        audit(session, None, sub, "subscription.completed", reason="canceled_by_customer")
        session.commit()
        completed += 1
    return completed
