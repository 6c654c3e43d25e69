"""SMTP delivery of batches: one connection, refusals, reconnection, RQ retries with backoff.

A real RQ worker on a real Redis sends to a real SMTP server on 127.0.0.1
(``tests/fakes/smtp_server.py``), which counts its connections and can refuse a chosen
recipient or hang up mid-batch.
"""

from __future__ import annotations

import time

from rq.job import Job, JobStatus
from sqlmodel import Session

from app.jobs.dispatch import enqueue_emails
from app.models import OutboxStatus
from app.services.email import deliver_many
from tests.jobs.email_support import mail_server, make_messages, rows, work


def _queue_and_work(app, ids: list[int]) -> None:  # noqa: ANN001
    with app.app_context():
        assert enqueue_emails(ids) == 1
    work(app)


def test_does_a_batch_of_fifty_go_over_one_smtp_connection(app, engine) -> None:
    ids = make_messages(engine, 50)
    with mail_server(app) as smtp:
        _queue_and_work(app, ids)
    assert smtp.sessions == 1
    assert sorted(smtp.message_ids()) == sorted(f"<outbox-{i}@portico.example>" for i in ids)
    sent = rows(engine, ids)
    assert {(r.status, r.attempts, r.last_error) for r in sent} == {(OutboxStatus.SENT, 1, "")}
    assert all(r.sent_at is not None for r in sent)


def test_does_delivery_sign_in_with_the_user_and_password_of_the_url(app, engine) -> None:
    ids = make_messages(engine, 3)
    with mail_server(app, credentials=("mailer", "s3cret")) as smtp:
        _queue_and_work(app, ids)
    assert smtp.logins == [("mailer", "s3cret")]  # once for the whole batch
    assert len(smtp.messages) == 3


def test_are_wrong_credentials_recorded_on_every_message(app, engine) -> None:
    ids = make_messages(engine, 2)
    with mail_server(app, credentials=("mailer", "s3cret")) as smtp:
        app.config["PORTICO"].smtp_url = smtp.url.replace("s3cret", "wrong")
        _queue_and_work(app, ids)
    assert smtp.messages == []
    errors = {r.last_error for r in rows(engine, ids)}
    assert errors == {"SMTPAuthenticationError: 535 5.7.8 Authentication credentials invalid"}


def test_does_a_refused_recipient_fail_only_its_own_message(app, engine) -> None:
    ids = make_messages(engine, 10)
    with mail_server(app) as smtp:
        smtp.refuse("payer4@example.com", "550 5.1.1 <payer4@example.com>: no such mailbox")
        _queue_and_work(app, ids)
    assert smtp.sessions == 1  # the refusal did not cost the connection
    assert len(smtp.messages) == 9
    after = rows(engine, ids)
    refused = after[4]
    assert refused.status == OutboxStatus.REJECTED  # 550 is for good: not tried again
    assert refused.attempts == 1
    assert refused.last_error == (
        "Recipient refused: 550 5.1.1 <payer4@example.com>: no such mailbox (payer4@example.com)"
    )
    assert [r.status for r in after[:4] + after[5:]] == [OutboxStatus.SENT] * 9


def test_is_a_failed_message_retried_by_rq_after_a_pause_and_then_sent(app, engine) -> None:
    app.config["EMAIL_RETRY_INTERVALS"] = [2, 2]
    ids = make_messages(engine, 3)
    with mail_server(app) as smtp:
        smtp.refuse("payer1@example.com", "451 4.3.0 Mailbox busy, try later", times=1)
        _queue_and_work(app, ids)

        first = rows(engine, ids)
        assert [r.status for r in first] == ["sent", "failed", "sent"]
        assert first[1].last_error.startswith("Recipient refused: 451 4.3.0 Mailbox busy")
        redis = app.extensions["portico"].redis
        scheduled = app.extensions["portico"].queue("email").scheduled_job_registry
        [job_id] = scheduled.get_job_ids()
        assert Job.fetch(job_id, connection=redis).get_status() == JobStatus.SCHEDULED

        work(app, with_scheduler=True)  # too early: the pause has not passed
        assert rows(engine, ids)[1].status == OutboxStatus.FAILED

        deadline = time.monotonic() + 10
        while rows(engine, ids)[1].status != OutboxStatus.SENT:
            assert time.monotonic() < deadline, "the retry never ran"
            time.sleep(0.2)
            work(app, with_scheduler=True)
    retried = rows(engine, ids)[1]
    assert (retried.status, retried.attempts, retried.last_error) == ("sent", 2, "")
    assert len(smtp.messages) == 3  # the two sent the first time were not sent again
    assert smtp.sessions == 2  # one per run of the job


