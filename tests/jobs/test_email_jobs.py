"""Email jobs through a real RQ worker on a real Redis: queueing, the sweeper, outbox mode."""

from __future__ import annotations

from email.header import decode_header, make_header

import pytest
from rq.exceptions import DuplicateJobError
from rq.job import Job, JobStatus
from sqlmodel import Session

from app.clock import utcnow
from app.jobs.dispatch import EMAIL_BATCH_SIZE, enqueue_emails
from app.jobs.maintenance import sweep_outbox
from app.models import OutboxMessage, OutboxStatus
from app.services.email import (
    MAX_ATTEMPTS,
    DeliveryFailed,
    add_message,
    deliver,
    deliver_many,
    unsent_message_ids,
)
from tests.fakes.smtp_server import LocalSMTPServer
from tests.jobs.email_support import mail_server, make_messages, row, rows, work


def _one(engine, key: str = "welcome:1", minutes_old: int = 0) -> int:  # noqa: ANN001
    return make_messages(engine, 1, prefix=key, minutes_old=minutes_old)[0]


def _set(engine, message_id: int, **values) -> None:  # noqa: ANN001, ANN003
    with Session(engine) as session:
        message = session.get(OutboxMessage, message_id)
        assert message is not None
        for name, value in values.items():
            setattr(message, name, value)
        session.add(message)
        session.commit()


def test_does_a_real_worker_send_a_queued_email(app, engine) -> None:
    message_id = _one(engine)
    with app.app_context():
        assert enqueue_emails([message_id]) == 1
    work(app)
    sent = row(engine, message_id)
    assert sent.status == OutboxStatus.SENT
    assert sent.attempts == 1
    assert sent.sent_at is not None


def test_is_the_same_message_queued_only_once(app, engine) -> None:
    message_id = _one(engine)
    with app.app_context():
        assert enqueue_emails([message_id, message_id]) == 1
        assert enqueue_emails([message_id]) == 0  # still queued: not again
        queue = app.extensions["portico"].queue("email")
        assert queue.count == 1
        with pytest.raises(DuplicateJobError):
            queue.enqueue(
                "app.jobs.email.send_email", message_id, job_id=f"email-{message_id}", unique=True
            )


def test_can_a_message_be_queued_again_once_its_job_has_ended(app, engine) -> None:
    message_id = _one(engine)
    with app.app_context():
        assert enqueue_emails([message_id]) == 1
        work(app)
        job = Job.fetch(f"email-{message_id}", connection=app.extensions["portico"].redis)
        assert job.get_status() == JobStatus.FINISHED  # its record is kept for a while
        assert enqueue_emails([message_id]) == 1  # "Send again" and the sweeper still can


def test_does_a_second_delivery_of_a_sent_message_do_nothing(app, engine) -> None:
    message_id = _one(engine)
    with LocalSMTPServer() as smtp, Session(engine) as session:
        assert deliver(session, message_id, smtp_url=smtp.url) is True
        assert deliver(session, message_id, smtp_url=smtp.url) is False
        assert len(smtp.messages) == 1
    assert row(engine, message_id).attempts == 1


def test_does_smtp_delivery_carry_text_and_html_parts(app, engine) -> None:
    message_id = _one(engine)
    with LocalSMTPServer() as smtp, Session(engine) as session:
        deliver(session, message_id, smtp_url=smtp.url)
    sender, recipients, email = smtp.messages[0]
    assert recipients == ["payer0@example.com"]
    assert email["Subject"] == "Receipt 0"
    assert email["Message-ID"] == f"<outbox-{message_id}@portico.example>"
    types = [part.get_content_type() for part in email.walk()]
    assert "text/plain" in types and "text/html" in types


def test_do_non_ascii_text_leading_dots_and_long_lines_arrive_intact(app, engine) -> None:
    html = "<p>" + "x" * 3000 + "</p>"  # one line longer than SMTP's 998-octet limit
    text = "Grüße aus Zürich — 25,00 €\n.a line that starts with a dot\n"
    with Session(engine) as session:
        message = add_message(
            session,
            dedupe_key="intl:1",
            kind="receipt",
            to_address="Zoë Payer <zoe@example.com>",
            subject="Quittung — Zahlung erhalten",
            text_body=text,
            html_body=html,
        )
        session.commit()
        message_id = int(message.id)  # type: ignore[arg-type]
    with LocalSMTPServer() as smtp, Session(engine) as session:
        deliver(session, message_id, smtp_url=smtp.url)
    _, recipients, email = smtp.messages[0]
    assert recipients == ["zoe@example.com"]
    assert str(make_header(decode_header(email["Subject"]))) == "Quittung — Zahlung erhalten"
    assert email["Date"] is not None
    parts = {p.get_content_type(): p for p in email.walk() if not p.is_multipart()}
    assert parts["text/plain"].get_payload(decode=True).decode().replace("\r\n", "\n") == text
    assert parts["text/html"].get_payload(decode=True).decode().replace("\r\n", "") == html
    assert max(len(line) for line in email.as_string().splitlines()) <= 998


def test_is_a_message_without_a_recipient_failed_alone(app, engine) -> None:
    ids = make_messages(engine, 2)
    _set(engine, ids[0], to_address="not an address")
    with LocalSMTPServer() as smtp, Session(engine) as session, pytest.raises(DeliveryFailed):
        deliver_many(session, ids, smtp_url=smtp.url)
    first, second = rows(engine, ids)
    assert (first.status, second.status) == ("failed", "sent")
    assert first.last_error == "ValueError: no recipient address in 'not an address'"


