"""Daily dunning runs: one row per (partner, local day), created once, with live counts.

``rq cron`` checks every few minutes for partners whose local dunning hour has come and
whose run row for today is missing; creating the row is the claim (a unique constraint),
so only the tick that created it queues the partner's job. The CLI uses the same row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.models import DunningRun, DunningRunStatus, Partner
from app.services.dunning import DEFAULT_CHUNK_SIZE, OnEmails, sweep

# Reminders go out in the morning of the partner's day (billing runs at 03:00 by default,
# so invoices its charges paid have already left the sweep).
DUNNING_HOUR = 8
COUNTERS = ("invoices", "sent", "skipped", "stopped", "emails")


def claim_run(session: Session, *, partner_id: int, run_date: date) -> tuple[DunningRun, bool]:
    """The partner's run row for ``run_date``, and whether this call created it. Commits.

    Raises nothing for an existing run (the unique row answers); the database's errors
    otherwise.
    """
    run = DunningRun(partner_id=partner_id, run_date=run_date)
    session.add(run)
    try:
        session.commit()
        return run, True
    except IntegrityError:
        session.rollback()
    existing = session.exec(
        select(DunningRun).where(
            DunningRun.partner_id == partner_id, DunningRun.run_date == run_date
        )
    ).one()
    return existing, False


def run_dunning(
    session: Session,
    *,
    partner_id: int,
    run_date: date,
    now: datetime,
    base_url: str = "",
    secret: str = "",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_emails: OnEmails | None = None,
    on_progress: Callable[[Counter[str]], None] | None = None,
) -> DunningRun:
    """Sweep the partner's invoices for ``run_date`` under its run row, then complete it.

    Safe to call again for the same day (a second sweep finds nothing left to send);
    counts add up on the row after each chunk, so progress shows while it runs.
    Commits. Raises what :func:`app.services.dunning.sweep` raises.
    """
    run, _created = claim_run(session, partner_id=partner_id, run_date=run_date)
    run_id = int(run.id)  # type: ignore[arg-type]
    session.execute(
        update(DunningRun)
        .where(col(DunningRun.id) == run_id)
        .values(status=DunningRunStatus.RUNNING, finished_at=None)
    )
    session.commit()

    def progress(counts: Counter[str]) -> None:
        _add_counts(session, run_id, counts)
        if on_progress:
            on_progress(counts)

    sweep(
        session,
        partner_id=partner_id,
        as_of=run_date,
        now=now,
        base_url=base_url,
        secret=secret,
        chunk_size=chunk_size,
        on_emails=on_emails,
        on_progress=progress,
    )
    session.execute(
        update(DunningRun)
        .where(col(DunningRun.id) == run_id)
        .values(status=DunningRunStatus.COMPLETE, finished_at=now)
    )
    session.commit()
    done = session.get(DunningRun, run_id, populate_existing=True)
    assert done is not None
    return done


def _add_counts(session: Session, run_id: int, counts: Counter[str]) -> None:
    values = {name: getattr(DunningRun, name) + counts[name] for name in COUNTERS if counts[name]}
    if values:
        session.execute(update(DunningRun).where(col(DunningRun.id) == run_id).values(**values))
        session.commit()


def partners_due_to_sweep(session: Session, *, now: datetime) -> list[tuple[Partner, date]]:
    """Partners whose local dunning hour has come today and whose run for today is missing."""
    recent = now.date() - timedelta(days=2)  # local dates are within a day of UTC's
    existing = {
        (r.partner_id, r.run_date)
        for r in session.exec(select(DunningRun).where(col(DunningRun.run_date) >= recent)).all()
    }
    due: list[tuple[Partner, date]] = []
    for partner in session.exec(select(Partner).order_by(Partner.id)).all():
        local = now.astimezone(ZoneInfo(partner.timezone))
        if local.hour >= DUNNING_HOUR and (partner.id, local.date()) not in existing:
            due.append((partner, local.date()))
    return due
