"""A real worker SIGKILLed in the middle of a billing run: after a restarted worker and
cron's own jobs (the reconciler, the outbox sweeper), each period is charged once at the
processor, the ledger agrees, and each charge's receipt reaches the mail server once.

``test_billing_exactly_once`` kills a billing-only worker at chosen moments and settles
by calling the reconciler's service; this one kills a worker that also delivers email
(to a local SMTP server, as in production) and lets the worker run cron's job functions
``reconcile_payments`` and ``sweep_outbox``. Time passing is the one thing simulated:
the rows the killed worker left are made ten minutes older, so they count as stale.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import Session, col, func, select

from app.clock import utcnow
from app.extensions import queue
from app.jobs.billing import enqueue_run
from app.models import BillingRun, OutboxMessage, Payment, PaymentStatus
from app.models.sandbox import SandboxCharge
from app.services.email import message_id_header
from tests.fakes.smtp_server import LocalSMTPServer
from tests.services.billing_helpers import (
    approved_recurring,
    assert_ledger_matches_processor,
    due_customers,
    make_partner,
    sandbox,
)

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIPTIONS = 50


def _worker(log: Path, database_url: str, redis_url: str, smtp_url: str) -> subprocess.Popen:
    """A burst worker on the billing and email queues, as production runs them."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SMTP_URL": smtp_url,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "PORTICO_ENV": "test",
        "PAYMENT_GATEWAY": "sandbox",
        "SANDBOX_LATENCY_MS": "20",  # about a second of charging: room to kill in the middle
        "GATEWAY_RATE_PER_SECOND": "500",
        "BILLING_BATCH_SIZE": "10",
        "BILLING_GATEWAY_THREADS": "1",
    }
    rq = str(Path(sys.executable).with_name("rq"))
    command = [rq, "worker", "--burst", "--url", redis_url, "-w", "app.jobs.worker.PorticoWorker"]
    with log.open("ab") as out:
        return subprocess.Popen(
            [*command, "billing", "email"], cwd=ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _approved(engine) -> int:  # noqa: ANN001
    with Session(engine) as session:
        query = select(func.count()).select_from(Payment).where(Payment.status == "approved")
        return int(session.exec(query).one())


def _finish(worker: subprocess.Popen, log: Path) -> None:
    assert worker.wait(timeout=120) == 0, log.read_text()[-3000:]


def _ten_minutes_pass(engine) -> None:  # noqa: ANN001
    """Age what the killed worker left (open attempts, unsent emails) by ten minutes."""
    earlier = utcnow() - timedelta(minutes=10)
    with Session(engine) as session:
        session.exec(
            update(Payment)
            .where(col(Payment.status) == PaymentStatus.PENDING)
            .values(created_at=earlier)
        )  # type: ignore[call-overload]
        session.exec(
            update(OutboxMessage)
            .where(col(OutboxMessage.status) != "sent")
            .values(created_at=earlier)
        )  # type: ignore[call-overload]
        session.commit()


def test_does_a_run_whose_worker_is_killed_charge_each_period_once_with_one_receipt(
    app, engine, db_session, database_url, redis_url, tmp_path
) -> None:
    today = utcnow().date()
    gateway = sandbox(app)
    with app.app_context():
        partner = make_partner(db_session)
        subs = due_customers(db_session, gateway, partner, SUBSCRIPTIONS, due=today)
        run_id = enqueue_run(partner.id, today)  # type: ignore[arg-type]
    log = tmp_path / "worker.log"

    with LocalSMTPServer() as smtp:
        worker = _worker(log, database_url, redis_url, smtp.url)
        deadline = time.monotonic() + 60
        while _approved(engine) < 12 and worker.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.005)
        assert worker.poll() is None, "the run ended before the worker could be killed"
        with suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=20)
        assert 0 < _approved(engine) < SUBSCRIPTIONS  # killed mid-run, with work left

        # Ten minutes later cron's reconciler and outbox sweeper come round, and the day's
        # run is queued again (``flask billing run --enqueue``) behind the reconciler, so
        # periods whose answer was lost are settled by asking, not charged again. A new
        # worker takes them and what was still queued (the killed chunk's job died).
        _ten_minutes_pass(engine)
        with app.app_context():
            queue("billing").enqueue("app.jobs.billing.reconcile_payments")
            assert enqueue_run(partner.id, today) == run_id  # type: ignore[arg-type]
            queue("email").enqueue("app.jobs.maintenance.sweep_outbox")
        worker = _worker(log, database_url, redis_url, smtp.url)
        _finish(worker, log)
        received = Counter(smtp.message_ids())

    approved = approved_recurring(db_session)
    assert sorted((p.subscription_id, p.period_date) for p in approved) == sorted(
        (s.id, today) for s in subs
    )
    succeeded = db_session.exec(
        select(SandboxCharge.idempotency_key).where(SandboxCharge.status == "succeeded")
    ).all()
    assert sorted(succeeded) == sorted(p.idempotency_key for p in approved)  # once each
    assert_ledger_matches_processor(db_session, gateway)
    receipts = db_session.exec(select(OutboxMessage).where(OutboxMessage.kind == "receipt")).all()
    assert sorted(r.dedupe_key for r in receipts) == sorted(
        f"receipt:payment:{p.id}" for p in approved
    )
    assert {r.status for r in receipts} == {"sent"}
    # The mail server got each receipt exactly once, and nothing else.
    assert received == Counter(message_id_header(r.id) for r in receipts)  # type: ignore[arg-type]
    run = db_session.get(BillingRun, run_id, populate_existing=True)
    assert run is not None and run.status == "complete"


