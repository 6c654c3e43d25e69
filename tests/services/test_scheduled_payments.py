"""Scheduled invoice payments: the customer's rules, canceling, and the run that charges
them on their day exactly once (decline, settled invoice, lost answer, crashed worker)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.domain.errors import Conflict, FieldsInvalid, NotFound
from app.models import (
    AuditEvent,
    Invoice,
    OutboxMessage,
    ScheduledPayment,
)
from app.services import payment_scheduling as scheduling
from app.services.scheduled_payments import (
    charge_due_scheduled_payments,
)
from tests.services.invoice_helpers import fresh, pay_by_card
from tests.services.scheduled_helpers import (
    DAY,
    NOW,
    Customer,
    charges_of,
    form_for,
    make_customer_user,
    make_overdue,
    open_invoice,
    sandbox,
    schedule,
)

TOMORROW = DAY + timedelta(days=1)


@pytest.fixture
def ctx(app: Flask) -> Iterator[Flask]:
    with app.app_context():
        yield app


@pytest.fixture
def db(ctx: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def casey(ctx: Flask, db: Session) -> Customer:
    return make_customer_user(ctx, db)


@pytest.fixture
def invoice(ctx: Flask, db: Session, casey: Customer) -> Invoice:
    return open_invoice(ctx, db, casey)


def allow(db: Session, casey: Customer, **settings: bool) -> None:
    partner = casey.shop.partner
    for name, value in settings.items():
        setattr(partner, name, value)
    db.add(partner)
    db.commit()


def errors_of(exc: pytest.ExceptionInfo[FieldsInvalid]) -> dict[str, str]:
    return exc.value.errors


def rows(db: Session) -> list[ScheduledPayment]:
    db.rollback()
    return list(db.exec(select(ScheduledPayment).order_by(ScheduledPayment.id)).all())


def run(app: Flask, db: Session, casey: Customer, day, *, gateway=None, now=NOW):  # noqa: ANN001, ANN201
    """The scheduled-payment part of the partner's billing run of ``day``."""
    return charge_due_scheduled_payments(
        db, gateway or sandbox(app), partner_id=casey.shop.partner.id, as_of=day, now=now,  # type: ignore[arg-type]
        base_url="http://localhost",
    )  # fmt: skip


def emails(db: Session, kind: str) -> list[OutboxMessage]:
    db.rollback()
    return list(db.exec(select(OutboxMessage).where(OutboxMessage.kind == kind)).all())


# -- scheduling ------------------------------------------------------------------------


