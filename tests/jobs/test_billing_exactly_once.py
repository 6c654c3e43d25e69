"""Exactly once: concurrent runs, a real worker killed mid-chunk, a lost gateway answer.

In every case the sandbox processor's records and Portico's ledger must agree: each due
period charged once, none missed, and ``reconcile.verify`` lists no difference.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from datetime import date, timedelta
from pathlib import Path

from sqlmodel import Session, col, func, select

from app.clock import utcnow
from app.gateway.sandbox import SandboxGateway
from app.jobs.billing import enqueue_run
from app.models import BillingRun, Invoice, OutboxMessage, Payment, PaymentStatus, Subscription
from app.models.sandbox import SandboxCharge
from app.services.billing_run import process_chunk, start_run
from app.services.reconcile import open_attempts, settle, verify
from tests.services.billing_helpers import (
    add_subscription,
    approved_recurring,
    assert_ledger_matches_processor,
    due_customers,
    make_customer,
    make_partner,
    run_billing,
    sandbox,
)

ROOT = Path(__file__).resolve().parents[2]


def _assert_each_charged_once(session: Session, subs: list[Subscription], day: date) -> None:
    """Every subscription has exactly one approved recurring charge, for ``day``."""
    session.rollback()
    approved = approved_recurring(session)
    assert sorted((p.subscription_id, p.period_date) for p in approved) == sorted(
        (s.id, day) for s in subs
    )
    for sub in subs:
        fresh = session.get(Subscription, sub.id, populate_existing=True)
        assert fresh is not None
        assert (fresh.status, fresh.recurring_count, fresh.amount_charged) == (
            "recurring", 1, sub.manual_amount,
        )  # fmt: skip
        assert fresh.next_charge_date is not None and fresh.next_charge_date > day


# -- (a) two runs of the same day at once ------------------------------------------------


def test_do_two_billing_runs_started_at_once_charge_every_period_exactly_once(
    app, engine, db_session
) -> None:
    today = utcnow().date()
    gateway = SandboxGateway(engine, latency_ms=10)  # widens the window between claim and answer
    with app.app_context():
        partner = make_partner(db_session)
        subs = due_customers(db_session, gateway, partner, 40, due=today)

    start = threading.Barrier(2)
    picked: list[int] = []
    failures: list[BaseException] = []

    def one_run() -> None:
        try:
            with app.app_context(), Session(engine, expire_on_commit=False) as session:
                start.wait(timeout=10)
                plan = start_run(session, partner_id=partner.id, run_date=today, chunk_size=15)
                picked.append(sum(len(c) for c in plan.chunks))
                for chunk in plan.chunks:
                    process_chunk(
                        session, gateway, run_id=plan.run.id, subscription_ids=chunk,
                        now=utcnow(),
                    )  # fmt: skip
        except BaseException as exc:  # reported in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert len(picked) == 2 and min(picked) > 0  # both runs really found due work

    _assert_each_charged_once(db_session, subs, today)
    assert len([c for c in gateway.list_charges() if c.status == "succeeded"]) == 40
    assert_ledger_matches_processor(db_session, gateway)
    runs = db_session.exec(select(BillingRun)).all()
    assert len(runs) == 1  # one run per (partner, day), whoever started it
    assert runs[0].charged == 40


# -- (b) a real worker killed with SIGKILL in the middle of a chunk ------------------------


def _worker(log: Path, database_url: str, redis_url: str, *, burst: bool) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "PORTICO_ENV": "test",
        "PAYMENT_GATEWAY": "sandbox",
        "SANDBOX_LATENCY_MS": "20",
        "GATEWAY_RATE_PER_SECOND": "500",
        # Small batches, one call at a time: each kill lands between, or inside, batches.
        "BILLING_BATCH_SIZE": "10",
        "BILLING_GATEWAY_THREADS": "1",
    }
    rq = str(Path(sys.executable).with_name("rq"))
    command = [rq, "worker", "--url", redis_url, "-w", "app.jobs.worker.PorticoWorker"]
    command += ["--burst"] if burst else []
    with log.open("ab") as out:
        return subprocess.Popen(
            [*command, "billing"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so it can be killed as one
        )  # fmt: skip


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (the RQ work horse runs in its own group)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _kill_hard(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and its work horse, each by its process group."""
    for pid in [*_descendants(worker.pid), worker.pid]:
        with suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    worker.wait(timeout=20)


def _attempts(engine) -> int:  # noqa: ANN001
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(Payment)).one())


def _moved_but_unrecorded(engine) -> int:  # noqa: ANN001
    """Pending attempts whose money the processor already took (the answer is in flight)."""
    with Session(engine) as session:
        query = (
            select(func.count())
            .select_from(Payment)
            .join(SandboxCharge, col(SandboxCharge.idempotency_key) == Payment.idempotency_key)
            .where(Payment.status == PaymentStatus.PENDING)
        )
        return int(session.exec(query).one())


# When each kill lands: right after an attempt is committed (before the processor is
# reached), while the processor's answer is on its way back, and at arbitrary moments.
KILL_MOMENTS = ("after_claim", "after_money_moved", "any", "after_money_moved")


def _wait_for_moment(engine, worker, moment: str, before: int, log: Path) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 90
    in_flight = _moved_but_unrecorded(engine)  # left by earlier kills
    while _attempts(engine) < before + 12 and worker.poll() is None:
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.005)
    if moment == "after_money_moved":
        soon = time.monotonic() + 3
        while _moved_but_unrecorded(engine) == in_flight and time.monotonic() < soon:
            time.sleep(0.001)
    elif moment == "any":
        time.sleep(0.013)


