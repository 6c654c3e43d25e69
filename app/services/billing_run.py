"""The daily billing run: find due subscriptions, fan out chunks, count outcomes.

A run is one row per (partner, local day), created once whatever the number of cron
ticks or operators pressing start. Its chunks go to the ``billing`` queue; any number of
workers process them, and each period is claimed under a lock (subscription_billing), so
two runs of the same day, or a chunk re-run after a worker was killed, never charge a
period twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.domain import schedule as rules
from app.gateway.base import PaymentGateway
from app.models import BillingRun, Partner, PaymentMethod, RunStatus, Subscription
from app.services.audit_log import add_event
from app.services.billing_batch import charge_batch
from app.services.schedules import schedule_of
from app.services.subscription_billing import (
    Acquire,
    PeriodResult,
    charge_next_period,
    due_subscription_ids,
)

DEFAULT_CHUNK_SIZE = 200
BATCH_SIZE = 100  # subscriptions claimed together; the run's counters move after each
MAX_PERIODS_PER_SUBSCRIPTION = 400  # catch-up bound: daily schedules missing a year


@dataclass(frozen=True)
class RunPlan:
    run: BillingRun
    chunks: list[list[int]]
    created: bool


@dataclass
class Preview:
    """What a run would charge (no money moves)."""

    run_date: date
    charges: list[tuple[Subscription, date, int]] = field(default_factory=list)
    totals: Counter[str] = field(default_factory=Counter)
    without_method: list[Subscription] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.charges)


def start_run(
    session: Session, *, partner_id: int, run_date: date, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> RunPlan:
    """Create the partner's run for ``run_date`` (once) and split the due ids into chunks.

    A second call for the same day returns the existing run and the ids still due, so a
    restarted run picks up what is left. Commits.
    """
    ids = due_subscription_ids(session, partner_id=partner_id, as_of=run_date)
    chunks = [ids[i : i + chunk_size] for i in range(0, len(ids), chunk_size)]
    run = BillingRun(partner_id=partner_id, run_date=run_date, due=len(ids), chunks=len(chunks))
    session.add(run)
    try:
        session.flush()
        _audit_run(session, run, "billing_run.started")
        session.commit()
        created = True
    except IntegrityError:
        session.rollback()
        existing = session.exec(
            select(BillingRun).where(
                BillingRun.partner_id == partner_id, BillingRun.run_date == run_date
            )
        ).one()
        existing.status = RunStatus.RUNNING if ids else existing.status
        existing.chunks += len(chunks)
        session.add(existing)
        session.commit()
        run, created = existing, False
    if not ids:
        _finish_if_done(session, run.id)  # type: ignore[arg-type]
    return RunPlan(run, chunks, created)


def process_chunk(
    session: Session,
    gateway: PaymentGateway,
    *,
    run_id: int,
    subscription_ids: Iterable[int],
    now: datetime,
    acquire: Acquire | None = None,
    base_url: str = "",
    on_email: Callable[[list[int]], None] | None = None,
    threads: int = 1,
    batch_size: int = BATCH_SIZE,
) -> Counter[str]:
    """Charge every due period (catching up missed ones, in order) of each subscription.

    Subscriptions go in batches (:mod:`app.services.billing_batch`); the counts go onto
    the run row after each batch, so progress shows live without a write per charge.
    ``batch_size`` subscriptions are claimed together and ``threads`` processor calls of a
    batch may be in flight at once.
    """
    run = session.get(BillingRun, run_id)
    assert run is not None
    as_of = run.run_date
    session.rollback()
    tally: Counter[str] = Counter()
    ids = list(subscription_ids)
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        by_subscription = charge_together(
            session, gateway, batch, as_of=as_of, now=now, acquire=acquire,
            base_url=base_url, threads=threads,
        )  # fmt: skip
        counts: Counter[str] = Counter()
        results: list[PeriodResult] = []
        for subscription_id in batch:
            own = by_subscription.get(subscription_id, [])
            counts.update(_count(own))
            counts["processed"] += 1
            results.extend(own)
        tally.update(counts)
        _flush(session, run_id, counts, results, on_email)
    session.execute(
        update(BillingRun)
        .where(col(BillingRun.id) == run_id)
        .values(chunks_done=BillingRun.chunks_done + 1)
    )
    session.commit()
    _finish_if_done(session, run_id)
    return tally


def charge_together(
    session: Session,
    gateway: PaymentGateway,
    subscription_ids: list[int],
    *,
    as_of: date,
    now: datetime,
    acquire: Acquire | None = None,
    base_url: str = "",
    threads: int = 1,
) -> dict[int, list[PeriodResult]]:
    """Charge the due periods of many subscriptions; their results, by subscription.

    Each round charges one period per subscription in a batch; subscriptions still due
    (missed days) go round again, so periods are charged in order. Those the batch leaves
    (an attempt already exists for the period, no method, nothing owed) are charged one
    at a time.
    """
    results: dict[int, list[PeriodResult]] = defaultdict(list)
    pending = subscription_ids
    for _ in range(MAX_PERIODS_PER_SUBSCRIPTION):
        if not pending:
            break
        outcome = charge_batch(
            session, gateway, pending, as_of=as_of, now=now, acquire=acquire,
            base_url=base_url, threads=threads,
        )  # fmt: skip
        for result in outcome.results:
            results[result.subscription_id].append(result)
        for subscription_id in outcome.one_at_a_time:
            results[subscription_id].extend(
                charge_all_due(
                    session,
                    gateway,
                    subscription_id,
                    as_of=as_of,
                    now=now,
                    acquire=acquire,
                    base_url=base_url,
                )  # fmt: skip
            )
        pending = outcome.still_due
    return results


def charge_all_due(
    session: Session,
    gateway: PaymentGateway,
    subscription_id: int,
    *,
    as_of: date,
    now: datetime,
    acquire: Acquire | None = None,
    base_url: str = "",
) -> list[PeriodResult]:
    """Charge the subscription's due periods in order until one is not charged."""
    results: list[PeriodResult] = []
    for _ in range(MAX_PERIODS_PER_SUBSCRIPTION):
        result = charge_next_period(
            session,
            gateway,
            subscription_id,
            as_of=as_of,
            now=now,
            acquire=acquire,
            base_url=base_url,
        )
        results.append(result)
        # Stop without another lock round-trip when the next period is not due yet.
        if result.status != "charged" or result.next_date is None or result.next_date > as_of:
            break
    return results