def test_can_a_customer_schedule_for_tomorrow_and_for_the_due_date(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    second = open_invoice(ctx, db, casey)

    made = schedule(ctx, db, casey, invoice, pay_on=TOMORROW)
    on_due = schedule(ctx, db, casey, second, pay_on=second.due_date)

    assert made.created and on_due.created
    assert made.summary == "Payment of $100.00 scheduled for Mar 3, 2026 with Visa •••• 4242."
    row = fresh(db, ScheduledPayment, made.scheduled.id)
    assert (row.status, row.amount, row.pay_on) == ("scheduled", 10000, TOMORROW)
    assert (row.invoice_id, row.payment_method_id, row.created_by_user_id) == (
        invoice.id, casey.method.id, casey.user.id,
    )  # fmt: skip
    assert fresh(db, ScheduledPayment, on_due.scheduled.id).pay_on == second.due_date
    confirmation = emails(db, "scheduled_payment_created")
    assert len(confirmation) == 2 and made.email_ids == (confirmation[0].id,)
    body = confirmation[0].text_body
    assert "Mar 3, 2026" in body and "Visa •••• 4242" in body and "$100.00" in body
    event = db.exec(
        select(AuditEvent).where(
            AuditEvent.subject_type == "scheduled_payment", AuditEvent.subject_id == row.id
        )
    ).first()
    assert event is not None and event.action == "scheduled_payment.created"
    assert event.actor_user_id == casey.user.id


@pytest.mark.parametrize("days", [0, -1])
def test_is_today_or_a_past_day_refused(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice, days: int
) -> None:
    with pytest.raises(FieldsInvalid) as exc:
        schedule(ctx, db, casey, invoice, pay_on=DAY + timedelta(days=days))

    assert "after today" in errors_of(exc)["pay_on"]
    assert rows(db) == []


def test_is_a_malformed_or_missing_date_refused_with_every_bad_field(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    data = scheduling.ScheduleInput(pay_on="31/03/2026", amount="", payment_method_id="nope")

    with pytest.raises(FieldsInvalid) as exc:
        scheduling.schedule_payment(
            db, casey.user, invoice.id, data, token=form_for(ctx, invoice), as_of=DAY, now=NOW,
        )  # fmt: skip

    assert set(errors_of(exc)) == {"pay_on", "payment_method_id"}
    assert rows(db) == []


def test_is_a_day_after_the_due_date_refused_unless_the_partner_allows_it(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    after_due = invoice.due_date + timedelta(days=1)
    with pytest.raises(FieldsInvalid) as exc:
        schedule(ctx, db, casey, invoice, pay_on=after_due)
    assert errors_of(exc)["pay_on"] == "Choose a day on or before the due date, Apr 1, 2026."

    allow(db, casey, portal_schedule_after_due=True)
    made = schedule(ctx, db, casey, invoice, pay_on=after_due)

    assert made.created and fresh(db, ScheduledPayment, made.scheduled.id).pay_on == after_due


def test_is_a_day_more_than_a_year_ahead_refused_even_where_after_due_is_allowed(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    allow(db, casey, portal_schedule_after_due=True)

    with pytest.raises(FieldsInvalid) as exc:
        schedule(ctx, db, casey, invoice, pay_on=DAY.replace(year=DAY.year + 1) + timedelta(1))

    assert "within a year" in errors_of(exc)["pay_on"]
    assert schedule(ctx, db, casey, invoice, pay_on=DAY.replace(year=DAY.year + 1)).created


def test_can_an_overdue_invoice_be_scheduled_only_where_the_partner_allows_it(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    make_overdue(db, invoice)
    page = scheduling.schedule_form(db, casey.user, invoice.id, as_of=DAY)  # type: ignore[arg-type]
    assert page.past_due and "Pay it now instead" in scheduling.past_due_message(page)

    with pytest.raises(Conflict, match="can't be scheduled"):
        schedule(ctx, db, casey, invoice, pay_on=TOMORROW)
    assert rows(db) == []

    allow(db, casey, portal_schedule_after_due=True)
    assert schedule(ctx, db, casey, invoice, pay_on=TOMORROW).created


def test_must_the_full_balance_be_scheduled_without_partial_payments(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    with pytest.raises(FieldsInvalid) as exc:
        schedule(ctx, db, casey, invoice, pay_on=TOMORROW, amount="40.00")

    assert errors_of(exc)["amount"] == "This invoice must be paid in full ($100.00)."
    assert schedule(ctx, db, casey, invoice, pay_on=TOMORROW, amount="100.00").created


def test_is_more_than_the_balance_refused(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    allow(db, casey, allow_partial_payments=True)

    with pytest.raises(FieldsInvalid) as exc:
        schedule(ctx, db, casey, invoice, pay_on=TOMORROW, amount="100.01")

    assert "more than the $100.00 due" in errors_of(exc)["amount"]
    assert rows(db) == []


def test_can_two_schedules_together_exceed_the_balance(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    allow(db, casey, allow_partial_payments=True)
    schedule(ctx, db, casey, invoice, pay_on=TOMORROW, amount="60.00")

    with pytest.raises(FieldsInvalid) as exc:
        schedule(ctx, db, casey, invoice, pay_on=TOMORROW + timedelta(1), amount="50.00")
    assert "left to schedule: $40.00" in errors_of(exc)["amount"]

    rest = schedule(ctx, db, casey, invoice, pay_on=TOMORROW + timedelta(1))  # the default
    assert rest.scheduled.amount == 4000
    assert [r.amount for r in rows(db)] == [6000, 4000]


def test_do_two_schedules_sent_at_once_never_exceed_the_balance(
    ctx: Flask, engine: Engine, db: Session, casey: Customer, invoice: Invoice
) -> None:
    allow(db, casey, allow_partial_payments=True)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def one(amount: str) -> None:
        with ctx.app_context(), Session(engine, expire_on_commit=False) as session:
            start.wait(timeout=10)
            try:
                schedule(ctx, session, casey, invoice, pay_on=TOMORROW, amount=amount)
                outcomes.append("made")
            except FieldsInvalid:
                outcomes.append("refused")

    threads = [threading.Thread(target=one, args=(a,)) for a in ("70.00", "60.00")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes) == ["made", "refused"]
    assert len(rows(db)) == 1


def test_is_another_accounts_invoice_not_found(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    other_partner = make_customer_user(ctx, db, "alder")

    with pytest.raises(NotFound):
        schedule(ctx, db, other_partner, invoice, pay_on=TOMORROW, method=other_partner.method)
    with pytest.raises(NotFound):
        scheduling.schedule_form(db, other_partner.user, invoice.id, as_of=DAY)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        scheduling.schedule_form(db, casey.shop.admin, invoice.id, as_of=DAY)  # type: ignore[arg-type]
    assert rows(db) == []


def test_is_a_method_of_another_account_refused(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    other = make_customer_user(ctx, db, "alder")

    with pytest.raises(FieldsInvalid) as exc:
        schedule(ctx, db, casey, invoice, pay_on=TOMORROW, method=other.method)

    assert errors_of(exc) == {"payment_method_id": "Choose one of your saved payment methods."}
    assert rows(db) == []


def test_is_a_paid_invoice_a_conflict(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    pay_by_card(ctx, db, casey.shop, invoice, invoice.total)

    with pytest.raises(Conflict, match="paid"):
        schedule(ctx, db, casey, fresh(db, Invoice, invoice.id), pay_on=TOMORROW)

    assert rows(db) == []


def test_does_sending_the_same_form_twice_schedule_once(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    form = form_for(ctx, invoice)

    first = schedule(ctx, db, casey, invoice, pay_on=TOMORROW, form=form)
    again = schedule(ctx, db, casey, invoice, pay_on=TOMORROW, form=form)

    assert (first.created, again.created) == (True, False)
    assert again.scheduled.id == first.scheduled.id and again.summary == first.summary
    assert len(rows(db)) == 1 and len(emails(db, "scheduled_payment_created")) == 1


def test_does_the_same_form_sent_twice_at_once_schedule_once(
    ctx: Flask, engine: Engine, db: Session, casey: Customer, invoice: Invoice
) -> None:
    form = form_for(ctx, invoice)
    start = threading.Barrier(2)
    made: list[scheduling.Scheduled] = []

    def one() -> None:
        with ctx.app_context(), Session(engine, expire_on_commit=False) as session:
            start.wait(timeout=10)
            made.append(schedule(ctx, session, casey, invoice, pay_on=TOMORROW, form=form))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(m.created for m in made) == [False, True]
    assert len({m.scheduled.id for m in made}) == 1 and len(rows(db)) == 1


# -- canceling -------------------------------------------------------------------------


def test_can_a_customer_cancel_their_scheduled_payment(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    made = schedule(ctx, db, casey, invoice, pay_on=TOMORROW)

    row = scheduling.cancel_scheduled_payment(db, casey.user, made.scheduled.id, now=NOW)  # type: ignore[arg-type]

    assert (row.status, row.canceled_at) == ("canceled", NOW)
    assert fresh(db, ScheduledPayment, row.id).status == "canceled"
    assert run(ctx, db, casey, TOMORROW) == {}  # the run has nothing to charge
    assert charges_of(sandbox(ctx), row) == []
    # The whole balance may be scheduled again once it is canceled.
    assert schedule(ctx, db, casey, invoice, pay_on=TOMORROW).created


def test_can_another_customer_cancel_it(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    made = schedule(ctx, db, casey, invoice, pay_on=TOMORROW)
    other = make_customer_user(ctx, db, "alder")

    for user in (other.user, casey.shop.admin):
        with pytest.raises(NotFound):
            scheduling.cancel_scheduled_payment(db, user, made.scheduled.id, now=NOW)  # type: ignore[arg-type]

    assert fresh(db, ScheduledPayment, made.scheduled.id).status == "scheduled"


@pytest.mark.parametrize(
    ("status", "message"),
    [("processing", "already being processed"), ("paid", "already been made")],
)
def test_is_a_payment_no_longer_waiting_not_cancelable(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice, status: str, message: str
) -> None:
    made = schedule(ctx, db, casey, invoice, pay_on=TOMORROW)
    row = fresh(db, ScheduledPayment, made.scheduled.id)
    row.status = status
    db.add(row)
    db.commit()

    with pytest.raises(Conflict, match=message):
        scheduling.cancel_scheduled_payment(db, casey.user, row.id, now=NOW)  # type: ignore[arg-type]

    assert fresh(db, ScheduledPayment, row.id).status == status


def test_is_a_second_schedule_of_a_fully_scheduled_invoice_refused(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    schedule(ctx, db, casey, invoice, pay_on=TOMORROW)

    with pytest.raises(FieldsInvalid) as exc:
        schedule(ctx, db, casey, invoice, pay_on=TOMORROW + timedelta(days=1))

    assert errors_of(exc)["amount"].startswith("A payment of this invoice is already scheduled.")
    page = scheduling.schedule_form(db, casey.user, invoice.id, as_of=DAY)  # type: ignore[arg-type]
    assert page.fully_scheduled and page.available == 0 and len(page.scheduled) == 1
