"""Housekeeping jobs that ``rq cron`` runs on an interval."""

from __future__ import annotations

from datetime import timedelta

from app.clock import utcnow
from app.jobs.context import job_session
from app.jobs.dispatch import enqueue_emails
from app.services.email import unsent_message_ids


def sweep_outbox() -> int:
    """Enqueue emails a crash left unsent (written but never enqueued). Returns the count."""
    with job_session() as session:
        ids = unsent_message_ids(session, older_than=utcnow() - timedelta(minutes=1))
        session.rollback()
        return enqueue_emails(ids)
