"""Billing jobs: the daily run, its chunks, customers' scheduled payments, and the
reconciler. Ids and dates only."""

from __future__ import annotations

from datetime import date
from typing import Final

from rq import Queue, Retry

from app.clock import utcnow
from app.jobs.context import job_app, job_session
from app.jobs.dispatch import enqueue_emails

CHUNK_TIMEOUT: Final = 3600
# A chunk whose worker died is found abandoned by RQ (after its timeout) and tried again
# this long after: by then the reconciler (every 5 minutes) has settled the attempts the
# dead worker left open, so the retry charges only what the processor never received.
CHUNK_RETRY_INTERVALS: Final = (600, 1800, 3600)


def _settings():  # noqa: ANN202
    return job_app().config["PORTICO"]


def _limiter():  # noqa: ANN202
    from app.extensions import resources
    from app.services.rate_limit import TokenBucket

    res = resources()
    rate = _settings().gateway_rate_per_second
    # A burst of one keeps every one-second window at most rate + 1 requests, so a limit
    # one below the processor's never meets its 429s, even right after an idle spell.
    return TokenBucket(res.redis, "gateway", rate=rate, burst=1).acquire


def enqueue_run(partner_id: int, run_date: date) -> int:
    """Create (or resume) the partner's run for ``run_date`` and queue its chunks, and the
    charging of the payments customers scheduled for that day (or missed days before)."""
    from app.extensions import queue
    from app.services.billing_run import start_run

    with job_session() as session:
        plan = start_run(
            session,
            partner_id=partner_id,
            run_date=run_date,
            chunk_size=_settings().billing_chunk_size,
        )
        retry = Retry(max=len(CHUNK_RETRY_INTERVALS), interval=list(CHUNK_RETRY_INTERVALS))
        jobs = [
            Queue.prepare_data(
                "app.jobs.billing.run_chunk",
                (plan.run.id, chunk),
                timeout=CHUNK_TIMEOUT,
                retry=retry,
            )
            for chunk in plan.chunks
        ]
        jobs.append(
            Queue.prepare_data(
                "app.jobs.billing.run_scheduled_payments", (partner_id, run_date), timeout=3600
            )
        )
        # One Redis round trip (a MULTI/EXEC pipeline) for every job of the run: a run of
        # 100,000 subscriptions has 500 chunks.
        queue("billing").enqueue_many(jobs)
        return int(plan.run.id)  # type: ignore[arg-type]


def start_daily_runs() -> int:
    """Cron: start the run of every partner whose local billing hour has come today."""
    from app.services.billing_run import partners_due_to_run

    with job_session() as session:
        due = [(p.id, day) for p, day in partners_due_to_run(session, now=utcnow())]
        session.rollback()
    for partner_id, day in due:
        enqueue_run(partner_id, day)  # type: ignore[arg-type]
    return len(due)


def run_chunk(run_id: int, subscription_ids: list[int]) -> dict[str, int]:
    """Charge one chunk of a run (safe to run again after a crash: periods are claimed)."""
    from app.extensions import gateway
    from app.services.billing_run import process_chunk

    with job_session() as session:
        tally = process_chunk(
            session,
            gateway(),
            run_id=run_id,
            subscription_ids=subscription_ids,
            now=utcnow(),
            acquire=_limiter(),
            base_url=_settings().base_url,
            on_email=_enqueue_quietly,
            threads=_settings().billing_gateway_threads,
            batch_size=_settings().billing_batch_size,
        )
    return dict(tally)


def run_scheduled_payments(partner_id: int, run_date: date) -> dict[str, int]:
    """Charge the partner's scheduled payments due on ``run_date`` (each at most once, so
    running it again, or after a crash, is safe)."""
    from app.extensions import gateway
    from app.services.scheduled_payments import charge_due_scheduled_payments

    with job_session() as session:
        tally = charge_due_scheduled_payments(
            session,
            gateway(),
            partner_id=partner_id,
            as_of=run_date,
            now=utcnow(),
            base_url=_settings().base_url,
            acquire=_limiter(),
            on_email=_enqueue_quietly,
        )
    return dict(tally)


def reconcile_payments() -> int:
    """Cron: settle attempts whose answer was lost, by asking the processor."""
    from app.extensions import gateway
    from app.services.reconcile import open_attempts, settle

    settled = 0
    with job_session() as session:
        now = utcnow()
        for attempt in open_attempts(session, now=now):
            _status, email_ids = settle(session, gateway(), attempt, now=now)
            _enqueue_quietly(email_ids)
            settled += 1
    return settled


def _enqueue_quietly(email_ids: list[int]) -> None:
    if email_ids:
        try:
            enqueue_emails(email_ids)
        except Exception:  # the rows are committed; the outbox sweeper sends them later
            job_app().logger.exception("could not enqueue emails %s", email_ids)
