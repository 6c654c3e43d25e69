"""Chaos, part 1: a billing run of N subscriptions while workers are SIGKILLed and Redis
crashes once; then the ledger, the processor and the emails are checked.

The run: ``enqueue_run`` (as cron's ``start_daily_runs`` calls it) on a data set from
``bench/billing_data.py``; W burst ``PorticoWorker`` processes work the ``billing`` and
``email`` queues, receipts go to a local SMTP sink. A killer thread watches the charges
made and, each time they pass one of K random points of the run (uniform between 2 % and
95 %), waits a random 0–0.4 s and SIGKILLs a worker (one running a job when any),
starting another at once; at one more random point (30–70 %) it SIGKILLs the private
Redis server, which comes back empty a second later (every queued chunk and email job
lost). Workers that crash on the lost connection are restarted, as a supervisor would.

When the workers have drained the queues, recovery is what production does, with its
clock moved on instead of waited for: the reconciler (``open_attempts``/``settle``, as
cron's ``reconcile_payments``) at now + 10 minutes, so attempts left ``pending`` by a
kill count as stale; the outbox sweeper (``unsent_message_ids``/``enqueue_emails``, as
cron's ``sweep_outbox``) at now + 10 minutes; and the day's run enqueued again (as
``flask billing run --date D --enqueue`` does; cron itself would catch the missed periods
up in the next day's run). Rounds repeat until nothing is due, open or unsent.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from bench import billing_data
from bench.chaos_stack import PrivateRedis, Workers, build_app, delivered, retrying, worker_env

RUN_DATE = billing_data.RUN_DATE
NEXT_DATE = RUN_DATE.replace(month=RUN_DATE.month + 1)  # monthly, same day
MAX_ROUNDS = 25


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def resend_check(kind: str, got: Counter[str], message_ids: set[str], email_kills: int) -> Check:
    """Zero duplicate emails at the mail server: no message reached it twice, except the
    one a kill caught between the server's acceptance and the row's 'sent' commit.

    SMTP has no idempotency key, so that message goes out again; it carries the same
    ``Message-ID`` (one per outbox row), which receiving mail systems fold (ADR 0004). So
    the check is: every message arrived once, or twice when its worker was killed in an
    email job, and never more re-sends than such kills.
    """
    resent = [m for m in message_ids if got[m] > 1]
    thrice = [m for m in resent if got[m] > 2]
    passed = not thrice and len(resent) <= email_kills
    return Check(
        f"zero duplicate {kind} emails at the SMTP sink (same Message-ID re-sent by a kill "
        "after the server's acceptance counted apart)",
        passed,
        f"{len(message_ids) - len(resent):,} received exactly once; {len(resent)} re-sent "
        f"once with the same Message-ID, at most one per kill in an email job "
        f"({email_kills} such kills); {len(thrice)} received three times or more",
    )


@dataclass
class BillingOutcome:
    subscriptions: int
    kills: int
    kills_asked: int
    kill_kinds: Counter[str]
    redis_restarts: int
    rounds: int
    settled: int
    swept: int
    crashed_workers: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)


def add_processor_history(url: str) -> int:
    """Give the processor its records of last month's charges (the data set has them on
    Portico's side only), so ``verify`` compares two complete ledgers. Returns how many."""
    from sqlalchemy import create_engine, insert, text

    from app.gateway.base import GatewayResult
    from app.gateway.sandbox_ledger import result_to_dict
    from app.models.sandbox import SandboxCharge, SandboxIdempotencyKey

    engine = create_engine(url)
    with engine.begin() as conn:
        rows = conn.execute(
            text(
                "SELECT p.gateway_reference, p.idempotency_key, p.amount, p.currency, m.token "
                "FROM payment p JOIN paymentmethod m ON m.id = p.payment_method_id "
                "WHERE p.status = 'approved'"
            )
        ).all()
        now = billing_data._now()  # noqa: SLF001 (the builder's one clock read)
        for start in range(0, len(rows), 5000):
            part = rows[start : start + 5000]
            conn.execute(insert(SandboxCharge.__table__), [  # type: ignore[attr-defined]
                {"reference": r[0], "kind": "charge", "status": "succeeded", "amount": r[2],
                 "currency": r[3], "captured": True, "captured_amount": r[2], "refunded": False,
                 "refunded_amount": 0, "payment_method_token": r[4], "customer_ref": "",
                 "description": "", "decline_code": "", "metadata": {}, "idempotency_key": r[1],
                 "created_at": now}
                for r in part
            ])  # fmt: skip
            conn.execute(insert(SandboxIdempotencyKey), [
                {"key": r[1], "operation": "charge", "request_fingerprint": "history",
                 "response": result_to_dict(GatewayResult(
                     status="approved", operation="charge", amount=r[2], currency=r[3],
                     reference=r[0], captured_amount=r[2])),
                 "created_at": now}
                for r in part
            ])  # fmt: skip
    engine.dispose()
    return len(rows)


