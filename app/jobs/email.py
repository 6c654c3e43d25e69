"""Email jobs."""

from __future__ import annotations

from app.jobs.context import job_app, job_session
from app.services.email import deliver


def send_email(message_id: int) -> bool:
    """Send outbox message ``message_id`` if it is still unsent."""
    with job_session() as session:
        return deliver(session, message_id, smtp_url=job_app().config["PORTICO"].smtp_url)


def send_emails(message_ids: list[int]) -> int:
    """Send each still-unsent message of ``message_ids``; returns how many were sent.

    A message the mail server refuses is recorded as failed (``deliver`` does that) and
    the rest still go; the outbox sweeper retries the failed ones later.
    """
    sent = 0
    smtp_url = job_app().config["PORTICO"].smtp_url
    with job_session() as session:
        for message_id in message_ids:
            try:
                sent += deliver(session, message_id, smtp_url=smtp_url)
            except Exception:
                session.rollback()
                job_app().logger.exception("sending outbox message %s failed", message_id)
    return sent
