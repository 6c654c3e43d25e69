"""Email jobs: deliver outbox messages. They take ids only and let failures reach RQ."""

from __future__ import annotations

from app.jobs.context import job_app, job_session
from app.services.email import deliver_many


def send_email(message_id: int) -> int:
    """Send outbox message ``message_id`` if it is still unsent; returns 1 if sent, else 0.

    Raises:
        DeliveryFailed: the server did not take it (the row says why); RQ retries the job.
    """
    return send_emails([message_id])


def send_emails(message_ids: list[int]) -> int:
    """Send every still-unsent message of ``message_ids`` over one SMTP connection.

    Returns how many were sent. A message the server refuses is marked failed and the
    rest still go (see ``deliver_many``).

    Raises:
        DeliveryFailed: after the whole batch, when any message was not accepted, so
            RQ retries the job with backoff; the retry sends only the unsent ones.
    """
    smtp_url = job_app().config["PORTICO"].smtp_url
    with job_session() as session:
        return len(deliver_many(session, message_ids, smtp_url=smtp_url).sent)