def test_does_a_dropped_connection_get_reopened_once_and_the_batch_go_on(app, engine) -> None:
    ids = make_messages(engine, 30)
    with mail_server(app) as smtp:
        smtp.drop_after(10)
        _queue_and_work(app, ids)
    assert smtp.sessions == 2
    assert sorted(smtp.message_ids()) == sorted(f"<outbox-{i}@portico.example>" for i in ids)
    assert {(r.status, r.attempts) for r in rows(engine, ids)} == {(OutboxStatus.SENT, 1)}


def test_does_a_421_answer_fail_its_message_and_the_next_one_reconnect(app, engine) -> None:
    ids = make_messages(engine, 6)
    with mail_server(app) as smtp:
        smtp.refuse("payer2@example.com", "421 4.3.2 Service shutting down", times=1)
        _queue_and_work(app, ids)
    assert smtp.sessions == 2  # smtplib closes on a 421; the batch reconnected once
    after = rows(engine, ids)
    assert [r.status for r in after] == ["sent", "sent", "failed", "sent", "sent", "sent"]
    assert after[2].last_error.startswith("Recipient refused: 421 4.3.2 Service shutting down")


def test_does_a_second_drop_fail_the_rest_of_the_batch_for_a_retry(app, engine) -> None:
    ids = make_messages(engine, 30)
    with mail_server(app) as smtp:
        smtp.drop_after(10, times=2)
        _queue_and_work(app, ids)
        assert smtp.sessions == 2  # no third connection in one run
        after = rows(engine, ids)
        assert [r.status for r in after] == ["sent"] * 20 + ["failed"] * 10
        assert {r.last_error for r in after[20:]} == {
            "SMTPServerDisconnected: Connection unexpectedly closed"
        }
        # The next run of the job (RQ's retry; here a direct call) sends only those ten.
        with Session(engine) as session:
            report = deliver_many(session, ids, smtp_url=smtp.url)
    assert report.sent == ids[20:]
    assert len(smtp.messages) == 30
    assert len(set(smtp.message_ids())) == 30


def test_is_a_permanent_refusal_not_retried_and_a_temporary_one_is(app, engine) -> None:
    app.config["EMAIL_RETRY_INTERVALS"] = [1, 1]
    ids = make_messages(engine, 3)
    with mail_server(app) as smtp:
        smtp.refuse("payer0@example.com", "550 5.1.1 No such user here")
        smtp.refuse("payer1@example.com", "451 4.3.0 Mailbox busy, try later", times=1)
        _queue_and_work(app, ids)
        assert [r.status for r in rows(engine, ids)] == ["rejected", "failed", "sent"]

        deadline = time.monotonic() + 10
        while rows(engine, ids)[1].status != OutboxStatus.SENT:  # RQ's retry of the job
            assert time.monotonic() < deadline, "the retry never ran"
            time.sleep(0.2)
            work(app, with_scheduler=True)
    after = rows(engine, ids)
    assert after[0].status == OutboxStatus.REJECTED
    assert after[0].attempts == 1  # the retry left the rejected message alone
    assert (after[1].status, after[1].attempts) == (OutboxStatus.SENT, 2)
    assert len(smtp.messages) == 2
