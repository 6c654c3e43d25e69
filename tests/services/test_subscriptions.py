"""Partner users manage subscriptions; customers update their card and retry a decline."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from app.domain.errors import Conflict, InvalidInput, NotFound
from app.gateway.sandbox import SandboxGateway
from app.models import (
    CustomerAccount,
    Invoice,
    OutboxMessage,
    Payment,
    PaymentMethod,
    Subscription,
    User,
)
from app.services import subscriptions as service
from app.services.subscription_billing import charge_next_period
from tests.services.payer_helpers import card, sandbox

# Services take the clock as arguments: a fixed day (a Thursday) in the partner's timezone.
AS_OF = date(2030, 1, 10)
NOW = datetime(2030, 1, 10, 15, 0, tzinfo=UTC)
US_ADMIN = "admin@us-partner.example"
US_SALES = "sales@us-partner.example"
DE_ADMIN = "admin@de-partner.example"
JORDAN = "customer@example.com"  # Visa 4242 on file
DECLINES_AFTER_ATTACH = "4000000000000341"

MONTHLY = service.SubscriptionInput(
    description="Studio membership",
    currency="USD",
    frequency="monthly",
    start_date=AS_OF.isoformat(),
    amount_mode="fixed",
    manual_amount="25.00",
)


@pytest.fixture
def ctx(demo: Flask) -> Iterator[Flask]:
    """The demo app with an app context (receipt emails are rendered from templates)."""
    with demo.app_context():
        yield demo


@pytest.fixture
def db(ctx: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def gateway(ctx: Flask) -> SandboxGateway:
    return sandbox(ctx)


def user(db: Session, email: str) -> User:
    return db.exec(select(User).where(User.email == email)).one()


def account_of(db: Session, email: str) -> CustomerAccount:
    return db.exec(select(CustomerAccount).where(CustomerAccount.email == email)).one()


def stored(db: Session, subscription_id: int) -> Subscription:
    db.rollback()
    sub = db.get(Subscription, subscription_id, populate_existing=True)
    assert sub is not None
    return sub


def count(db: Session, model: type, *where: object) -> int:
    db.rollback()
    return db.exec(select(func.count()).select_from(model).where(*where)).one()


def create(
    db: Session,
    gateway: SandboxGateway,
    form: service.SubscriptionInput = MONTHLY,
    *,
    customer: str = JORDAN,
    by: str = US_ADMIN,
) -> Subscription:
    sub, charge = service.create_subscription(
        db, user(db, by), account_of(db, customer).id, form, as_of=AS_OF, now=NOW, gateway=gateway
    )
    assert charge is None or charge.approved, charge
    return sub


def into_error(db: Session, gateway: SandboxGateway, sub: Subscription, on: date) -> Subscription:
    """Let the billing run decline the subscription's period due on ``on``."""
    result = charge_next_period(db, gateway, sub.id, as_of=on, now=NOW)
    assert result.status == "declined", result
    return stored(db, sub.id)


def customer_card(db: Session, gateway: SandboxGateway, number: str, sub: Subscription) -> None:
    service.replace_payment_method(db, gateway, user(db, JORDAN), sub.id, card(gateway, number))


# -- the form and its preview ----------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"frequency": "weekly", "charge_day": "15"}, "charge_day", "monthly or longer"),
        ({"stop_rule": "date", "end_date": "2030-01-09"}, "end_date", "on or after the start"),
        ({"stop_rule": "count", "stop_count": "0"}, "stop_count", "1 or more"),
        ({"stop_rule": "balance_due"}, "total_amount", "total above zero"),
        ({"start_date": "2030-01-09"}, "start_date", "cannot be in the past"),
        ({"amount_mode": "balance", "manual_amount": ""}, "total_amount", "Enter the total"),
        ({"manual_amount": "12,5"}, "manual_amount", "Use a point for decimals"),
        ({"currency": "EUR"}, "currency", "billed in USD"),
    ],
)
def test_which_reason_does_the_preview_give_for_an_invalid_combination(
    changes: dict[str, str], field: str, reason: str
) -> None:
    upcoming, errors = service.preview(
        replace(MONTHLY, **changes), currency="USD", as_of=AS_OF, is_new=True
    )

    assert upcoming == []
    assert reason in errors[field], errors


