"""The billing run's command and jobs charge customers' scheduled payments of their day:
``flask billing run --date`` (and ``--dry-run``), and the job ``enqueue_run`` queues."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.extensions import queue
from app.jobs.billing import enqueue_run, run_scheduled_payments
from app.models import BillingRun, Invoice, Payment, ScheduledPayment
from tests.services.billing_helpers import assert_ledger_matches_processor
from tests.services.invoice_helpers import fresh
from tests.services.scheduled_helpers import (
    DAY,
    Customer,
    charges_of,
    make_customer_user,
    open_invoice,
    sandbox,
    schedule,
)

PAY_ON = DAY + timedelta(days=10)


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


def _two_schedules(app: Flask, db: Session, casey: Customer):  # noqa: ANN202
    """One payment scheduled for PAY_ON and one for the day after."""
    today = schedule(app, db, casey, open_invoice(app, db, casey), pay_on=PAY_ON).scheduled
    later_day = PAY_ON + timedelta(days=1)
    later = schedule(app, db, casey, open_invoice(app, db, casey), pay_on=later_day).scheduled
    return today, later


def test_does_billing_run_with_a_date_charge_that_days_scheduled_payment_only(
    ctx: Flask, db: Session, casey: Customer
) -> None:
    due, later = _two_schedules(ctx, db, casey)

    result = ctx.test_cli_runner().invoke(args=["billing", "run", "--date", PAY_ON.isoformat()])

    assert result.exit_code == 0, result.output
    assert "scheduled payments: charged 1, declined 0" in result.output
    assert fresh(db, ScheduledPayment, due.id).status == "paid"
    assert fresh(db, Invoice, due.invoice_id).status == "paid"
    assert fresh(db, ScheduledPayment, later.id).status == "scheduled"
    assert len(charges_of(sandbox(ctx), due)) == 1 and charges_of(sandbox(ctx), later) == []
    run = db.exec(select(BillingRun)).one()
    assert (run.run_date, run.charged, run.totals) == (PAY_ON, 1, {"USD": 10000})
    assert_ledger_matches_processor(db, sandbox(ctx))  # billing verify knows the attempt

    verified = ctx.test_cli_runner().invoke(args=["billing", "verify"])
    assert verified.exit_code == 0 and "agree" in verified.output

    again = ctx.test_cli_runner().invoke(args=["billing", "run", "--date", PAY_ON.isoformat()])
    assert "scheduled payments: charged 0, declined 0" in again.output
    assert len(charges_of(sandbox(ctx), due)) == 1


def test_does_a_dry_run_list_the_scheduled_payments_without_charging(
    ctx: Flask, db: Session, casey: Customer
) -> None:
    due, later = _two_schedules(ctx, db, casey)
    invoice = fresh(db, Invoice, due.invoice_id)

    result = ctx.test_cli_runner().invoke(
        args=["billing", "run", "--date", PAY_ON.isoformat(), "--dry-run"]
    )

    assert result.exit_code == 0, result.output
    assert "1 scheduled payment(s) would be charged" in result.output
    [line] = [line for line in result.output.splitlines() if f"scheduled #{due.id}" in line]
    assert PAY_ON.isoformat() in line and "$100.00" in line and invoice.number in line
    assert f"scheduled #{later.id}" not in result.output
    db.rollback()
    assert [p.purpose_key for p in db.exec(select(Payment)).all()] == []
    assert fresh(db, ScheduledPayment, due.id).status == "scheduled"


def test_does_the_queued_run_include_a_job_for_the_days_scheduled_payments(
    ctx: Flask, db: Session, casey: Customer
) -> None:
    due, later = _two_schedules(ctx, db, casey)
    billing = queue("billing")
    billing.empty()

    enqueue_run(casey.shop.partner.id, PAY_ON)  # type: ignore[arg-type]

    jobs = [j for j in billing.get_jobs() if j.func_name.endswith("run_scheduled_payments")]
    assert [j.args for j in jobs] == [(casey.shop.partner.id, PAY_ON)]
    assert fresh(db, ScheduledPayment, due.id).status == "scheduled"  # queued, not yet run

    tally = run_scheduled_payments(*jobs[0].args)  # what the worker does with it

    assert tally == {"charged": 1}
    assert fresh(db, ScheduledPayment, due.id).status == "paid"
    assert fresh(db, ScheduledPayment, later.id).status == "scheduled"
    assert run_scheduled_payments(*jobs[0].args) == {}  # run again: nothing charged twice
    assert len(charges_of(sandbox(ctx), due)) == 1
    billing.empty()