def _charged(engine) -> int:  # noqa: ANN001
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM payment WHERE status = 'approved' AND period_date = :d"),
                {"d": RUN_DATE},
            ).scalar_one()
        )


def _killer(engine, workers: Workers, redis: PrivateRedis, total: int, kills: int,
            stop: threading.Event) -> None:  # fmt: skip
    points = sorted(random.uniform(0.02, 0.95) for _ in range(kills))
    redis_point = random.uniform(0.3, 0.7)
    while not stop.is_set() and (points or not redis.restarts):
        try:
            progress = _charged(engine) / total
        except Exception:  # noqa: BLE001 (the database is busy; look again)
            progress = 0.0
        if points and progress >= points[0] and workers.alive:
            time.sleep(random.uniform(0, 0.4))
            with workers.between_rounds:  # never while the harness settles attempts
                if workers.kill_one(redis.url) is not None:
                    points.pop(0)
        elif not redis.restarts and progress >= redis_point:
            with workers.between_rounds:
                redis.crash_and_restart()
        else:
            time.sleep(0.05)


def _recover(app, partner_id: int) -> tuple[int, int, bool]:  # noqa: ANN001
    """Reconciler, outbox sweeper and the run enqueued again, as production would, with
    the clock 10 minutes on. Returns (attempts settled, emails swept, work queued)."""
    from app.clock import utcnow
    from app.extensions import gateway
    from app.jobs.billing import enqueue_run
    from app.jobs.context import job_session
    from app.jobs.dispatch import enqueue_emails
    from app.services.email import unsent_message_ids
    from app.services.reconcile import open_attempts, settle
    from app.services.subscription_billing import due_subscription_ids

    later = utcnow() + timedelta(minutes=10)
    settled, emails = 0, []
    with job_session() as session:
        for attempt in open_attempts(session, now=later):
            _status, email_ids = settle(session, gateway(), attempt, now=later)
            emails += email_ids
            settled += 1
        due = due_subscription_ids(session, partner_id=partner_id, as_of=RUN_DATE)
        unsent = unsent_message_ids(session, now=later)
        session.rollback()
    with app.app_context():
        if emails:
            retrying(lambda: enqueue_emails(emails))
        if unsent:
            retrying(lambda: enqueue_emails(unsent, retry=False))
        if due:
            retrying(lambda: enqueue_run(partner_id, RUN_DATE))
    return settled, len(unsent), bool(due or unsent or emails)


