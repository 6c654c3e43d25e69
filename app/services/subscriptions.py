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

from datetime import date, datetime

from sqlmodel import Session

from app.domain import schedule as rules
from app.domain.errors import Conflict, InvalidInput, NotFound
from app.gateway.base import PaymentGateway
from app.models import CustomerAccount, Partner, Subscription, User
from app.services import payments
from app.services.customer_billing import (
    CustomerSubscription,
    customer_subscription,
    replace_payment_method,
    retry_now,
)
from app.services.manual_charges import (
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
from app.services.subscription_forms import (
    AMOUNT_MODES,
    PREVIEW_LENGTH,
    SubscriptionInput,
    SubscriptionInvalid,
    SubscriptionOverview,
    _check,
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
    # Period numbers restart at the new schedule's first date on or after as_of.
    return _skip_missed(schedule, -sub.recurring_count, sub.recurring_count, as_of)


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
