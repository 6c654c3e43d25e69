"""The partner's dunning job fans out: it selects the invoices due and queues a job per
chunk of them (its first and last id) in one Redis round trip; a real worker's chunk
jobs complete the run (real Redis, real RQ worker, the tests' SMTP server)."""

from __future__ import annotations

from datetime import date, timedelta

from redis.connection import AbstractConnection
from rq import Queue
from sqlmodel import select

from app.jobs.dunning import run_partner_dunning
from app.jobs.worker import PorticoWorker
from app.models import DunningRun, OutboxMessage, OutboxStatus
from tests.fakes.smtp_server import LocalSMTPServer
from tests.services.dunning_helpers import make_account, make_invoice, make_partner

DUE = date(2031, 3, 10)
DAY = DUE + timedelta(days=5)


def _due_invoices(app, db_session, count: int) -> tuple[int, list[int]]:  # noqa: ANN001
    with app.app_context():
        partner = make_partner(db_session, "alder")
        ids = [
            make_invoice(
                db_session, partner, make_account(db_session, partner, f"Ada {n}"), due=DUE
            ).id
            for n in range(count)
        ]
    return int(partner.id), ids  # type: ignore[arg-type]


def _work(app, *queues: str) -> None:  # noqa: ANN001
    redis = app.extensions["portico"].redis
    worker = PorticoWorker([Queue(name, connection=redis) for name in queues], connection=redis)
    worker.work(burst=True)


def test_does_the_partners_job_queue_each_chunk_in_one_round_trip(
    app, db_session, monkeypatch
) -> None:
    partner_id, _ids = _due_invoices(app, db_session, 5)
    app.config["DUNNING_JOB_CHUNK_SIZE"] = 2
    default = app.extensions["portico"].queue("default")
    default.get_redis_server_version()  # asked once per connection, as in a warm worker
    sent: list[bytes] = []
    send = AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):  # noqa: ANN001, ANN202
        sent.append(command)
        return send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    result = run_partner_dunning(partner_id, DAY)
    monkeypatch.undo()

    assert len(sent) == 1, "the chunk jobs go to Redis in one pipeline"
    run = db_session.exec(select(DunningRun)).one()
    assert result == {"run": run.id, "sweep": 1, "invoices": 5, "chunks": 3}
    jobs = default.get_jobs()
    assert [(job.func_name, job.args) for job in jobs] == [
        ("app.jobs.dunning.sweep_chunk_job", (run.id, 1, n, 3)) for n in range(3)
    ]
    assert [job.id for job in jobs] == [f"dunning-{run.id}-1-{n}" for n in range(3)]
    assert all(job.retries_left == 3 for job in jobs)
    assert (run.status, run.chunks, run.chunks_done, run.sent) == ("running", 3, 0, 0)


def test_do_the_chunk_jobs_complete_the_run_and_send_each_email_once(app, db_session) -> None:
    partner_id, _ids = _due_invoices(app, db_session, 5)
    app.config["DUNNING_JOB_CHUNK_SIZE"] = 2
    result = run_partner_dunning(partner_id, DAY)
    default = app.extensions["portico"].queue("default")
    # The same chunk queued a second time (an operator's requeue, a retry racing the first).
    default.enqueue("app.jobs.dunning.sweep_chunk_job", result["run"], 1, 0, 3)

    settings = app.config["PORTICO"]
    with LocalSMTPServer() as smtp:
        settings.smtp_url = smtp.url
        try:
            _work(app, "default")
            _work(app, "email")
        finally:
            settings.smtp_url = ""

    db_session.expire_all()
    run = db_session.exec(select(DunningRun)).one()
    figures = (run.status, run.invoices, run.sent, run.emails, run.chunks, run.chunks_done)
    assert figures == ("complete", 5, 5, 10, 3, 3)
    assert run.finished_at is not None
    ids_sent = [email["Message-ID"] for _sender, _rcpt, email in smtp.messages]
    assert len(ids_sent) == len(set(ids_sent)) == 10
    outbox = db_session.exec(select(OutboxMessage)).all()
    assert len(outbox) == 10 and {m.status for m in outbox} == {OutboxStatus.SENT}