def run(url: str, count: int, kills: int, workers_n: int, folder: Path, smtp) -> BillingOutcome:  # noqa: ANN001
    """Build the data set into ``url``, run the chaos, check; the outcome."""
    started = time.monotonic()
    partner_id = billing_data.build(url, count)
    add_processor_history(url)
    print(f"  billing: {count:,} due subscriptions built in {time.monotonic() - started:.0f} s")
    redis = PrivateRedis(folder)
    redis.start()
    env = worker_env(url, redis.url, smtp.url, SANDBOX_LATENCY_MS="2",
                     GATEWAY_RATE_PER_SECOND="1000000")  # fmt: skip
    app = build_app(env)
    engine = app.extensions["portico"].engine
    workers = Workers(env, ["billing", "email"], folder, "billing")
    stop = threading.Event()
    settled = swept = rounds = 0
    try:
        from app.jobs.billing import enqueue_run

        t0 = time.monotonic()
        with app.app_context():
            enqueue_run(partner_id, RUN_DATE)
        workers.start(workers_n)
        killer = threading.Thread(
            target=_killer, args=(engine, workers, redis, count, kills, stop), daemon=True
        )
        killer.start()
        for rounds in range(1, MAX_ROUNDS + 1):  # noqa: B007 (reported)
            workers.wait_all()
            # The reconciler counts every pending attempt stale (its clock is 10 minutes
            # on), so no worker may be charging meanwhile: a kill's replacement waits.
            with workers.between_rounds:
                if workers.reap():
                    continue
                s, w, queued = _recover(app, partner_id)
            settled, swept = settled + s, swept + w
            print(f"    round {rounds}: charged {_charged(engine):,}/{count:,}, kills "
                  f"{len(workers.kills)}, settled {s}, swept {w}", flush=True)  # fmt: skip
            if not queued:
                break
            workers.start(workers_n)
        stop.set()
        killer.join(timeout=10)
        seconds = time.monotonic() - t0
        _settle_deliveries(smtp)
        outcome = BillingOutcome(
            subscriptions=count, kills=len(workers.kills), kills_asked=kills,
            kill_kinds=workers.kinds(), redis_restarts=redis.restarts, rounds=rounds,
            settled=settled, swept=swept, crashed_workers=sum(workers.crashed.values()),
            seconds=seconds,
        )  # fmt: skip
        with app.app_context():
            check(app, outcome, smtp)
        return outcome
    finally:
        stop.set()
        workers.stop()
        app.extensions["portico"].engine.dispose()
        redis.stop()


def _settle_deliveries(smtp, quiet: float = 1.0) -> None:  # noqa: ANN001
    """Wait until the sink has received nothing new for ``quiet`` seconds."""
    seen = -1
    while len(smtp.messages) != seen:
        seen = len(smtp.messages)
        time.sleep(quiet)


