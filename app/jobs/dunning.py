"""Dunning jobs: the cron tick that starts each partner's day, and the partner's sweep."""

from __future__ import annotations

from datetime import date

from app.clock import utcnow
from app.jobs.context import job_app, job_session
from app.jobs.dispatch import enqueue_emails


def start_daily_dunning() -> int:
    """Cron: queue the sweep of every partner whose local dunning hour has come today.

    Claiming the (partner, day) run row first means a day's sweep is queued once,
    whatever the number of cron ticks or schedulers. Returns how many were queued.
    """
    from app.extensions import queue
    from app.services.dunning_runs import claim_run, partners_due_to_sweep

    queued = 0
    with job_session() as session:
        due = [(p.id, day) for p, day in partners_due_to_sweep(session, now=utcnow())]
        session.rollback()
        for partner_id, day in due:
            _run, created = claim_run(session, partner_id=partner_id, run_date=day)  # type: ignore[arg-type]
            if created:
                queue("default").enqueue(
                    "app.jobs.dunning.run_partner_dunning",
                    partner_id,
                    day,
                    job_id=f"dunning-{partner_id}-{day.isoformat()}",
                    job_timeout=3600,
                )
                queued += 1
    return queued


def run_partner_dunning(partner_id: int, run_date: date) -> dict[str, int]:
    """Sweep one partner's invoices for its local day ``run_date`` (safe to run again)."""
    from app.services.dunning_runs import run_dunning

    settings = job_app().config["PORTICO"]
    with job_session() as session:
        run = run_dunning(
            session,
            partner_id=partner_id,
            run_date=run_date,
            now=utcnow(),
            base_url=settings.base_url,
            secret=settings.secret_key,
            on_emails=_enqueue_quietly,
        )
        return {"sent": run.sent, "skipped": run.skipped, "emails": run.emails}


def _enqueue_quietly(email_ids: list[int]) -> None:
    try:
        enqueue_emails(email_ids)
    except Exception:  # the rows are committed; the outbox sweeper sends them later
        job_app().logger.exception("could not enqueue dunning emails %s", email_ids[:20])
