"""Email jobs."""

from __future__ import annotations

from app.jobs.context import job_app, job_session
from app.services.email import deliver


def send_email(message_id: int) -> bool:
    """Send outbox message ``message_id`` if it is still unsent."""
    with job_session() as session:
        return deliver(session, message_id, smtp_url=job_app().config["PORTICO"].smtp_url)