def test_may_an_existing_schedule_keep_a_start_date_in_the_past() -> None:
    past = replace(MONTHLY, start_date="2029-06-01")

    _, errors = service.preview(past, currency="USD", as_of=AS_OF, is_new=False)

    assert errors == {}


def test_does_the_preview_give_the_next_six_dates_from_the_anchor() -> None:
    end_of_month = replace(MONTHLY, start_date="2030-01-31")

    upcoming, errors = service.preview(end_of_month, currency="USD", as_of=AS_OF, is_new=True)

    assert errors == {}
    assert upcoming == [
        (date(2030, 1, 31), 2500),
        (date(2030, 2, 28), 2500),
        (date(2030, 3, 31), 2500),
        (date(2030, 4, 30), 2500),
        (date(2030, 5, 31), 2500),
        (date(2030, 6, 30), 2500),
    ]


def test_does_a_balance_due_preview_stop_at_the_total_without_overcharging() -> None:
    installments = replace(
        MONTHLY, stop_rule="balance_due", total_amount="100.00", manual_amount="30.00",
        charge_day="15", initial_amount="10.00",
    )  # fmt: skip

    upcoming, _ = service.preview(installments, currency="USD", as_of=AS_OF, is_new=True)

    # The initial amount counts as paid: 90 left, in 30 + 30 + 30.
    assert upcoming == [
        (date(2030, 1, 15), 3000),
        (date(2030, 2, 15), 3000),
        (date(2030, 3, 15), 3000),
    ]


# -- create and edit -------------------------------------------------------------------


def test_does_creating_a_subscription_schedule_its_first_charge(
    db: Session, gateway: SandboxGateway
) -> None:
    sub = create(db, gateway, replace(MONTHLY, start_date="2030-02-01"), by=US_SALES)

    sub = stored(db, sub.id)
    assert (sub.status, sub.next_charge_date, sub.manual_amount) == (
        "recurring",
        date(2030, 2, 1),
        2500,
    )
    assert count(db, Payment, Payment.subscription_id == sub.id) == 0


def test_is_the_initial_amount_charged_at_creation_as_a_manual_charge(
    db: Session, gateway: SandboxGateway
) -> None:
    form = replace(MONTHLY, start_date="2030-02-10", initial_amount="40.00")

    sub, charge = service.create_subscription(
        db,
        user(db, US_ADMIN),
        account_of(db, JORDAN).id,
        form,
        as_of=AS_OF,
        now=NOW,
        gateway=gateway,
    )

    assert charge is not None and charge.approved and charge.initial
    payment = db.get(Payment, charge.payment_id)
    assert payment is not None
    assert (payment.amount, payment.is_recurring, payment.purpose_key) == (
        4000,
        False,
        f"manual:{sub.id}:1",
    )
    sub = stored(db, sub.id)
    assert (sub.initial_amount, sub.amount_charged, sub.recurring_count) == (4000, 4000, 0)
    assert sub.next_charge_date == date(2030, 2, 10)  # recurring charges start on the start date
    invoice = db.get(Invoice, payment.invoice_id)
    assert invoice is not None and (invoice.status, invoice.total, invoice.issue_date) == (
        "paid",
        4000,
        AS_OF,
    )
    assert (
        count(db, OutboxMessage, OutboxMessage.dedupe_key == f"receipt:payment:{payment.id}") == 1
    )
    assert (
        len(
            [
                c
                for c in gateway.list_charges()
                if c.metadata.get("purpose_key") == payment.purpose_key
            ]
        )
        == 1
    )


