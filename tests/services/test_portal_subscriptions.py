"""A customer's subscriptions in the portal: the figures in words, canceling at the end of
the paid period (and the billing run respecting it), refusals, and the daily step that
completes ended cancellations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.domain.errors import Conflict, Forbidden, NotFound
from app.models import (
    AuditEvent,
    CustomerAccount,
    OutboxMessage,
    Partner,
    PaymentMethod,
    Role,
    Subscription,
    User,
)
from app.services.portal_subscriptions import (
    cancel_at_period_end,
    cancel_plan,
    complete_ended_cancellations,
    subscriptions_page,
)
from tests.services.billing_helpers import (
    add_subscription,
    approved_recurring,
    at_three,
    make_customer,
    make_partner,
    run_billing,
    sandbox,
)

JAN_1, JAN_10, JAN_31, FEB_1 = (
    date(2026, 1, 1),
    date(2026, 1, 10),
    date(2026, 1, 31),
    date(2026, 2, 1),
)
NOW = datetime(2026, 1, 10, 15, 0, tzinfo=UTC)


@pytest.fixture
def ctx(app: Flask) -> Iterator[Flask]:
    """The app with an app context (the confirmation email is rendered from templates)."""
    with app.app_context():
        yield app


@pytest.fixture
def db(ctx: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _customer_user(db: Session, account: CustomerAccount) -> User:
    user = User(
        email=account.email,
        name=account.name,
        password_hash="not-a-real-hash",
        role=Role.CUSTOMER,
        partner_id=account.partner_id,
        customer_account_id=account.id,
    )
    db.add(user)
    db.commit()
    return user


def _member(
    ctx: Flask, db: Session, *, allowed: bool = True, name: str = "Jordan Rivera"
) -> tuple[Partner, CustomerAccount, PaymentMethod, User]:
    partner = db.exec(select(Partner).where(Partner.slug == "harbor")).first() or make_partner(db)
    partner.portal_cancel_allowed = allowed
    db.add(partner)
    db.commit()
    account, method = make_customer(db, sandbox(ctx), partner, name)
    return partner, account, method, _customer_user(db, account)


def _paid_monthly(ctx: Flask, db: Session, partner: Partner, account, method) -> Subscription:  # noqa: ANN001
    """A monthly membership from Jan 1 whose first period the billing run charged."""
    sub = add_subscription(db, account, method, frequency="monthly", start_date=JAN_1)
    run_billing(db, sandbox(ctx), partner.id, JAN_1, now=at_three(JAN_1))  # type: ignore[arg-type]
    return _fresh(db, sub.id)  # type: ignore[arg-type]


def _fresh(db: Session, subscription_id: int) -> Subscription:
    db.rollback()
    sub = db.get(Subscription, subscription_id, populate_existing=True)
    assert sub is not None
    return sub


# -- the list ------------------------------------------------------------------------------


def test_does_the_list_show_each_schedule_in_words_with_the_next_charge(
    ctx: Flask, db: Session
) -> None:
    partner, account, method, user = _member(ctx, db)
    paid = _paid_monthly(ctx, db, partner, account, method)
    installments = add_subscription(
        db, account, method, frequency="monthly", start_date=FEB_1, description="Equipment",
        stop_rule="balance_due", total_amount=40000, manual_amount=15000,
    )  # fmt: skip
    installments.amount_charged = 30000  # two installments taken: $100.00 left
    installments.recurring_count = 2
    db.add(installments)
    db.commit()
    add_subscription(
        db, account, method, frequency="quarterly", start_date=FEB_1, description="Sponsor",
        stop_rule="count", stop_count=4,
    )  # fmt: skip
    add_subscription(
        db, account, method, frequency="biweekly", start_date=FEB_1, description="Lessons",
        stop_rule="date", end_date=date(2026, 12, 31),
    )  # fmt: skip
    other_account, other_method = make_customer(db, sandbox(ctx), partner, "Someone Else")
    add_subscription(db, other_account, other_method, frequency="monthly", start_date=FEB_1)

    page = subscriptions_page(db, user)

    lines = {line.subscription.description: line for line in page.lines}
    assert set(lines) == {"Membership", "Equipment", "Sponsor", "Lessons"}
    membership = lines["Membership"]
    assert membership.subscription.id == paid.id
    assert (membership.frequency, membership.stop_rule) == ("Monthly", "Until canceled")
    assert (membership.next_charge_date, membership.next_amount) == (FEB_1, 1000)
    assert membership.method is not None and membership.method.id == method.id
    assert membership.can_cancel and membership.canceled_on is None
    equipment = lines["Equipment"]
    assert equipment.stop_rule == "Until $400.00 is paid (balance $100.00)"
    assert equipment.next_amount == 10000  # never more than the balance due
    assert lines["Sponsor"].stop_rule == "4 payments (0 made)"
    assert lines["Sponsor"].frequency == "Quarterly"
    assert lines["Lessons"].stop_rule == "Until Dec 31, 2026"
    assert lines["Lessons"].frequency == "Every two weeks"


# -- canceling -----------------------------------------------------------------------------


def test_does_canceling_end_after_the_paid_period_and_stop_the_charges(
    ctx: Flask, db: Session
) -> None:
    partner, account, method, user = _member(ctx, db)
    sub = _paid_monthly(ctx, db, partner, account, method)
    assert sub.next_charge_date == FEB_1

    plan = cancel_plan(db, user, sub.id, as_of=JAN_10)  # type: ignore[arg-type]
    done = cancel_at_period_end(db, user, sub.id, now=NOW, as_of=JAN_10)  # type: ignore[arg-type]

    expected = "Membership stays active until Jan 31, 2026; no further payments are taken."
    assert plan.sentence == done.sentence == expected
    sub = _fresh(db, sub.id)  # type: ignore[arg-type]
    assert (sub.stop_rule, sub.end_date, sub.next_charge_date) == ("date", JAN_31, None)
    assert sub.status == "recurring" and sub.canceled_at == NOW
    events = db.exec(select(AuditEvent).where(AuditEvent.subject_id == sub.id)).all()
    assert "subscription.canceled_by_customer" in [e.action for e in events]
    (email,) = db.exec(
        select(OutboxMessage).where(OutboxMessage.kind == "subscription_canceled")
    ).all()
    assert email.id in done.email_ids and email.to_address == account.email
    assert "stays active until Jan 31, 2026" in email.text_body

    for day in (FEB_1, date(2026, 3, 1)):
        run_billing(db, sandbox(ctx), partner.id, day, now=at_three(day))  # type: ignore[arg-type]

    assert [p.period_date for p in approved_recurring(db)] == [JAN_1]  # nothing after
    assert _fresh(db, sub.id).next_charge_date is None  # type: ignore[arg-type]
    page = subscriptions_page(db, user)
    (line,) = page.lines
    assert (line.ends_on, line.canceled_on, line.can_cancel) == (JAN_31, JAN_10, False)
    assert line.next_charge_date is None and line.stop_rule == "Until Jan 31, 2026"


def test_does_a_cancel_before_the_first_charge_end_at_once(ctx: Flask, db: Session) -> None:
    partner, account, method, user = _member(ctx, db)
    sub = add_subscription(db, account, method, frequency="monthly", start_date=date(2026, 1, 20))

    done = cancel_at_period_end(db, user, sub.id, now=NOW, as_of=JAN_10)  # type: ignore[arg-type]

    assert done.at_once and done.sentence == "Membership ends today; no further payments are taken."
    sub = _fresh(db, sub.id)  # type: ignore[arg-type]
    assert (sub.status, sub.end_date, sub.next_charge_date) == ("complete", JAN_10, None)
    day = date(2026, 1, 20)
    run_billing(db, sandbox(ctx), partner.id, day, now=at_three(day))  # type: ignore[arg-type]
    assert approved_recurring(db) == []
    assert sandbox(ctx).list_charges() == []


def test_is_canceling_refused_when_the_partner_does_not_allow_it(ctx: Flask, db: Session) -> None:
    partner, account, method, user = _member(ctx, db, allowed=False)
    sub = _paid_monthly(ctx, db, partner, account, method)

    with pytest.raises(Forbidden, match="does not allow canceling online; contact Harbor"):
        cancel_at_period_end(db, user, sub.id, now=NOW, as_of=JAN_10)  # type: ignore[arg-type]
    with pytest.raises(Forbidden):
        cancel_plan(db, user, sub.id, as_of=JAN_10)  # type: ignore[arg-type]
    assert _fresh(db, sub.id).canceled_at is None  # type: ignore[arg-type]
    assert subscriptions_page(db, user).lines[0].can_cancel is False


def test_is_a_subscription_in_error_refused_until_what_is_owed_is_paid(
    ctx: Flask, db: Session
) -> None:
    partner, account, method, user = _member(ctx, db)
    sub = _paid_monthly(ctx, db, partner, account, method)
    sub.status = "error"
    db.add(sub)
    db.commit()

    with pytest.raises(Conflict, match="Pay what is owed first"):
        cancel_at_period_end(db, user, sub.id, now=NOW, as_of=JAN_10)  # type: ignore[arg-type]
    assert _fresh(db, sub.id).next_charge_date == FEB_1  # type: ignore[arg-type]


def test_is_an_installment_plan_with_a_balance_refused(ctx: Flask, db: Session) -> None:
    _partner, account, method, user = _member(ctx, db)
    plan = add_subscription(
        db, account, method, frequency="monthly", start_date=FEB_1, description="Equipment",
        stop_rule="balance_due", total_amount=60000, manual_amount=15000,
    )  # fmt: skip

    with pytest.raises(Conflict, match=r"installment plan with \$600.00 still to pay"):
        cancel_at_period_end(db, user, plan.id, now=NOW, as_of=JAN_10)  # type: ignore[arg-type]
    assert subscriptions_page(db, user).lines[0].can_cancel is False


def test_is_a_second_cancel_refused(ctx: Flask, db: Session) -> None:
    partner, account, method, user = _member(ctx, db)
    sub = _paid_monthly(ctx, db, partner, account, method)
    cancel_at_period_end(db, user, sub.id, now=NOW, as_of=JAN_10)  # type: ignore[arg-type]

    with pytest.raises(Conflict, match="already canceled"):
        cancel_at_period_end(db, user, sub.id, now=NOW, as_of=JAN_10)  # type: ignore[arg-type]
    emails = db.exec(select(OutboxMessage).where(OutboxMessage.kind == "subscription_canceled"))
    assert len(emails.all()) == 1


def test_is_another_customers_subscription_not_found(ctx: Flask, db: Session) -> None:
    partner, account, method, _user = _member(ctx, db)
    sub = _paid_monthly(ctx, db, partner, account, method)
    *_, stranger = _member(ctx, db, name="Casey Stranger")

    with pytest.raises(NotFound):
        cancel_at_period_end(db, stranger, sub.id, now=NOW, as_of=JAN_10)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        cancel_plan(db, stranger, sub.id, as_of=JAN_10)  # type: ignore[arg-type]
    assert _fresh(db, sub.id).canceled_at is None  # type: ignore[arg-type]
    assert subscriptions_page(db, stranger).lines == []


# -- the daily step ------------------------------------------------------------------------


def test_does_the_daily_step_complete_only_ended_cancellations(ctx: Flask, db: Session) -> None:
    partner, account, method, user = _member(ctx, db)
    canceled = _paid_monthly(ctx, db, partner, account, method)
    kept = add_subscription(db, account, method, frequency="monthly", start_date=JAN_1)
    kept.end_date, kept.stop_rule = date(2026, 1, 5), "date"  # ends by date, not canceled
    db.add(kept)
    db.commit()
    cancel_at_period_end(db, user, canceled.id, now=NOW, as_of=JAN_10)  # type: ignore[arg-type]

    assert complete_ended_cancellations(db, partner_id=partner.id, as_of=JAN_31, now=NOW) == 0  # type: ignore[arg-type]
    assert _fresh(db, canceled.id).status == "recurring"  # type: ignore[arg-type]
    assert complete_ended_cancellations(db, partner_id=partner.id, as_of=FEB_1, now=NOW) == 1  # type: ignore[arg-type]
    assert complete_ended_cancellations(db, partner_id=partner.id, as_of=FEB_1, now=NOW) == 0  # type: ignore[arg-type]

    assert _fresh(db, canceled.id).status == "complete"  # type: ignore[arg-type]
    assert _fresh(db, kept.id).status == "recurring"  # type: ignore[arg-type]


def test_does_the_cron_job_complete_ended_cancellations_on_each_partners_day(
    ctx: Flask, db: Session
) -> None:
    from rq import cron

    import app.jobs.cron  # noqa: F401  (registers the cron jobs)
    from app.clock import local_today
    from app.jobs.maintenance import complete_canceled_subscriptions

    partner, account, method, user = _member(ctx, db)
    today = local_today(partner.timezone)
    ended = add_subscription(db, account, method, frequency="monthly", start_date=JAN_1)
    running = add_subscription(db, account, method, frequency="monthly", start_date=JAN_1)
    for sub, end in ((ended, today - timedelta(days=1)), (running, today)):
        sub.canceled_at, sub.stop_rule, sub.end_date = NOW, "date", end
        sub.next_charge_date = None
        db.add(sub)
    db.commit()

    assert complete_canceled_subscriptions() == 1
    assert complete_canceled_subscriptions() == 0

    assert _fresh(db, ended.id).status == "complete"  # type: ignore[arg-type]
    assert _fresh(db, running.id).status == "recurring"  # type: ignore[arg-type]
    registered = [job["func"] for job in cron._job_data_registry]
    assert complete_canceled_subscriptions in registered
