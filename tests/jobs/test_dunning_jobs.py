"""The daily dunning through ``rq cron``'s job, a real RQ worker and a real Redis: each
partner's sweep starts once at its local dunning hour, and its emails reach SMTP."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from rq import Queue
from sqlmodel import select

from app.clock import utcnow
from app.jobs.dunning import start_daily_dunning
from app.jobs.worker import PorticoWorker
from app.models import DunningRun, Invoice, OutboxMessage, OutboxStatus
from app.services.dunning_runs import DUNNING_HOUR, partners_due_to_sweep
from tests.fakes.smtp_server import LocalSMTPServer
from tests.services.dunning_helpers import make_account, make_invoice, make_partner


def _zone_at(local_hour: int) -> str:
    """A fixed-offset zone where it is now ``local_hour`` o'clock (Etc/GMT signs are inverted)."""
    offset = (local_hour - utcnow().hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}"


def _work(app, *queues: str) -> None:  # noqa: ANN001
    redis = app.extensions["portico"].redis
    worker = PorticoWorker([Queue(name, connection=redis) for name in queues], connection=redis)
    worker.work(burst=True)


def test_does_cron_start_each_partners_sweep_once_at_its_local_hour(app, db_session) -> None:
    with app.app_context():
        awake = make_partner(db_session, "alder", timezone=_zone_at(12))
        asleep = make_partner(db_session, "birch", timezone=_zone_at(3))
        today = utcnow().astimezone(ZoneInfo(awake.timezone)).date()
        invoice = make_invoice(
            db_session, awake, make_account(db_session, awake, "Ada"), due=today - timedelta(5)
        )
        make_invoice(
            db_session, asleep, make_account(db_session, asleep, "Eve"), due=today - timedelta(5)
        )
        assert [p.slug for p, _ in partners_due_to_sweep(db_session, now=utcnow())] == ["alder"]
        db_session.rollback()

    settings = app.config["PORTICO"]
    with LocalSMTPServer() as smtp:
        settings.smtp_url = smtp.url
        try:
            assert start_daily_dunning() == 1
            assert start_daily_dunning() == 0  # the run row exists: not queued again
            assert app.extensions["portico"].queue("default").count == 1
            _work(app, "default")
            _work(app, "email")
        finally:
            settings.smtp_url = ""

    runs = db_session.exec(select(DunningRun)).all()
    assert [(r.partner_id, r.run_date, r.status, r.sent, r.emails) for r in runs] == [
        (awake.id, today, "complete", 1, 2),
    ]
    received = sorted((rcpt[0], email["Subject"]) for _sender, rcpt, email in smtp.messages)
    assert received == [
        ("ada@customers.example", f"Reminder: invoice {invoice.number} is 5 days overdue"),
        ("admin@alder.example", f"Overdue 5 days: Ada, invoice {invoice.number}"),
    ]
    db_session.expire_all()
    assert {m.status for m in db_session.exec(select(OutboxMessage)).all()} == {OutboxStatus.SENT}
    assert db_session.get(Invoice, invoice.id).status == "overdue"
    assert DUNNING_HOUR == 8


def test_does_a_rerun_of_the_days_job_send_nothing_more(app, db_session) -> None:
    with app.app_context():
        partner = make_partner(db_session, "alder")
        today = utcnow().date()
        make_invoice(
            db_session, partner, make_account(db_session, partner, "Ada"), due=today - timedelta(5)
        )
    queue = app.extensions["portico"].queue("default")
    for _ in range(2):  # an operator queues the same day again by hand
        queue.enqueue("app.jobs.dunning.run_partner_dunning", partner.id, today)
    _work(app, "default")

    run = db_session.exec(select(DunningRun)).one()
    assert (run.sent, run.emails, run.status) == (1, 2, "complete")
    assert len(db_session.exec(select(OutboxMessage)).all()) == 2