def test_does_a_declined_initial_amount_leave_the_schedule_in_error(
    db: Session, gateway: SandboxGateway
) -> None:
    soccer = account_of(db, "treasurer@riverside-soccer.example")  # its card declines
    form = replace(MONTHLY, start_date="2030-02-10", initial_amount="40.00")

    sub, charge = service.create_subscription(
        db, user(db, US_ADMIN), soccer.id, form, as_of=AS_OF, now=NOW, gateway=gateway
    )

    assert charge is not None and charge.status == "declined" and charge.message
    sub = stored(db, sub.id)
    assert sub.status == "error" and "initial charge was declined" in sub.last_error
    assert sub.amount_charged == 0


def test_is_nothing_written_for_an_invalid_form(db: Session, gateway: SandboxGateway) -> None:
    before = count(db, Subscription)

    with pytest.raises(service.SubscriptionInvalid) as raised:
        create(db, gateway, replace(MONTHLY, frequency="weekly", charge_day="3", description=""))

    assert set(raised.value.errors) == {"charge_day", "description"}
    assert count(db, Subscription) == before


def test_does_editing_the_amount_keep_the_schedule_and_editing_its_day_not_back_charge(
    db: Session, gateway: SandboxGateway
) -> None:
    sub = create(db, gateway)
    # Three periods charged by the billing run: Jan 10, Feb 10, Mar 10.
    for day in (date(2030, 1, 10), date(2030, 2, 10), date(2030, 3, 10)):
        assert charge_next_period(db, gateway, sub.id, as_of=day, now=NOW).status == "charged"
    today = date(2030, 3, 20)
    admin = user(db, US_ADMIN)

    service.update_subscription(
        db, admin, sub.id, replace(MONTHLY, manual_amount="30.00"), as_of=today
    )
    assert stored(db, sub.id).next_charge_date == date(2030, 4, 10)

    # A new start date renumbers the periods: the next charge is the new schedule's first
    # date on or after today, never one in the past (no back-charging).
    moved = replace(MONTHLY, start_date="2029-01-15", manual_amount="30.00")
    upcoming, _ = service.preview(
        moved, currency="USD", as_of=today, is_new=False, subscription=stored(db, sub.id)
    )
    service.update_subscription(db, admin, sub.id, moved, as_of=today)

    sub = stored(db, sub.id)
    assert sub.next_charge_date == date(2030, 4, 15) == upcoming[0][0]
    assert sub.recurring_count == 3

    # A start date in the future: its first period is the next charge, whatever was
    # charged before (not three periods after it).
    later = replace(MONTHLY, start_date="2030-05-01", manual_amount="30.00")
    service.update_subscription(db, admin, sub.id, later, as_of=today)
    sub = stored(db, sub.id)
    assert sub.next_charge_date == date(2030, 5, 1)
    assert charge_next_period(db, gateway, sub.id, as_of=date(2030, 5, 1), now=NOW).status == (
        "charged"
    )
    assert stored(db, sub.id).next_charge_date == date(2030, 6, 1)


def test_does_raising_the_count_reopen_a_complete_schedule(
    db: Session, gateway: SandboxGateway
) -> None:
    twice = replace(MONTHLY, stop_rule="count", stop_count="1")
    sub = create(db, gateway, twice)
    assert charge_next_period(db, gateway, sub.id, as_of=AS_OF, now=NOW).status == "charged"
    assert stored(db, sub.id).status == "complete"

    service.update_subscription(
        db, user(db, US_ADMIN), sub.id, replace(twice, stop_count="3"), as_of=date(2030, 4, 2)
    )

    sub = stored(db, sub.id)
    assert (sub.status, sub.next_charge_date) == ("recurring", date(2030, 4, 10))


# -- stop, resume, set back to recurring, skip -----------------------------------------