_COUNTER = {
    "charged": "charged",
    "declined": "declined",
    "unknown": "unknown",
    "in_progress": "skipped",
    "not_due": "skipped",
}


def _count(results: list[PeriodResult]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for result in results:
        key = _COUNTER.get(result.status, "errors")
        if result.status == "not_due" and len(results) > 1:
            continue  # the normal end of a catch-up, not a skip
        counts[key] += 1
        counts["rate_limited"] += result.rate_limited
    return counts


def _flush(
    session: Session,
    run_id: int,
    counts: Counter[str],
    results: list[PeriodResult],
    on_email: Callable[[list[int]], None] | None,
) -> None:
    if counts:
        _add_counts(session, run_id, counts, results)
    if on_email:
        ids = [i for r in results for i in r.email_ids]
        if ids:
            on_email(ids)
    counts.clear()
    results.clear()


def _add_counts(
    session: Session, run_id: int, counts: Counter[str], results: list[PeriodResult]
) -> None:
    names = ("processed", "charged", "declined", "unknown", "errors", "skipped", "rate_limited")
    values = {name: getattr(BillingRun, name) + counts[name] for name in names if counts[name]}
    session.execute(update(BillingRun).where(col(BillingRun.id) == run_id).values(**values))
    charged = [r for r in results if r.status == "charged"]
    if charged:
        run = session.get(
            BillingRun, run_id, with_for_update=session.get_bind().dialect.name == "postgresql"
        )
        assert run is not None
        totals = dict(run.totals)
        for result in charged:
            totals[result.currency] = totals.get(result.currency, 0) + result.amount
        run.totals = totals
        session.add(run)
    session.commit()


def add_outside_charges(
    session: Session,
    *,
    partner_id: int,
    run_date: date,
    counts: Counter[str],
    totals: dict[str, int],
) -> None:
    """Count charges the run made beside its subscriptions (customers' scheduled invoice
    payments) into the partner's run of ``run_date``, when there is one (commits).

    Only the outcome counters (charged, declined, unknown, errors, rate_limited) and the
    money totals move: ``due`` and ``processed`` count subscriptions, and the run's
    progress is measured with them.
    """
    run_id = session.exec(
        select(BillingRun.id).where(
            BillingRun.partner_id == partner_id, BillingRun.run_date == run_date
        )
    ).first()
    if run_id is None:
        session.rollback()
        return
    names = ("charged", "declined", "unknown", "errors", "rate_limited")
    values = {name: getattr(BillingRun, name) + counts[name] for name in names if counts[name]}
    if values:
        session.execute(update(BillingRun).where(col(BillingRun.id) == run_id).values(**values))
    if totals:
        run = session.get(
            BillingRun, run_id, with_for_update=session.get_bind().dialect.name == "postgresql",
            populate_existing=True,
        )  # fmt: skip
        assert run is not None
        merged = dict(run.totals)
        for currency, amount in totals.items():
            merged[currency] = merged.get(currency, 0) + amount
        run.totals = merged
        session.add(run)
    session.commit()


def _finish_if_done(session: Session, run_id: int) -> None:
    """Complete the run when its chunks are done, or when nothing is left due on its day.

    The second case finishes a run whose chunk died with a killed worker: the resumed
    run's chunks supersede it, so it will never count itself done.
    """
    run = session.get(BillingRun, run_id, populate_existing=True)
    assert run is not None
    finish = update(BillingRun).where(
        col(BillingRun.id) == run_id, BillingRun.status == RunStatus.RUNNING
    )
    if _anything_due(session, partner_id=run.partner_id, as_of=run.run_date):
        finish = finish.where(BillingRun.chunks_done >= BillingRun.chunks)
    finished = session.execute(finish.values(status=RunStatus.COMPLETE))
    if finished.rowcount == 1:  # type: ignore[attr-defined]
        _audit_run(session, run, "billing_run.completed")  # counts are the final ones
    session.commit()


def _audit_run(session: Session, run: BillingRun, action: str) -> None:
    # One event per run, not per charge: each charge's Payment row is its record (ADR 0020).
    counts = ("due", "processed", "charged", "declined", "unknown", "errors", "skipped")
    add_event(
        session, action=action, subject_type="billing_run", subject_id=run.id,
        partner_id=run.partner_id, actor_label="billing run",
        detail={"run_date": run.run_date.isoformat(), "totals": dict(run.totals),
                **{name: getattr(run, name) for name in counts}},
    )  # fmt: skip


def _anything_due(session: Session, *, partner_id: int, as_of: date) -> bool:
    """Whether any of the partner's subscriptions is due on ``as_of``.

    One row at most: every chunk asks, and reading the whole due list each time made a
    run's cost grow with the square of its size.
    """
    query = (
        select(Subscription.id)
        .where(
            Subscription.status == rules.SubscriptionStatus.RECURRING,
            col(Subscription.next_charge_date) <= as_of,
            Subscription.partner_id == partner_id,
        )
        .limit(1)
    )
    return session.exec(query).first() is not None


def preview_run(session: Session, *, run_date: date, partner_id: int | None = None) -> Preview:
    """What a run for ``run_date`` would charge, period by period, without charging."""
    preview = Preview(run_date)
    query = select(Subscription).where(
        Subscription.status == rules.SubscriptionStatus.RECURRING,
        col(Subscription.next_charge_date) <= run_date,
    )
    if partner_id is not None:
        query = query.where(Subscription.partner_id == partner_id)
    with_method = set(session.exec(select(PaymentMethod.customer_account_id)).all())
    for sub in session.exec(query.order_by(Subscription.partner_id, Subscription.id)).all():
        if sub.payment_method_id is None and sub.customer_account_id not in with_method:
            preview.without_method.append(sub)
            continue
        charged_periods, amount_charged = sub.recurring_count, sub.amount_charged
        for _ in range(MAX_PERIODS_PER_SUBSCRIPTION):
            when = rules.next_charge_date(
                schedule_of(sub), charged_periods=charged_periods, amount_charged=amount_charged,
                first_period=sub.first_period,
            )  # fmt: skip
            if when is None or when > run_date:
                break
            amount = rules.charge_amount(schedule_of(sub), amount_charged=amount_charged)
            if amount <= 0:
                break
            preview.charges.append((sub, when, amount))
            preview.totals[sub.currency] += amount
            charged_periods += 1
            amount_charged += amount
    return preview


def partners_due_to_run(session: Session, *, now: datetime) -> list[tuple[Partner, date]]:
    """Partners whose local billing hour has come today and whose run for today is missing."""
    from zoneinfo import ZoneInfo

    due: list[tuple[Partner, date]] = []
    recent = now.date() - timedelta(days=2)  # local dates are within a day of UTC's
    existing = {
        (r.partner_id, r.run_date)
        for r in session.exec(select(BillingRun).where(col(BillingRun.run_date) >= recent)).all()
    }
    for partner in session.exec(select(Partner)).all():
        local = now.astimezone(ZoneInfo(partner.timezone))
        if local.hour >= partner.billing_hour and (partner.id, local.date()) not in existing:
            due.append((partner, local.date()))
    return due