def test_is_a_failed_smtp_delivery_recorded_and_raised_for_retry(app, engine) -> None:
    message_id = _one(engine)
    with Session(engine) as session, pytest.raises(DeliveryFailed) as raised:
        deliver(session, message_id, smtp_url="smtp://127.0.0.1:1")
    failed = row(engine, message_id)
    assert failed.status == OutboxStatus.FAILED
    assert failed.attempts == 1
    assert failed.last_error.startswith("ConnectionRefusedError")
    assert raised.value.failed == {message_id: failed.last_error}


def test_is_a_malformed_smtp_url_recorded_on_the_message(app, engine) -> None:
    message_id = _one(engine)
    with Session(engine) as session, pytest.raises(DeliveryFailed):
        deliver(session, message_id, smtp_url="http://mail.example.com")
    assert "SMTP_URL must start with smtp://" in row(engine, message_id).last_error


def test_without_an_smtp_url_does_a_message_stay_in_the_outbox_as_sent(app, engine) -> None:
    ids = make_messages(engine, 3)
    with app.app_context():
        assert enqueue_emails(ids) == 1
    work(app)
    assert [(r.status, r.attempts) for r in rows(engine, ids)] == [(OutboxStatus.SENT, 1)] * 3


def test_does_the_sweeper_enqueue_rows_a_crash_left_behind(app, engine) -> None:
    old = _one(engine, "old:1", minutes_old=5)
    fresh = _one(engine, "fresh:1", minutes_old=0)
    assert sweep_outbox() == 1
    work(app)
    assert row(engine, old).status == OutboxStatus.SENT
    assert row(engine, fresh).status == OutboxStatus.PENDING


def test_does_the_sweeper_wait_longer_after_each_failed_attempt_and_stop_at_the_cap(
    app, engine
) -> None:
    # A failed message with n attempts is swept again once older than 2**n minutes.
    cases = {
        "tried once, 3 minutes old": (1, 3, True),
        "tried 3 times, 7 minutes old": (3, 7, False),
        "tried 3 times, 9 minutes old": (3, 9, True),
        "tried 6 times, 50 minutes old": (6, 50, False),
        "tried 6 times, 70 minutes old": (6, 70, True),
        "at the cap, a week old": (MAX_ATTEMPTS, 7 * 24 * 60, False),
    }
    expected = []
    for n, (name, (attempts, age, due)) in enumerate(cases.items()):
        message_id = _one(engine, f"failed:{n}", minutes_old=age)
        _set(engine, message_id, status=OutboxStatus.FAILED, attempts=attempts, last_error=name)
        if due:
            expected.append(message_id)
    sent = _one(engine, "sent:1", minutes_old=60)
    _set(engine, sent, status=OutboxStatus.SENT, attempts=1)
    with Session(engine) as session:
        assert unsent_message_ids(session, now=utcnow()) == expected


def test_are_sweeper_jobs_queued_without_rq_retries(app, engine) -> None:
    ids = make_messages(engine, 3, minutes_old=5)
    assert sweep_outbox() == 1
    job = app.extensions["portico"].queue("email").jobs[0]
    assert job.retries_left is None  # the next sweep is the retry, with a longer pause
    with app.app_context():
        enqueue_emails([ids[0] + 1000])
    fresh = app.extensions["portico"].queue("email").jobs[-1]
    assert fresh.retries_left == 5


def test_is_a_notification_written_once_per_dedupe_key(app, engine) -> None:
    first = _one(engine, "receipt:7")
    second = _one(engine, "receipt:7")
    assert first == second


def test_is_a_large_backlog_split_into_batches(app, engine) -> None:
    ids = make_messages(engine, EMAIL_BATCH_SIZE * 2 + 1)
    with app.app_context():
        assert enqueue_emails(ids) == 3
        jobs = app.extensions["portico"].queue("email").jobs
    assert sorted(len(job.args[0]) if isinstance(job.args[0], list) else 1 for job in jobs) == [
        1,
        EMAIL_BATCH_SIZE,
        EMAIL_BATCH_SIZE,
    ]


def test_do_many_messages_go_in_one_job_and_each_is_sent_once(app, engine) -> None:
    ids = make_messages(engine, 5)
    with mail_server(app) as smtp:
        with app.app_context():
            assert enqueue_emails(ids) == 1
            assert enqueue_emails(reversed(ids)) == 0  # the same batch, already queued
            assert enqueue_emails(ids[:1]) == 1  # its own job too: still delivered once
            assert app.extensions["portico"].queue("email").count == 2
        work(app)
        assert len(smtp.messages) == 5
    assert {r.status for r in rows(engine, ids)} == {OutboxStatus.SENT}


def test_does_an_unreachable_server_fail_every_message_of_the_batch_visibly(app, engine) -> None:
    ids = make_messages(engine, 3)
    with LocalSMTPServer() as smtp:
        closed = smtp.url
    app.config["PORTICO"].smtp_url = closed  # nothing listens there any more
    try:
        with app.app_context():
            assert enqueue_emails(ids) == 1
        work(app)
    finally:
        app.config["PORTICO"].smtp_url = ""
    failed = rows(engine, ids)
    assert [r.status for r in failed] == [OutboxStatus.FAILED] * 3  # each one shows it
    assert [r.attempts for r in failed] == [1, 1, 1]
    assert {r.last_error.split(":")[0] for r in failed} == {"ConnectionRefusedError"}
    job = app.extensions["portico"].queue("email").scheduled_job_registry.get_job_ids()
    assert len(job) == 1  # RQ retries the job later