def test_is_a_chunk_whose_worker_was_killed_tried_again_by_rq_until_the_run_completes(
    app, engine, db_session, database_url, redis_url, tmp_path
) -> None:
    """Nobody queues the run again: RQ finds the dead worker's chunk abandoned and retries
    it (after the reconciler has settled what the dead worker left open)."""
    from rq import Queue
    from rq.job import Job

    from app.jobs.billing import CHUNK_TIMEOUT

    today = utcnow().date()
    gateway = sandbox(app)
    with app.app_context():
        partner = make_partner(db_session)
        subs = due_customers(db_session, gateway, partner, SUBSCRIPTIONS, due=today)
        run_id = enqueue_run(partner.id, today)  # type: ignore[arg-type]
    log = tmp_path / "worker.log"

    with LocalSMTPServer() as smtp:
        worker = _worker(log, database_url, redis_url, smtp.url)
        deadline = time.monotonic() + 60
        while _approved(engine) < 12 and worker.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.005)
        assert worker.poll() is None, "the run ended before the worker could be killed"
        with suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=20)
        assert 0 < _approved(engine) < SUBSCRIPTIONS

        # Ten minutes on: cron's reconciler runs; RQ's sweep of abandoned jobs (done by
        # any worker once the job's timeout has passed) fails the dead chunk and, since
        # it has retries left, schedules it; the scheduler then queues it behind.
        _ten_minutes_pass(engine)
        with app.app_context():
            billing = queue("billing")
            billing.enqueue("app.jobs.billing.reconcile_payments")
        rq_queue = Queue("billing", connection=billing.connection)
        rq_queue.started_job_registry.cleanup(timestamp=time.time() + CHUNK_TIMEOUT + 120)
        retried = rq_queue.scheduled_job_registry.get_job_ids()
        assert len(retried) == 1, "the dead worker's chunk was not scheduled for a retry"
        job = Job.fetch(retried[0], connection=billing.connection)
        assert job.func_name == "app.jobs.billing.run_chunk"
        rq_queue.scheduled_job_registry.remove(job)
        rq_queue.enqueue_job(job)
        worker = _worker(log, database_url, redis_url, smtp.url)
        _finish(worker, log)

    approved = approved_recurring(db_session)
    assert sorted((p.subscription_id, p.period_date) for p in approved) == sorted(
        (s.id, today) for s in subs
    )
    assert_ledger_matches_processor(db_session, gateway)
    run = db_session.get(BillingRun, run_id, populate_existing=True)
    assert run is not None and run.status == "complete"
