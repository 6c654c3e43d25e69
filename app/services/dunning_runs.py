"""Daily dunning runs: one row per (partner, local day), created once, swept in chunks.

``rq cron`` checks every few minutes for partners whose local dunning hour has come and
whose run row for today is missing; creating the row is the claim (a unique constraint),
so only the tick that created it queues the partner's job. That job only starts a sweep
(:func:`start_sweep`: the invoices due counted on the index, the sweep numbered and its
chunk count put on the run row) and queues one job per chunk. A chunk is a number n of
N, not a list of ids: chunk n holds the due invoices whose id hashes to n
(``app.services.dunning``), so the start never reads the ids (RQ pickling 10,000 of them
into jobs cost more than the rest of the start together; reading them to cut id ranges,
two thirds of the rest). Each chunk (:func:`sweep_run_chunk`) selects its ids still due,
handles them in
transactions that add their own counts to the run row before they commit, then marks
itself done in one more transaction (a unique row), which completes the run when it is
the sweep's last chunk. The CLI starts a sweep the same way and does the chunks itself.

Crash safety: a chunk's work and its counts commit together, and what it handled is no
longer due, so a chunk run again (a retry, a rerun after a crash at any point, or two
copies at once) counts only what it does itself: nothing is counted twice or lost. The
done row makes the completion step count once. A new sweep of the same day supersedes
an unfinished one (numbers are unique): the run completes when the new sweep's chunks are
done, and an older sweep's leftover chunks still add what they do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, insert, literal, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.models import DunningRun, DunningRunStatus, Partner
from app.models.dunning import DunningRunChunk
from app.services.dunning import (
    DEFAULT_CHUNK_SIZE,
    OnEmails,
    audience_of,
    count_due,
    due_invoice_ids,
    sweep_chunk,
)

# Reminders go out in the morning of the partner's day (billing runs at 03:00 by default,
# so invoices its charges paid have already left the sweep).
DUNNING_HOUR = 8
COUNTERS = ("invoices", "sent", "skipped", "stopped", "emails")
# Invoices per chunk job (handled in transactions of DEFAULT_CHUNK_SIZE), about 2 s of
# work: each job costs the sweep's start ~0.1 ms to queue, and 10,000 due still make five
# jobs to share among the workers.
JOB_CHUNK_SIZE = 2000

_run = DunningRun.__table__  # type: ignore[attr-defined]
_done = DunningRunChunk.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SweepPlan:
    """A started sweep: its run, its number within the run's day, the invoices due, and
    how many chunks they are shared among (chunk n: ``due_invoice_ids(part=(n, chunks))``)."""

    run_id: int
    sweep: int
    invoices: int
    chunks: int


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


def start_sweep(
    session: Session,
    *,
    partner_id: int,
    run_date: date,
    now: datetime,
    chunk_size: int = JOB_CHUNK_SIZE,
) -> SweepPlan:
    """Start a sweep of the partner's run of ``run_date`` (the row is created if missing):
    count the invoices due, one chunk per ``chunk_size`` of them, and record on the run
    row the sweep's number and chunk count. Commits; the caller then hands out the chunks.

    With nothing due the run is complete at once. Raises the database's errors.
    """
    invoices = count_due(session, partner_id=partner_id, as_of=run_date)
    chunks = -(-invoices // chunk_size)
    record = (
        update(_run)
        .where(_run.c.partner_id == partner_id, _run.c.run_date == run_date)
        .values(
            sweeps=_run.c.sweeps + 1,
            chunks=chunks,
            chunks_done=0,
            status=DunningRunStatus.RUNNING if chunks else DunningRunStatus.COMPLETE,
            finished_at=None if chunks else now,
        )
        .returning(_run.c.id, _run.c.sweeps)
    )
    row = session.execute(record).first()
    if row is None:  # no cron tick claimed the day (the CLI, an operator): claim it here
        session.rollback()
        claim_run(session, partner_id=partner_id, run_date=run_date)
        row = session.execute(record).one()
    run_id, sweep = row
    session.commit()
    return SweepPlan(run_id=int(run_id), sweep=int(sweep), invoices=invoices, chunks=chunks)


def sweep_run_chunk(
    session: Session,
    *,
    run_id: int,
    sweep: int,
    chunk: int,
    chunks: int,
    now: datetime,
    base_url: str = "",
    secret: str = "",
    batch_size: int = DEFAULT_CHUNK_SIZE,
    on_emails: OnEmails | None = None,
    on_progress: Callable[[Counter[str]], None] | None = None,
) -> Counter[str]:
    """Handle chunk ``chunk`` of the ``chunks`` of sweep ``sweep`` of the run, its invoices
    still due on the run's day; returns this call's counts.

    The invoices go in transactions of ``batch_size``, each adding its counts to the run
    row before it commits; ``on_emails`` and ``on_progress`` get each one's email ids and
    counts after its commit. Then the chunk is marked done, which completes the run when
    it is the latest sweep's last chunk. A chunk already done does nothing; one run again
    after a crash counts only what is left. Commits. Raises LookupError for an unknown
    run or partner, PolicyInvalid for a broken stored policy, and the database's errors.
    """
    key = (_done.c.run_id == run_id, _done.c.sweep == sweep, _done.c.chunk == chunk)
    if session.execute(select(_done.c.run_id).where(*key)).first() is not None:
        session.rollback()
        return Counter()
    row = session.execute(
        select(_run.c.partner_id, _run.c.run_date).where(_run.c.id == run_id)
    ).first()
    if row is None:
        raise LookupError(f"no dunning run {run_id}")
    audience, policy = audience_of(session, row.partner_id, base_url=base_url, secret=secret)
    invoice_ids = due_invoice_ids(
        session,
        partner_id=row.partner_id,
        as_of=row.run_date,
        part=(chunk, chunks),
    )
    session.rollback()

    def count(tx: Session, counts: Counter[str]) -> None:
        _add_counts(tx, run_id, counts)

    total: Counter[str] = Counter()
    for start in range(0, len(invoice_ids), batch_size):
        counts, email_ids = sweep_chunk(
            session,
            audience,
            policy,
            invoice_ids[start : start + batch_size],
            as_of=row.run_date,
            now=now,
            before_commit=count,
        )
        total.update(counts)
        if on_emails and email_ids:
            on_emails(email_ids)
        if on_progress:
            on_progress(counts)
    _mark_done(session, run_id, sweep, chunk, now)
    return total


def _add_counts(session: Session, run_id: int, counts: Counter[str]) -> None:
    """Add ``counts`` to the run row, in the caller's transaction (no commit)."""
    values = {name: _run.c[name] + counts[name] for name in COUNTERS if counts[name]}
    if values:
        session.execute(update(_run).where(_run.c.id == run_id).values(**values))


def _mark_done(session: Session, run_id: int, sweep: int, chunk: int, now: datetime) -> None:
    """Record the chunk as done and count it on the run row if its sweep is the latest;
    the last one completes the run. A chunk another call marked first is left alone."""
    try:
        session.execute(
            insert(_done).values(run_id=run_id, sweep=sweep, chunk=chunk, created_at=now)
        )
    except IntegrityError:
        session.rollback()
        return
    last = _run.c.chunks_done + 1 >= _run.c.chunks
    session.execute(
        update(_run)
        .where(_run.c.id == run_id, _run.c.sweeps == sweep)
        .values(
            chunks_done=_run.c.chunks_done + 1,
            status=case((last, DunningRunStatus.COMPLETE), else_=_run.c.status),
            finished_at=case(
                (last, literal(now, _run.c.finished_at.type)), else_=_run.c.finished_at
            ),
        )
    )
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
