"""The shared gateway rate limit (a Redis token bucket) and billing runs under a 429 limit."""

from __future__ import annotations

import threading
import time

from sqlmodel import Session

from app.clock import utcnow
from app.gateway.sandbox import SandboxGateway
from app.models import BillingRun
from app.services.billing_run import process_chunk, start_run
from app.services.rate_limit import TokenBucket
from tests.services.billing_helpers import (
    approved_recurring,
    assert_ledger_matches_processor,
    due_customers,
    make_partner,
)


def _redis(app):  # noqa: ANN001, ANN202
    return app.extensions["portico"].redis


def _timed(work) -> float:  # noqa: ANN001
    began = time.monotonic()
    work()
    return time.monotonic() - began


def test_do_n_acquires_at_rate_r_take_about_n_over_r_seconds(app) -> None:
    bucket = TokenBucket(_redis(app), "test-pace", rate=50, burst=5)
    elapsed = _timed(lambda: [bucket.acquire() for _ in range(55)])
    expected = (55 - 5) / 50  # the burst is free, the rest comes at the rate
    assert 0.8 * expected <= elapsed < expected + 2.0


def test_are_two_buckets_with_different_names_independent(app) -> None:
    first = TokenBucket(_redis(app), "test-first", rate=1, burst=2)
    second = TokenBucket(_redis(app), "test-second", rate=1, burst=2)
    assert [first.try_acquire(), first.try_acquire()] == [0, 0]
    assert first.try_acquire() > 0  # empty: the next token is about a second away
    assert second.try_acquire() == 0


def test_do_two_threads_share_one_bucket(app) -> None:
    rate, burst, each = 50, 5, 30

    def take() -> None:
        bucket = TokenBucket(_redis(app), "test-shared", rate=rate, burst=burst)
        for _ in range(each):
            bucket.acquire()

    def both() -> None:
        threads = [threading.Thread(target=take) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    elapsed = _timed(both)
    # One thread alone needs (30-5)/50 = 0.5 s; sharing the bucket, together they need
    # (60-5)/50 = 1.1 s.
    assert elapsed >= 0.8 * (2 * each - burst) / rate


# -- a billing run against a processor that answers 429 above N requests per second ------

# Low enough that three workers outpace it without a limiter, even on a busy machine.
PROCESSOR_LIMIT = 5  # requests per second, then 429
SUBSCRIPTIONS = 15
WORKERS = 3


def _run_in_threads(app, engine, gateway, partner_id: int, acquire_for) -> BillingRun:  # noqa: ANN001
    """Start the day's run and process its chunks in parallel, one thread per worker."""
    today = utcnow().date()
    with Session(engine, expire_on_commit=False) as session:
        plan = start_run(
            session, partner_id=partner_id, run_date=today,
            chunk_size=SUBSCRIPTIONS // WORKERS,
        )  # fmt: skip
    assert len(plan.chunks) == WORKERS
    failures: list[BaseException] = []

    def work(chunk: list[int]) -> None:
        try:
            with app.app_context(), Session(engine, expire_on_commit=False) as session:
                process_chunk(
                    session, gateway, run_id=plan.run.id, subscription_ids=chunk,
                    now=utcnow(), acquire=acquire_for(),
                )  # fmt: skip
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(chunk,)) for chunk in plan.chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    with Session(engine) as session:
        run = session.get(BillingRun, plan.run.id)
        assert run is not None
        return run


def _limited_processor(app, engine, db_session) -> tuple[SandboxGateway, int]:  # noqa: ANN001
    gateway = SandboxGateway(engine)
    with app.app_context():
        partner = make_partner(db_session)
        due_customers(db_session, gateway, partner, SUBSCRIPTIONS, due=utcnow().date())
    gateway.set_request_limit(PROCESSOR_LIMIT)
    return gateway, partner.id  # type: ignore[return-value]


def _assert_every_charge_made_once(db_session, gateway, run: BillingRun) -> None:  # noqa: ANN001
    assert (run.charged, run.declined, run.errors, run.unknown) == (SUBSCRIPTIONS, 0, 0, 0)
    assert run.status == "complete"
    assert len(approved_recurring(db_session)) == SUBSCRIPTIONS
    charges = gateway.list_charges()
    assert [c.status for c in charges] == ["succeeded"] * SUBSCRIPTIONS
    assert_ledger_matches_processor(db_session, gateway)


def test_does_a_run_under_the_shared_limiter_charge_everything_without_meeting_429s(
    app, engine, db_session
) -> None:
    gateway, partner_id = _limited_processor(app, engine, db_session)
    redis = _redis(app)

    def limiter():  # noqa: ANN202  (each worker builds its own bucket: same name, same Redis)
        # At most burst + rate = 4 requests in any second, one below the processor's limit:
        # a request may reach the processor a little after its token was taken.
        return TokenBucket(redis, "test-gateway", rate=3, burst=1).acquire

    run = _run_in_threads(app, engine, gateway, partner_id, limiter)
    _assert_every_charge_made_once(db_session, gateway, run)
    assert run.rate_limited <= 2


def test_does_a_run_without_the_limiter_meet_429s_and_retry_each_into_one_charge(
    app, engine, db_session
) -> None:
    gateway, partner_id = _limited_processor(app, engine, db_session)
    run = _run_in_threads(app, engine, gateway, partner_id, lambda: None)
    assert run.rate_limited >= 1  # the processor pushed back ...
    _assert_every_charge_made_once(db_session, gateway, run)  # ... and nothing was lost