def test_does_resuming_a_stopped_schedule_skip_the_periods_missed(
    db: Session, gateway: SandboxGateway
) -> None:
    sub = create(db, gateway)
    admin = user(db, US_ADMIN)
    assert charge_next_period(db, gateway, sub.id, as_of=AS_OF, now=NOW).status == "charged"

    service.pause(db, admin, sub.id, now=NOW)
    assert (stored(db, sub.id).status, stored(db, sub.id).next_charge_date) == ("stopped", None)
    assert (
        charge_next_period(db, gateway, sub.id, as_of=date(2030, 4, 1), now=NOW).status == "not_due"
    )

    resumed = service.resume(db, admin, sub.id, as_of=date(2030, 4, 20), now=NOW)

    # Feb 10, Mar 10 and Apr 10 were missed while stopped: the next charge is May 10.
    assert (resumed.status, resumed.next_charge_date) == ("recurring", date(2030, 5, 10))
    assert resumed.recurring_count == 1
    result = charge_next_period(db, gateway, sub.id, as_of=date(2030, 4, 20), now=NOW)
    assert result.status == "not_due"


def test_does_resuming_before_the_next_date_keep_it(db: Session, gateway: SandboxGateway) -> None:
    sub = create(db, gateway, replace(MONTHLY, start_date="2030-03-01"))
    admin = user(db, US_ADMIN)
    service.pause(db, admin, sub.id, now=NOW)

    resumed = service.resume(db, admin, sub.id, as_of=date(2030, 2, 1), now=NOW)

    assert resumed.next_charge_date == date(2030, 3, 1)


def test_does_setting_an_error_schedule_back_to_recurring_not_charge_the_missed_periods(
    db: Session, gateway: SandboxGateway
) -> None:
    sub = create(db, gateway)
    customer_card(db, gateway, DECLINES_AFTER_ATTACH, sub)
    sub = into_error(db, gateway, sub, AS_OF)
    assert sub.next_charge_date == AS_OF and sub.last_error

    again = service.set_recurring(db, user(db, US_ADMIN), sub.id, as_of=date(2030, 3, 5), now=NOW)

    assert (again.status, again.last_error, again.next_charge_date) == (
        "recurring",
        "",
        date(2030, 3, 10),
    )


def test_are_the_buttons_refused_in_the_wrong_state(db: Session, gateway: SandboxGateway) -> None:
    sub = create(db, gateway)
    admin = user(db, US_ADMIN)

    with pytest.raises(Conflict):
        service.resume(db, admin, sub.id, as_of=AS_OF, now=NOW)
    with pytest.raises(Conflict):
        service.set_recurring(db, admin, sub.id, as_of=AS_OF, now=NOW)
    service.pause(db, admin, sub.id, now=NOW)
    with pytest.raises(Conflict):
        service.pause(db, admin, sub.id, now=NOW)
    with pytest.raises(Conflict):
        service.skip_next(db, admin, sub.id)


def test_does_skipping_move_the_next_charge_one_period(
    db: Session, gateway: SandboxGateway
) -> None:
    sub = create(db, gateway, replace(MONTHLY, start_date="2030-01-31"))

    skipped = service.skip_next(db, user(db, US_ADMIN), sub.id, now=NOW)

    assert skipped.next_charge_date == date(2030, 2, 28)
    assert service.skip_next(db, user(db, US_ADMIN), sub.id).next_charge_date == date(2030, 3, 31)
    assert count(db, Payment, Payment.subscription_id == sub.id) == 0


# -- charge now ------------------------------------------------------------------------


def test_is_charge_now_a_manual_charge_that_keeps_the_next_date(
    db: Session, gateway: SandboxGateway
) -> None:
    sub = create(db, gateway, replace(MONTHLY, start_date="2030-01-20"))
    manager = user(db, US_SALES)

    charge = service.charge_now(db, gateway, manager, sub.id, now=NOW)

    assert charge.approved and charge.amount == 2500
    assert charge.next_charge_date == date(2030, 1, 20)  # the schedule did not move
    payment = db.get(Payment, charge.payment_id)
    assert payment is not None
    assert (payment.is_recurring, payment.period_date, payment.purpose_key) == (
        False,
        None,
        f"manual:{sub.id}:1",
    )
    sub = stored(db, sub.id)
    assert (sub.recurring_count, sub.amount_charged, sub.next_charge_date) == (
        0,
        2500,
        date(2030, 1, 20),
    )
    # The billing run still charges the Jan 20 period: a manual charge is not recurring.
    assert (
        charge_next_period(db, gateway, sub.id, as_of=date(2030, 1, 20), now=NOW).status
        == "charged"
    )
    assert count(db, Invoice, Invoice.subscription_id == sub.id, Invoice.status == "paid") == 2