def check(app, outcome: BillingOutcome, smtp) -> None:  # noqa: ANN001
    """Compare Portico's ledger, the processor's records, the outbox and the SMTP sink."""
    from sqlalchemy import text

    from app.extensions import session_scope
    from app.gateway.sandbox import SandboxGateway
    from app.services.reconcile import open_attempts, verify

    engine = app.extensions["portico"].engine
    with engine.connect() as conn:
        payments = conn.execute(text(
            "SELECT id, subscription_id, period_date, status, gateway_reference, decline_code "
            "FROM payment WHERE kind = 'charge'")).all()  # fmt: skip
        charges = conn.execute(text(
            "SELECT reference, idempotency_key, status FROM sandbox_charge")).all()  # fmt: skip
        subs = conn.execute(
            text("SELECT id, status, recurring_count, next_charge_date FROM subscription")
        ).all()
        receipts = conn.execute(
            text("SELECT id, dedupe_key, status FROM outboxmessage WHERE kind = 'receipt'")
        ).all()
    with session_scope() as session:
        differences = verify(session, SandboxGateway(engine, latency_ms=0))
        still_open = open_attempts(session, now=_far_future())
        session.rollback()
    approved = [p for p in payments if p.status == "approved"]
    this_run = [p for p in approved if str(p.period_date) == str(RUN_DATE)]
    succeeded = [c for c in charges if c.status == "succeeded"]
    ours = Counter(p.gateway_reference for p in approved)
    theirs = Counter(c.reference for c in succeeded)
    unmatched = (set(ours) ^ set(theirs)) | {r for r, n in ours.items() if n > 1}
    unmatched |= {r for r, n in theirs.items() if n > 1}
    out = outcome.checks
    out.append(Check("gateway records and ledger agree",
                     not differences and not unmatched and not still_open,
                     f"verify(): {len(differences)} differences; {len(approved):,} approved "
                     f"payments vs {len(succeeded):,} succeeded processor charges, "
                     f"{len(unmatched)} references unmatched or repeated; "
                     f"{len(still_open)} attempts still open"))  # fmt: skip
    periods = Counter(_period(c.idempotency_key) for c in succeeded)
    twice_there = [k for k, n in periods.items() if n > 1]
    twice_here = [k for k, n in Counter((p.subscription_id, str(p.period_date))
                                        for p in approved).items() if n > 1]  # fmt: skip
    out.append(Check("zero double charges", not twice_there and not twice_here,
                     f"{len(twice_there)} periods charged twice at the processor, "
                     f"{len(twice_here)} in the ledger ({len(periods):,} periods charged)"),
               )  # fmt: skip
    per_sub = Counter(p.subscription_id for p in this_run)
    missed = [s.id for s in subs if per_sub[s.id] != 1]
    wrong = [s.id for s in subs if (s.status, s.recurring_count, str(s.next_charge_date))
             != ("recurring", 2, str(NEXT_DATE))]  # fmt: skip
    out.append(Check("zero missed periods", not missed and not wrong,
                     f"{len(subs):,} subscriptions due {RUN_DATE}: {len(subs) - len(missed):,} "
                     f"charged exactly once, {len(missed)} not; {len(wrong)} schedules not "
                     f"moved on to {NEXT_DATE}"))  # fmt: skip
    keys = Counter(r.dedupe_key for r in receipts)
    want = {f"receipt:payment:{p.id}" for p in this_run}
    missing_rows = want - set(keys)
    extra_rows = (set(keys) - want) | {k for k, n in keys.items() if n > 1}
    unsent = [r.id for r in receipts if r.status != "sent"]
    got = delivered(smtp)
    receipt_ids = {f"<outbox-{r.id}@portico.example>" for r in receipts}
    not_received = [m for m in receipt_ids if got[m] == 0]
    out.append(Check("zero duplicate or missing receipt emails (outbox)",
                     not missing_rows and not extra_rows and not unsent,
                     f"{len(receipts):,} receipt rows for {len(this_run):,} charges: "
                     f"{len(missing_rows)} missing, {len(extra_rows)} extra or repeated, "
                     f"{len(unsent)} unsent"))  # fmt: skip
    email_kills = outcome.kill_kinds.get("send_emails", 0) + outcome.kill_kinds.get("send_email", 0)
    out.append(Check("zero missing receipt emails at the SMTP sink", not not_received,
                     f"{len(smtp.messages):,} messages received; {len(not_received)} receipts "
                     f"never received"))  # fmt: skip
    out.append(resend_check("receipt", got, receipt_ids, email_kills))
    out.append(Check("every kill and the Redis restart happened",
                     outcome.kills == outcome.kills_asked and outcome.redis_restarts == 1,
                     f"{outcome.kills} of {outcome.kills_asked} kills, "
                     f"{outcome.redis_restarts} Redis restart(s)"))  # fmt: skip
    lost = sum(1 for p in payments if p.status == "error" and p.decline_code == "not_received")
    outcome.counts = {
        "subscriptions": len(subs), "payments": len(payments), "approved": len(approved),
        "attempts the processor never received (charged afresh)": lost,
        "processor charges": len(charges), "receipt rows": len(receipts),
        "smtp messages": len(smtp.messages),
    }  # fmt: skip


def _period(key: str) -> tuple[str, str]:
    """(subscription, period) of a ``portico:sub:<id>:<date>:<n>`` idempotency key."""
    parts = key.split(":")
    return (parts[2], parts[3]) if len(parts) >= 4 and parts[1] == "sub" else (key, "")


def _far_future():  # noqa: ANN202
    from app.clock import utcnow

    return utcnow() + timedelta(days=1)
