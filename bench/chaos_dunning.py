"""Chaos, part 2: dunning over D simulated days while workers are SIGKILLed.

The data set: one partner with the default policy (reminders at 5, 10, 15 and 25 days
overdue, a warning at 30, service stopped at 35), its admin and accounts from
``bench/dunning_data.py``, and N unpaid invoices, one per account, due on random days
from 4 days before the first simulated day on (so no stage falls before it and every
one is expected to be sent, none skipped by a catch-up); one in five is paid on a random
morning between its due date and day 34 overdue.

Each simulated day, as cron's ``start_daily_dunning`` does: the day's run row is claimed
and ``run_partner_dunning(partner, day)`` queued on ``default`` (with the job's retry
policy); W burst ``PorticoWorker`` processes work ``default`` and ``email``, delivering
to a local SMTP sink. On K random days a worker is SIGKILLed a random 0–0.5 s after one
is seen running a job, and another started. When the workers have drained the queues,
what production does after a crash, with the clock moved on instead of waited for: RQ's
abandoned-job sweep (``StartedJobRegistry.cleanup`` at now + the job's timeout + 2
minutes, the heartbeat TTL of a killed ``SimpleWorker``), which retries the dunning and
email jobs (they carry RQ retries); the retried jobs' back-off skipped (moved from the
scheduled registry to their queue, as RQ's scheduler does once it has passed); and the
outbox sweeper at now + 10 minutes. The day ends when its run row is complete and no
email is unsent.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from bench import dunning_data
from bench.chaos_billing import Check, resend_check
from bench.chaos_stack import Workers, build_app, current_job, delivered, retrying, worker_env

START = date(2031, 5, 1)
STAGES = (5, 10, 15, 25, 30, 35)  # the default policy's days; 35 stops service
STOP = 35
QUEUES = ["default", "email"]


@dataclass(frozen=True)
class Case:
    invoice_id: int
    account_id: int
    due: date
    paid_on: date | None


@dataclass
class DunningOutcome:
    invoices: int
    days: int
    kills: int
    kills_asked: int
    kill_kinds: Counter[str]
    retried_jobs: int
    swept: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)


def build(url: str, count: int, days: int, rng: random.Random) -> tuple[int, list[Case]]:
    """The partner (``dunning_data.build``) and ``count`` unpaid invoices, one per account."""
    from sqlalchemy import create_engine, insert, text

    from app.clock import utcnow
    from app.models import Invoice

    if count > dunning_data.ACCOUNTS:
        raise SystemExit(f"at most {dunning_data.ACCOUNTS} invoices (one per account)")
    partner_id = dunning_data.build(url, 0, 0)
    engine = create_engine(url)
    latest = max(0, days - STOP - 1)  # the last due date whose stop day is simulated
    with engine.begin() as conn:
        accounts = [r[0] for r in conn.execute(text("SELECT id FROM customeraccount ORDER BY id"))]
        rows = []
        for n, account in enumerate(accounts[:count]):
            due = START + timedelta(days=rng.randint(-4, latest))
            rows.append({
                "partner_id": partner_id, "customer_account_id": account, "series": "INV",
                "sequence": n + 1, "number": f"INV-{n + 1:07d}", "status": "created",
                "currency": "USD", "issue_date": due - timedelta(days=30), "due_date": due,
                "subtotal": 12000, "tax": 0, "total": 12000, "amount_paid": 0,
                "billing_email": f"payer{n}@chaos.example", "memo": "",
                "next_dunning_on": due + timedelta(days=1), "dunning_day": 0,
                "created_at": utcnow(),
            })  # fmt: skip
        ids = [r[0] for r in conn.execute(insert(Invoice).returning(Invoice.id,
                                          sort_by_parameter_order=True), rows)]  # fmt: skip
    engine.dispose()
    cases = []
    for invoice_id, account, row in zip(ids, accounts, rows, strict=False):
        paid = None
        if rng.random() < 0.2:  # paid on a simulated morning, before day 35 overdue
            paid = max(START, row["due_date"] + timedelta(days=rng.randint(1, STOP - 1)))
        cases.append(Case(int(invoice_id), int(account), row["due_date"], paid))
    return partner_id, cases


def expected(cases: list[Case], days: int) -> tuple[set[tuple[int, int]], set[str]]:
    """The (invoice, stage day) notices and the email dedupe keys the policy calls for,
    computed here from the dates alone, independently of the code under test."""
    end = START + timedelta(days=days - 1)
    notices: set[tuple[int, int]] = set()
    keys: set[str] = set()
    for case in cases:
        for stage in STAGES:
            when = case.due + timedelta(days=stage)
            if when > end or (case.paid_on is not None and case.paid_on <= when):
                continue
            notices.add((case.invoice_id, stage))
            prefix = (f"service_stopped:{case.account_id}:{when.isoformat()}" if stage == STOP
                      else f"dunning:{case.invoice_id}:{stage}")  # fmt: skip
            keys |= {f"{prefix}:customer", f"{prefix}:partner"}
    return notices, keys


def _pay(app, cases: list[Case], day: date) -> None:  # noqa: ANN001
    """The morning's payments, before the sweep (as ``test_dunning_over_time`` pays)."""
    from app.jobs.context import job_session
    from app.models import Invoice
    from app.services.invoices import apply_paid_amount

    with job_session() as session:
        for case in cases:
            if case.paid_on == day:
                invoice = session.get(Invoice, case.invoice_id)
                assert invoice is not None
                apply_paid_amount(invoice, invoice.balance)
                session.add(invoice)
        session.commit()