def test_does_a_run_whose_worker_is_killed_mid_chunk_charge_every_period_once(
    app, engine, db_session, database_url, redis_url, tmp_path
) -> None:
    today = utcnow().date()
    gateway = sandbox(app)
    with app.app_context():
        partner = make_partner(db_session)
        subs = due_customers(db_session, gateway, partner, 100, due=today)
        run_id = enqueue_run(partner.id, today)  # type: ignore[arg-type]
    log = tmp_path / "worker.log"

    for moment in KILL_MOMENTS:
        before = _attempts(engine)
        worker = _worker(log, database_url, redis_url, burst=True)
        _wait_for_moment(engine, worker, moment, before, log)
        assert worker.poll() is None, "the worker finished the chunk before it could be killed"
        _kill_hard(worker)
        with app.app_context():
            assert enqueue_run(partner.id, today) == run_id  # the same run, resumed
        charged = len(approved_recurring(db_session))
        assert 0 < charged < len(subs)  # killed in the middle, with work left

    worker = _worker(log, database_url, redis_url, burst=True)
    assert worker.wait(timeout=180) == 0, log.read_text()[-3000:]

    # Attempts a killed worker left pending are stale ten minutes later: ask the processor.
    later = utcnow() + timedelta(minutes=10)
    stale = open_attempts(db_session, now=later)
    assert stale  # at least one kill left an attempt whose outcome Portico never heard
    with app.app_context():
        for attempt in stale:
            settle(db_session, gateway, attempt, now=later)
        assert enqueue_run(partner.id, today) == run_id
    worker = _worker(log, database_url, redis_url, burst=True)
    assert worker.wait(timeout=180) == 0, log.read_text()[-3000:]

    _assert_each_charged_once(db_session, subs, today)
    assert open_attempts(db_session, now=later) == []
    assert len([c for c in gateway.list_charges() if c.status == "succeeded"]) == len(subs)
    assert_ledger_matches_processor(db_session, gateway)
    invoices = db_session.exec(select(Invoice)).all()
    assert sorted(i.subscription_id for i in invoices) == sorted(s.id for s in subs)
    assert {i.status for i in invoices} == {"paid"}
    run = db_session.get(BillingRun, run_id, populate_existing=True)
    assert run is not None and run.status == "complete"


# -- (c) a gateway timeout after the charge went through ----------------------------------


def _lost_answer_setup(app, db_session):  # noqa: ANN001, ANN202
    today = utcnow().date()
    gateway = sandbox(app)
    partner = make_partner(db_session)
    account, method = make_customer(db_session, gateway, partner, "Robin Reefer")
    sub = add_subscription(
        db_session, account, method, frequency="monthly", start_date=today, manual_amount=2500
    )
    gateway.inject("timeout_after_charge")
    run = run_billing(db_session, gateway, partner.id, today)  # type: ignore[arg-type]
    assert (run.charged, run.unknown) == (0, 1)
    attempt = db_session.exec(select(Payment).where(Payment.subscription_id == sub.id)).one()
    assert attempt.status == PaymentStatus.UNKNOWN
    db_session.refresh(sub)
    assert (sub.recurring_count, sub.amount_charged, sub.next_charge_date) == (0, 0, today)
    assert db_session.exec(select(Invoice)).all() == []
    # The money did move: the processor has the charge, under the attempt's key.
    charges = gateway.list_charges()
    assert [(c.idempotency_key, c.status) for c in charges] == [
        (attempt.idempotency_key, "succeeded")
    ]
    return today, gateway, partner, sub, attempt


def _assert_settled_once(db_session, gateway, sub, attempt, today) -> None:  # noqa: ANN001
    db_session.rollback()
    assert db_session.get(Payment, attempt.id, populate_existing=True).status == "approved"
    assert db_session.exec(select(Payment).where(Payment.subscription_id == sub.id)).all() == [
        attempt
    ]
    fresh = db_session.get(Subscription, sub.id, populate_existing=True)
    assert (fresh.recurring_count, fresh.amount_charged) == (1, 2500)
    assert fresh.next_charge_date is not None and fresh.next_charge_date > today
    invoice = db_session.exec(select(Invoice).where(Invoice.subscription_id == sub.id)).one()
    assert (invoice.status, invoice.total, invoice.amount_paid) == ("paid", 2500, 2500)
    receipts = db_session.exec(select(OutboxMessage).where(OutboxMessage.kind == "receipt")).all()
    assert len(receipts) == 1
    assert len(gateway.list_charges()) == 1
    assert_ledger_matches_processor(db_session, gateway)


def test_is_a_lost_answer_settled_by_the_reconciler_and_never_charged_again(
    app, db_session
) -> None:
    with app.app_context():
        today, gateway, partner, sub, attempt = _lost_answer_setup(app, db_session)
        assert [d.note for d in verify(db_session, gateway)] == ["approved there, not here"]

        later = utcnow() + timedelta(minutes=10)
        assert [a.id for a in open_attempts(db_session, now=later)] == [attempt.id]
        status, email_ids = settle(db_session, gateway, attempt, now=later)
        assert status == "charged" and len(email_ids) == 1

        run = run_billing(db_session, gateway, partner.id, today)
        assert run.charged == 0  # the next run finds nothing left to charge
        _assert_settled_once(db_session, gateway, sub, attempt, today)
        assert open_attempts(db_session, now=later) == []


def test_does_the_next_run_settle_a_lost_answer_by_asking_not_by_charging_again(
    app, db_session
) -> None:
    with app.app_context():
        today, gateway, partner, sub, attempt = _lost_answer_setup(app, db_session)

        run = run_billing(db_session, gateway, partner.id, today)  # the same day, resumed
        assert (run.charged, run.unknown) == (1, 1)
        _assert_settled_once(db_session, gateway, sub, attempt, today)
