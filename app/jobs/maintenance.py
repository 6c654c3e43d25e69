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


def complete_canceled_subscriptions() -> int:
    """Cron: for every partner, on its local day, mark subscriptions the customer canceled
    ``complete`` once the end of their paid period has passed. Safe to repeat; returns how
    many were completed. Raises database errors for RQ to record.
    """
    from sqlmodel import select

    from app.clock import local_today
    from app.models import Partner
    from app.services.portal_subscriptions import complete_ended_cancellations

    completed = 0
    with job_session() as session:
        partners = session.exec(select(Partner.id, Partner.timezone)).all()
        session.rollback()
        for partner_id, timezone in partners:
            completed += complete_ended_cancellations(
                session,
                partner_id=partner_id,  # type: ignore[arg-type]
                as_of=local_today(timezone),
                now=utcnow(),
            )
    return completed


def apply_webhook_events() -> int:
    """Cron: apply processor events left unapplied (applying failed, or the delivery died
    after storing the event) that no redelivery applied; returns how many were applied.
    Safe to repeat (ADR 0018). Raises database errors for RQ to record.
    """
    from app.extensions import gateway
    from app.services.webhooks import apply_unapplied

    with job_session() as session:
        done = apply_unapplied(session, gateway(), now=utcnow())
        enqueue_emails([i for delivery in done for i in delivery.email_ids])
    return len(done)