def test_then_does_skipping_the_next_charge_avoid_charging_twice(
    db: Session, gateway: SandboxGateway
) -> None:
    sub = create(db, gateway, replace(MONTHLY, start_date="2030-01-20"))
    admin = user(db, US_ADMIN)
    service.charge_now(db, gateway, admin, sub.id, now=NOW)

    service.skip_next(db, admin, sub.id)

    assert (
        charge_next_period(db, gateway, sub.id, as_of=date(2030, 1, 20), now=NOW).status
        == "not_due"
    )
    assert stored(db, sub.id).next_charge_date == date(2030, 2, 20)


def test_is_one_page_charged_once_however_often_it_is_submitted(
    db: Session, gateway: SandboxGateway
) -> None:
    sub = create(db, gateway)
    admin = user(db, US_ADMIN)
    page = service.subscription_overview(db, admin, sub.id, as_of=AS_OF)

    first = service.charge_now(
        db, gateway, admin, sub.id, now=NOW, sequence=page.next_manual_sequence
    )
    second = service.charge_now(
        db, gateway, admin, sub.id, now=NOW, sequence=page.next_manual_sequence
    )

    assert first.payment_id == second.payment_id and second.approved
    assert count(db, Payment, Payment.subscription_id == sub.id) == 1
    with pytest.raises(Conflict):  # a page older than the last charge
        service.charge_now(
            db, gateway, admin, sub.id, now=NOW, sequence=page.next_manual_sequence + 5
        )


def test_does_charging_the_whole_balance_now_complete_the_schedule(
    db: Session, gateway: SandboxGateway
) -> None:
    balance = replace(
        MONTHLY,
        amount_mode="balance",
        manual_amount="",
        total_amount="80.00",
        stop_rule="balance_due",
    )
    sub = create(db, gateway, balance)

    charge = service.charge_now(db, gateway, user(db, US_ADMIN), sub.id, now=NOW)

    assert charge.amount == 8000 and charge.next_charge_date is None
    assert stored(db, sub.id).status == "complete"
    with pytest.raises(Conflict):
        service.charge_now(db, gateway, user(db, US_ADMIN), sub.id, now=NOW)


def test_does_a_declined_manual_charge_keep_the_status(
    db: Session, gateway: SandboxGateway
) -> None:
    sub = create(db, gateway)
    customer_card(db, gateway, DECLINES_AFTER_ATTACH, sub)

    charge = service.charge_now(db, gateway, user(db, US_ADMIN), sub.id, now=NOW)

    assert charge.status == "declined" and charge.message
    assert (stored(db, sub.id).status, stored(db, sub.id).amount_charged) == ("recurring", 0)


# -- tenancy ---------------------------------------------------------------------------


def test_can_a_partner_user_reach_another_partners_subscription(
    db: Session, gateway: SandboxGateway
) -> None:
    sub = create(db, gateway)
    german, jordan = user(db, DE_ADMIN), user(db, JORDAN)

    for who in (german, jordan):
        with pytest.raises(NotFound):
            service.subscription_overview(db, who, sub.id, as_of=AS_OF)
        with pytest.raises(NotFound):
            service.update_subscription(db, who, sub.id, MONTHLY, as_of=AS_OF)
        with pytest.raises(NotFound):
            service.pause(db, who, sub.id, now=NOW)
        with pytest.raises(NotFound):
            service.charge_now(db, gateway, who, sub.id, now=NOW)
        with pytest.raises(NotFound):
            service.skip_next(db, who, sub.id)
    with pytest.raises(NotFound):
        create(db, gateway, by=DE_ADMIN)  # Jordan is not a German customer
    assert stored(db, sub.id).status == "recurring"


