"""Dunning jobs: the cron tick that starts each partner's day, the partner's sweep (which
selects the invoices due and fans out), and its chunks. Ids and dates only."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Final

from rq import Queue, Retry

from app.clock import utcnow
from app.jobs.context import job_app, job_session
from app.jobs.dispatch import enqueue_emails

if TYPE_CHECKING:
    from app.services.dunning_runs import SweepPlan

CHUNK_TIMEOUT: Final = 1800
# A failed sweep start or chunk (a lost connection, a deadlock) is tried again: both are
# safe to run twice.
RETRY_INTERVALS: Final = (10, 60, 300)


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
                    job_timeout=CHUNK_TIMEOUT,
                    retry=_retry(),
                )
                queued += 1
    return queued


def run_partner_dunning(partner_id: int, run_date: date) -> dict[str, int]:
    """Start the partner's sweep of its local day ``run_date``: select the ids of the
    invoices due and queue one ``sweep_chunk_job`` per chunk of them (its number n of N),
    all in one Redis round trip.

    Safe to run again: a new sweep supersedes an unfinished one, and invoices already
    handled are no longer due.
    """
    from app.services.dunning_runs import JOB_CHUNK_SIZE, start_sweep

    chunk_size = job_app().config.get("DUNNING_JOB_CHUNK_SIZE", JOB_CHUNK_SIZE)
    with job_session() as session:
        plan = start_sweep(
            session, partner_id=partner_id, run_date=run_date, now=utcnow(), chunk_size=chunk_size
        )
        if plan.chunks:  # after the commit: a chunk job always finds its sweep recorded
            _queue_chunks(plan)
    return {
        "run": plan.run_id,
        "sweep": plan.sweep,
        "invoices": plan.invoices,
        "chunks": plan.chunks,
    }


def sweep_chunk_job(run_id: int, sweep: int, chunk: int, chunks: int) -> dict[str, int]:
    """Handle chunk ``chunk`` of the ``chunks`` of a run's sweep, its invoices still due,
    and queue their emails (safe to run again: a chunk already done does
    nothing, and work it did before a crash is neither redone nor counted twice)."""
    from app.services.dunning_runs import sweep_run_chunk

    settings = job_app().config["PORTICO"]
    with job_session() as session:
        counts = sweep_run_chunk(
            session,
            run_id=run_id,
            sweep=sweep,
            chunk=chunk,
            chunks=chunks,
            now=utcnow(),
            base_url=settings.base_url,
            secret=settings.secret_key,
            on_emails=_enqueue_quietly,
        )
    return dict(counts)


def _queue_chunks(plan: SweepPlan) -> None:
    """One job per chunk, sent in one pipeline (its number n of N; the job selects its
    invoices still due and loads the rest)."""
    from app.extensions import queue

    retry = _retry()
    queue("default").enqueue_many(
        [
            Queue.prepare_data(
                "app.jobs.dunning.sweep_chunk_job",
                args=(plan.run_id, plan.sweep, n, plan.chunks),
                job_id=f"dunning-{plan.run_id}-{plan.sweep}-{n}",
                description=(
                    f"dunning run {plan.run_id}, sweep {plan.sweep}, chunk {n + 1}/{plan.chunks}"
                ),
                timeout=CHUNK_TIMEOUT,
                retry=retry,
            )
            for n in range(plan.chunks)
        ]
    )


def _retry() -> Retry:
    return Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS))


def _enqueue_quietly(email_ids: list[int]) -> None:
    try:
        enqueue_emails(email_ids)
    except Exception:  # the rows are committed; the outbox sweeper sends them later
        job_app().logger.exception("could not enqueue dunning emails %s", email_ids[:20])