def _cron(app, partner_id: int, day: date) -> None:  # noqa: ANN001
    """What ``start_daily_dunning`` does for the partner's day (its clock is ``day``)."""
    from rq import Retry

    from app.extensions import queue
    from app.jobs.context import job_session
    from app.jobs.dunning import CHUNK_TIMEOUT, RETRY_INTERVALS
    from app.services.dunning_runs import claim_run

    with job_session() as session:
        _run, created = claim_run(session, partner_id=partner_id, run_date=day)
        if created:
            retrying(lambda: queue("default").enqueue(
                "app.jobs.dunning.run_partner_dunning", partner_id, day,
                job_id=f"dunning-{partner_id}-{day.isoformat()}", job_timeout=CHUNK_TIMEOUT,
                retry=Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS)),
            ))  # fmt: skip


def _kill_during_work(workers: Workers, redis_url: str, rng: random.Random) -> bool:
    """SIGKILL a worker a random moment after one is seen running a job; False when
    every worker had ended first (the kill moves to the next day)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and workers.reap():
        if any(current_job(redis_url, n) not in ("", "?") for n in list(workers.alive)):
            break
        time.sleep(0.02)
    time.sleep(rng.uniform(0, 0.5))
    return workers.kill_one(redis_url) is not None


def _recover(app) -> tuple[int, int]:  # noqa: ANN001
    """RQ's abandoned-job sweep and retry, and the outbox sweeper, with the clock moved
    on; only called when no worker runs. Returns (jobs retried, emails swept)."""
    from rq import Queue
    from rq.job import Job

    from app.clock import utcnow
    from app.jobs.context import job_session
    from app.jobs.dispatch import enqueue_emails
    from app.jobs.dunning import CHUNK_TIMEOUT
    from app.services.email import unsent_message_ids

    redis = app.extensions["portico"].redis
    retried = 0
    for name in QUEUES:
        q = Queue(name, connection=redis)
        q.started_job_registry.cleanup(timestamp=time.time() + CHUNK_TIMEOUT + 120)
        scheduled = q.scheduled_job_registry
        for job_id in scheduled.get_job_ids():
            job = Job.fetch(job_id, connection=redis)
            scheduled.remove(job)
            q.enqueue_job(job)
            retried += 1
    with job_session() as session:
        unsent = unsent_message_ids(session, now=utcnow() + timedelta(minutes=10))
        session.rollback()
    with app.app_context():
        if unsent:
            enqueue_emails(unsent, retry=False)
    return retried, len(unsent)


def _day_done(app, partner_id: int, day: date) -> bool:  # noqa: ANN001
    from rq import Queue
    from sqlalchemy import text

    redis = app.extensions["portico"].redis
    if any(Queue(n, connection=redis).count for n in QUEUES):
        return False
    with app.extensions["portico"].engine.connect() as conn:
        status = conn.execute(
            text("SELECT status FROM dunningrun WHERE partner_id = :p AND run_date = :d"),
            {"p": partner_id, "d": day},
        ).scalar()
        unsent = conn.execute(
            text("SELECT count(*) FROM outboxmessage WHERE status <> 'sent'")
        ).scalar_one()
    return status == "complete" and unsent == 0


def run(url: str, count: int, days: int, kills: int, workers_n: int, folder: Path, smtp,
        redis_url: str, seed: int) -> DunningOutcome:  # noqa: ANN001  # fmt: skip
    """Build, simulate ``days`` days with ``kills`` kills, check; the outcome."""
    rng = random.Random(seed)
    partner_id, cases = build(url, count, days, rng)
    env = worker_env(url, redis_url, smtp.url)
    app = build_app(env)
    workers = Workers(env, QUEUES, folder, "dunning")
    # Not the first days: nothing is overdue enough for a stage before day 5.
    kill_days = Counter(rng.randrange(min(5, days - 1), days) for _ in range(kills))
    retried = swept = 0
    t0 = time.monotonic()
    try:
        for offset in range(days):
            day = START + timedelta(days=offset)
            _pay(app, cases, day)
            _cron(app, partner_id, day)
            workers.start(workers_n)
            for _ in range(kill_days[offset]):
                if not _kill_during_work(workers, redis_url, rng) and offset + 1 < days:
                    kill_days[offset + 1] += 1
            for _round in range(20):
                workers.wait_all()
                r, s = _recover(app)
                retried, swept = retried + r, swept + s
                if _day_done(app, partner_id, day):
                    break
                workers.start(workers_n)
            else:
                raise SystemExit(f"dunning day {day} did not complete")
            if offset % 10 == 9 or offset == days - 1:
                print(f"    day {offset + 1}/{days}: kills {len(workers.kills)}, "
                      f"jobs retried {retried}, emails swept {swept}, "
                      f"smtp {len(smtp.messages):,}", flush=True)  # fmt: skip
        outcome = DunningOutcome(
            invoices=count, days=days, kills=len(workers.kills), kills_asked=kills,
            kill_kinds=workers.kinds(), retried_jobs=retried, swept=swept,
            seconds=time.monotonic() - t0,
        )  # fmt: skip
        check(app, outcome, cases, smtp, partner_id)
        return outcome
    finally:
        workers.stop()
        app.extensions["portico"].engine.dispose()


def check(app, outcome: DunningOutcome, cases: list[Case], smtp, partner_id: int) -> None:  # noqa: ANN001
    """Notices and emails against what the policy calls for, and the runs."""
    from sqlalchemy import text

    want_notices, want_keys = expected(cases, outcome.days)
    with app.extensions["portico"].engine.connect() as conn:
        notices = conn.execute(text("SELECT invoice_id, day, skipped FROM dunningnotice")).all()
        rows = conn.execute(
            text(
                "SELECT id, dedupe_key, status FROM outboxmessage "
                "WHERE dedupe_key LIKE 'dunning:%' OR dedupe_key LIKE 'service_stopped:%'"
            )
        ).all()
        runs = conn.execute(
            text("SELECT status, count(*) FROM dunningrun WHERE partner_id = :p GROUP BY status"),
            {"p": partner_id},
        ).all()
    seen = Counter((n.invoice_id, n.day) for n in notices)
    twice = [k for k, n in seen.items() if n > 1]
    out = outcome.checks
    out.append(Check("each (invoice, stage) notice exists exactly once", not twice,
                     f"{len(notices):,} notices, {len(twice)} (invoice, stage) pairs twice"),
               )  # fmt: skip
    missing = want_notices - set(seen)
    extra = set(seen) - want_notices
    skipped = [n for n in notices if n.skipped]
    by_id = {c.invoice_id: c for c in cases}
    examples = "; ".join(
        f"invoice {i} stage {d} (due {by_id[i].due}, paid {by_id[i].paid_on})"
        for i, d in sorted(missing | extra)[:3]
    )
    out.append(Check("every due stage was sent", not missing and not extra and not skipped,
                     f"{len(want_notices):,} stages due: {len(missing)} missing, {len(extra)} "
                     f"not due but handled, {len(skipped)} skipped"
                     + (f" (e.g. {examples})" if examples else "")))  # fmt: skip
    keys = Counter(r.dedupe_key for r in rows)
    absent, surplus = want_keys - set(keys), set(keys) - want_keys
    unsent = [r.id for r in rows if r.status != "sent"]
    once = max(keys.values(), default=1) == 1
    out.append(Check("zero duplicate or missing dunning emails (outbox)",
                     not absent and not surplus and not unsent and once,
                     f"{len(rows):,} rows for {len(want_keys):,} expected emails: {len(absent)} "
                     f"missing, {len(surplus)} unexpected, {len(unsent)} unsent"))  # fmt: skip
    got = delivered(smtp)
    ids = [f"<outbox-{r.id}@portico.example>" for r in rows]
    never = [m for m in ids if got[m] == 0]
    email_kills = outcome.kill_kinds.get("send_emails", 0) + outcome.kill_kinds.get("send_email", 0)
    out.append(Check("zero missing dunning emails at the SMTP sink", not never,
                     f"{len(never)} of {len(ids):,} never received"))  # fmt: skip
    out.append(resend_check("dunning", got, set(ids), email_kills))
    by_status = {str(s): int(n) for s, n in runs}
    all_killed = outcome.kills == outcome.kills_asked
    out.append(Check("every day's run complete, every kill done",
                     by_status == {"complete": outcome.days} and all_killed,
                     f"runs {by_status}; {outcome.kills} of {outcome.kills_asked} kills"),
               )  # fmt: skip
    outcome.counts = {
        "invoices": len(cases),
        "paid during the run": sum(c.paid_on is not None for c in cases),
        "notices": len(notices),
        "dunning email rows": len(rows),
        "smtp messages": len(smtp.messages),
    }