def test_can_a_customer_reach_someone_elses_subscription(
    db: Session, gateway: SandboxGateway
) -> None:
    makers = create(db, gateway, customer="makers@example.com")
    jordan = user(db, JORDAN)

    with pytest.raises(NotFound):
        service.customer_subscription(db, jordan, makers.id)
    with pytest.raises(NotFound):
        service.replace_payment_method(db, gateway, jordan, makers.id, card(gateway))
    with pytest.raises(NotFound):
        service.retry_now(db, gateway, jordan, makers.id, as_of=AS_OF, now=NOW, base_url="")
    with pytest.raises(NotFound):  # partner users do not use the customer's buttons
        service.customer_subscription(db, user(db, US_ADMIN), makers.id)


# -- the customer's card and Retry now -------------------------------------------------


def test_does_retrying_after_updating_to_a_good_card_return_to_recurring(
    db: Session, gateway: SandboxGateway
) -> None:
    sub = create(db, gateway)
    customer_card(db, gateway, DECLINES_AFTER_ATTACH, sub)
    sub = into_error(db, gateway, sub, AS_OF)
    jordan = user(db, JORDAN)

    saved = service.replace_payment_method(db, gateway, jordan, sub.id, card(gateway))
    result = service.retry_now(
        db, gateway, jordan, sub.id, as_of=date(2030, 1, 12), now=NOW, base_url=""
    )

    assert result.status == "charged" and result.period == AS_OF
    sub = stored(db, sub.id)
    assert (sub.status, sub.last_error, sub.recurring_count) == ("recurring", "", 1)
    assert (sub.payment_method_id, sub.next_charge_date) == (saved.id, date(2030, 2, 10))
    methods = db.exec(
        select(PaymentMethod).where(PaymentMethod.customer_account_id == sub.customer_account_id)
    ).all()
    assert [m.id for m in methods if m.is_default] == [saved.id]


def test_does_retrying_with_a_card_that_still_declines_stay_in_error(
    db: Session, gateway: SandboxGateway
) -> None:
    sub = create(db, gateway)
    customer_card(db, gateway, DECLINES_AFTER_ATTACH, sub)
    sub = into_error(db, gateway, sub, AS_OF)
    jordan = user(db, JORDAN)

    customer_card(db, gateway, DECLINES_AFTER_ATTACH, sub)  # another one: saves, then declines
    result = service.retry_now(
        db, gateway, jordan, sub.id, as_of=date(2030, 1, 12), now=NOW, base_url=""
    )

    assert result.status == "declined" and result.message
    sub = stored(db, sub.id)
    assert (sub.status, sub.recurring_count, sub.next_charge_date) == ("error", 0, AS_OF)
    assert sub.last_error == result.message
    service.set_recurring(db, user(db, US_ADMIN), sub.id, as_of=AS_OF, now=NOW)
    with pytest.raises(Conflict):  # only a schedule in error can be retried
        service.retry_now(db, gateway, jordan, sub.id, as_of=AS_OF, now=NOW, base_url="")


def test_is_a_card_the_processor_refuses_reported_at_the_card_field(
    db: Session, gateway: SandboxGateway
) -> None:
    sub = create(db, gateway)
    before = count(db, PaymentMethod)

    with pytest.raises(InvalidInput) as raised:
        customer_card(db, gateway, "4000000000000002", sub)

    assert raised.value.field == "card_number"
    assert count(db, PaymentMethod) == before


def test_does_a_customer_without_a_processor_customer_get_one(
    db: Session, gateway: SandboxGateway
) -> None:
    account = account_of(db, JORDAN)
    account.gateway_customer_ref = ""
    db.add(account)
    db.commit()
    sub = create(db, gateway)

    service.replace_payment_method(db, gateway, user(db, JORDAN), sub.id, card(gateway))

    db.rollback()
    refreshed = db.get(CustomerAccount, account.id, populate_existing=True)
    assert refreshed is not None and refreshed.gateway_customer_ref.startswith("cus_")
