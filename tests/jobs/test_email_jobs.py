"""Email jobs through a real RQ worker on a real Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rq import Queue
from rq.exceptions import DuplicateJobError
from sqlmodel import Session

from app.clock import utcnow
from app.jobs.dispatch import enqueue_emails
from app.jobs.maintenance import sweep_outbox
from app.jobs.worker import PorticoWorker
from app.models import OutboxMessage, OutboxStatus
from app.services.email import add_message, deliver
from tests.fakes.smtp_server import LocalSMTPServer


def _message(engine, key: str = "welcome:1", minutes_old: int = 0) -> int:  # noqa: ANN001
    with Session(engine) as session:
        message = add_message(
            session,
            dedupe_key=key,
            kind="welcome",
            to_address="payer@example.com",
            subject="Welcome to Portico",
            text_body="Hello in text",
            html_body="<p>Hello in HTML</p>",
        )
        message.created_at = utcnow() - timedelta(minutes=minutes_old)
        session.add(message)
        session.commit()
        return int(message.id)


def _status(engine, message_id: int) -> OutboxMessage:  # noqa: ANN001
    with Session(engine) as session:
        row = session.get(OutboxMessage, message_id)
        assert row is not None
        return row


def _work(app) -> None:  # noqa: ANN001
    redis = app.extensions["portico"].redis
    worker = PorticoWorker([Queue("email", connection=redis)], connection=redis)
    worker.work(burst=True)


def test_does_a_real_worker_send_a_queued_email(app, engine) -> None:
    message_id = _message(engine)
    with app.app_context():
        assert enqueue_emails([message_id]) == 1
    _work(app)
    row = _status(engine, message_id)
    assert row.status == OutboxStatus.SENT
    assert row.attempts == 1
    assert row.sent_at is not None


def test_is_the_same_message_queued_only_once(app, engine) -> None:
    message_id = _message(engine)
    with app.app_context():
        assert enqueue_emails([message_id, message_id]) == 1
        queue = app.extensions["portico"].queue("email")
        with pytest.raises(DuplicateJobError):
            queue.enqueue(
                "app.jobs.email.send_email", message_id, job_id=f"email-{message_id}", unique=True
            )


def test_does_a_second_delivery_of_a_sent_message_do_nothing(app, engine) -> None:
    message_id = _message(engine)
    with LocalSMTPServer() as smtp, Session(engine) as session:
        assert deliver(session, message_id, smtp_url=smtp.url) is True
        assert deliver(session, message_id, smtp_url=smtp.url) is False
        assert len(smtp.messages) == 1


def test_does_smtp_delivery_carry_text_and_html_parts(app, engine) -> None:
    message_id = _message(engine)
    with LocalSMTPServer() as smtp, Session(engine) as session:
        deliver(session, message_id, smtp_url=smtp.url)
    sender, recipients, email = smtp.messages[0]
    assert recipients == ["payer@example.com"]
    assert email["Subject"] == "Welcome to Portico"
    types = [part.get_content_type() for part in email.walk()]
    assert "text/plain" in types and "text/html" in types


def test_is_a_failed_smtp_delivery_recorded_and_raised_for_retry(app, engine) -> None:
    message_id = _message(engine)
    with Session(engine) as session, pytest.raises(OSError):
        deliver(session, message_id, smtp_url="smtp://127.0.0.1:1")
    row = _status(engine, message_id)
    assert row.status == OutboxStatus.FAILED
    assert "Error" in row.last_error


def test_does_the_sweeper_enqueue_rows_a_crash_left_behind(app, engine) -> None:
    old = _message(engine, "old:1", minutes_old=5)
    fresh = _message(engine, "fresh:1", minutes_old=0)
    assert sweep_outbox() == 1
    _work(app)
    assert _status(engine, old).status == OutboxStatus.SENT
    assert _status(engine, fresh).status == OutboxStatus.PENDING


def test_is_a_notification_written_once_per_dedupe_key(app, engine) -> None:
    first = _message(engine, "receipt:7")
    second = _message(engine, "receipt:7")
    assert first == second


@pytest.fixture
def smtp_url(app):  # noqa: ANN001, ANN201
    """Point the job app's mail setting somewhere for one test."""
    from app.jobs.context import use_app

    use_app(app)
    settings = app.config["PORTICO"]

    def point(url: str) -> None:
        settings.smtp_url = url

    yield point
    settings.smtp_url = ""


def test_do_many_messages_go_in_one_job_and_each_is_sent_once(app, engine, smtp_url) -> None:
    ids = [_message(engine, f"receipt:{n}") for n in range(5)]
    with LocalSMTPServer() as smtp:
        smtp_url(smtp.url)
        with app.app_context():
            assert enqueue_emails(ids) == 1
            assert enqueue_emails(reversed(ids)) == 0  # the same batch, already queued
            assert enqueue_emails(ids[:1]) == 1  # its own job too: still delivered once
            assert app.extensions["portico"].queue("email").count == 2
        _work(app)
        assert len(smtp.messages) == 5
    assert {_status(engine, i).status for i in ids} == {OutboxStatus.SENT}


def test_does_a_refused_message_not_stop_the_rest_of_its_batch(app, engine, smtp_url) -> None:
    ids = [_message(engine, f"batch:{n}") for n in range(3)]
    with LocalSMTPServer() as smtp:
        closed = smtp.url
    smtp_url(closed)  # nothing listens there any more: every send fails
    with app.app_context():
        assert enqueue_emails(ids) == 1
    _work(app)
    rows = [_status(engine, i) for i in ids]
    assert [r.status for r in rows] == [OutboxStatus.FAILED] * 3  # each one tried
    assert [r.attempts for r in rows] == [1, 1, 1]
