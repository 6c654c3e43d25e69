"""Housekeeping jobs that ``rq cron`` runs on an interval."""

from __future__ import annotations

from app.clock import utcnow
from app.jobs.context import job_session
from app.jobs.dispatch import enqueue_emails
from app.services.email import unsent_message_ids


def sweep_outbox() -> int:
    """Queue outbox messages left unsent; returns how many jobs were queued.

    Picks up messages a crash left unqueued and failed ones whose backoff has passed, up
    to the attempts cap (``unsent_message_ids``). Its jobs carry no RQ retry: the next
    sweep is the retry. Raises redis or database errors for RQ to record.
    """
    with job_session() as session:
        ids = unsent_message_ids(session, now=utcnow())
        session.rollback()
        return enqueue_emails(ids, retry=False)
