"""The bridge between Subscription rows and the pure schedule rules."""

from __future__ import annotations

from datetime import date

from app.domain import schedule as rules
from app.models import Subscription


def schedule_of(subscription: Subscription) -> rules.Schedule:
    """The pure schedule described by a subscription row."""
    return rules.Schedule(
        frequency=rules.Frequency(subscription.frequency),
        start_date=subscription.start_date,
        charge_day=subscription.charge_day,
        stop_rule=rules.StopRule(subscription.stop_rule),
        end_date=subscription.end_date,
        stop_count=subscription.stop_count,
        total_amount=subscription.total_amount,
        manual_amount=subscription.manual_amount,
    )


def derived_next_charge_date(subscription: Subscription) -> date | None:
    """The next charge date the rules give for the row's counters (None once stopped)."""
    return rules.next_charge_date(
        schedule_of(subscription),
        charged_periods=subscription.recurring_count,
        amount_charged=subscription.amount_charged,
        first_period=subscription.first_period,
    )


def refresh_next_charge_date(subscription: Subscription) -> None:
    """Store the derived next charge date on the row; a finished schedule becomes complete."""
    subscription.next_charge_date = derived_next_charge_date(subscription)
    if (
        subscription.next_charge_date is None
        and subscription.status == rules.SubscriptionStatus.RECURRING
    ):
        subscription.status = rules.SubscriptionStatus.COMPLETE
