"""Charging many subscriptions' due periods in a few statements (the billing run's path).

The rules of :mod:`app.services.subscription_billing`, applied to a batch at once:

1. claim: lock the batch's due subscriptions (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the
   write lock on SQLite) and insert one pending attempt per period, with its unique
   purpose key, in one transaction that commits before any processor call;
2. charge: send each attempt to the processor with no transaction open, through the
   shared rate limit, on a few threads when the processor is slow;
3. apply: in one transaction, take each answer with a locked conditional read and apply
   every effect of the approvals together: numbered paid invoices, counters and next
   dates, receipts. "Approved" still always means "advanced".

Anything unusual for a subscription (an attempt already exists for its period, no payment
method, nothing owed) is left to the one-at-a-time path, which knows how to settle it. A
subscription still due after its charge (a missed day) is returned for another round, so
catch-up charges its periods one at a time, in order.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from weakref import WeakKeyDictionary

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.clock import utcnow
from app.domain import schedule as rules
from app.gateway.base import GatewayResult, PaymentGateway
from app.models import (
    CustomerAccount,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
    Subscription,
)
from app.services import payments
from app.services.billing_batch_apply import Claimed, apply_answers, by_id, insert_keyed
from app.services.schedules import schedule_of
from app.services.subscription_billing import (
    Acquire,
    PeriodResult,
    send_with_backoff,
)

log = logging.getLogger(__name__)
SLOW_CALL_SECONDS = 0.02  # a processor answering slower than this is called on threads
CALL_TIMES_KEPT = 32
# How long each processor's recent calls took (seconds), for this process's batches.
_CALL_TIMES: WeakKeyDictionary[PaymentGateway, deque[float]] = WeakKeyDictionary()


@dataclass
class BatchOutcome:
    """What a batch did: a result per charged or skipped subscription, the ids left to the
    one-at-a-time path, and the ids whose next period is still due (catch-up)."""

    results: list[PeriodResult] = field(default_factory=list)
    one_at_a_time: list[int] = field(default_factory=list)
    still_due: list[int] = field(default_factory=list)


def charge_batch(
    session: Session,
    gateway: PaymentGateway,
    subscription_ids: Sequence[int],
    *,
    as_of: date,
    now: datetime,
    acquire: Acquire | None = None,
    base_url: str = "",
    threads: int = 1,
) -> BatchOutcome:
    """Charge the next period of each subscription in ``subscription_ids`` due on ``as_of``.

    Commits twice (the claim, then the outcomes with their effects). Never raises for a
    decline, a lost answer or a processor exception (the attempt then stays pending for
    the reconciler); database errors propagate, leaving committed attempts to be settled.
    """
    outcome = BatchOutcome()
    claimed = claim(session, subscription_ids, as_of=as_of, outcome=outcome, gateway=gateway)
    if not claimed:
        return outcome
    answers = send_all(gateway, claimed, acquire=acquire, threads=threads)
    outcome.results.extend(apply_answers(session, claimed, answers, now=now, base_url=base_url))
    outcome.still_due = [
        r.subscription_id
        for r in outcome.results
        if r.status == "charged" and r.next_date is not None and r.next_date <= as_of
    ]
    return outcome


def claim(
    session: Session,
    subscription_ids: Sequence[int],
    *,
    as_of: date,
    outcome: BatchOutcome,
    gateway: PaymentGateway,
) -> list[Claimed]:
    """Lock the due subscriptions and commit a pending attempt for each one's next period.

    Subscriptions not due (or locked by another worker) get a ``not_due`` result; those
    needing the one-at-a-time path go to ``outcome.one_at_a_time``. Commits.
    """
    subs = _lock_due(session, subscription_ids, as_of)
    locked = {s.id for s in subs}
    outcome.results.extend(
        PeriodResult("not_due", sid) for sid in subscription_ids if sid not in locked
    )
    if not subs:
        session.rollback()
        return []
    busy = _periods_with_attempts(session, subs)
    accounts = by_id(session, CustomerAccount, {s.customer_account_id for s in subs})
    methods = _methods_by_account(session, {s.customer_account_id for s in subs})
    chosen: list[tuple[Subscription, PaymentMethod, int]] = []
    for sub in subs:
        method = _method_for(sub, methods.get(sub.customer_account_id, []))
        amount = rules.charge_amount(schedule_of(sub), amount_charged=sub.amount_charged)
        if sub.id in busy or method is None or amount <= 0:
            outcome.one_at_a_time.append(sub.id)  # type: ignore[arg-type]
        else:
            chosen.append((sub, method, amount))
    if not chosen:
        session.rollback()
        return []
    rows = [_attempt_row(sub, method, amount, gateway.name) for sub, method, amount in chosen]
    try:
        ids = insert_keyed(session, Payment, rows, key="purpose_key")
    except IntegrityError:
        # Another path took a period between our check and insert: let it be settled
        # one subscription at a time, which handles every such case.
        session.rollback()
        outcome.one_at_a_time.extend(sub.id for sub, _m, _a in chosen)  # type: ignore[misc]
        return []
    claimed = [
        Claimed.of(attempt_id, row, sub, accounts[sub.customer_account_id], method)
        for attempt_id, row, (sub, method, amount) in zip(ids, rows, chosen, strict=True)
    ]
    session.commit()
    return claimed


def _lock_due(session: Session, ids: Sequence[int], as_of: date) -> list[Subscription]:
    query = (
        select(Subscription)
        .where(
            col(Subscription.id).in_(ids),
            Subscription.status == rules.SubscriptionStatus.RECURRING,
            col(Subscription.next_charge_date) <= as_of,
        )
        .order_by(col(Subscription.id))
        .execution_options(populate_existing=True)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    else:
        # SQLite has no row locks: a no-op write takes the database write lock first.
        session.execute(
            update(Subscription)
            .where(col(Subscription.id).in_(ids))
            .values(status=Subscription.status)
            .execution_options(synchronize_session=False)
        )
    return list(session.exec(query).all())


def _periods_with_attempts(session: Session, subs: list[Subscription]) -> set[int]:
    due = {s.id: s.next_charge_date for s in subs}
    rows = session.execute(
        select(Payment.subscription_id, Payment.period_date).where(
            col(Payment.subscription_id).in_(list(due)),
            col(Payment.period_date).in_(set(due.values())),
            col(Payment.is_recurring).is_(True),
        )
    ).all()
    return {sid for sid, period in rows if due.get(sid) == period}


def _methods_by_account(session: Session, account_ids: set[int]) -> dict[int, list[PaymentMethod]]:
    grouped: dict[int, list[PaymentMethod]] = defaultdict(list)
    query = (
        select(PaymentMethod)
        .where(col(PaymentMethod.customer_account_id).in_(account_ids))
        .order_by(col(PaymentMethod.is_default).desc(), col(PaymentMethod.id))
    )
    for method in session.exec(query).all():
        grouped[method.customer_account_id].append(method)
    return grouped


def _method_for(sub: Subscription, methods: list[PaymentMethod]) -> PaymentMethod | None:
    """The subscription's own method, else the account's default (as the one-at-a-time
    path chooses)."""
    if sub.payment_method_id is not None:
        for method in methods:
            if method.id == sub.payment_method_id:
                return method
    return methods[0] if methods else None


def _attempt_row(
    sub: Subscription, method: PaymentMethod, amount: int, gateway_name: str
) -> dict[str, object]:
    assert sub.next_charge_date is not None
    # The first attempt of the period: a period with any earlier one goes one at a time.
    purpose_key = f"sub:{sub.id}:{sub.next_charge_date.isoformat()}:1"
    return {
        "partner_id": sub.partner_id,
        "customer_account_id": sub.customer_account_id,
        "subscription_id": sub.id,
        "payment_method_id": method.id,
        "purpose_key": purpose_key,
        "idempotency_key": payments.idempotency_key_for(purpose_key),
        "kind": PaymentKind.CHARGE,
        "method": method.kind,
        "status": PaymentStatus.PENDING,
        "amount": amount,
        "currency": sub.currency,
        "is_recurring": True,
        "period_date": sub.next_charge_date,
        "gateway": gateway_name,
        "brand": method.brand,
        "last4": method.last4,
        "refunded_amount": 0,
        "detail": {"source": "billing_run"},
        "created_at": utcnow(),
    }


def send_all(
    gateway: PaymentGateway,
    claimed: list[Claimed],
    *,
    acquire: Acquire | None,
    threads: int,
) -> list[tuple[GatewayResult | None, int]]:
    """Send every claimed attempt (no transaction open); answers in the same order.

    Each answer is (result, 429s met); the result is None when the call raised, which
    leaves the attempt pending for the reconciler to settle by asking. Up to ``threads``
    calls are in flight at once when the processor is slow to answer (or the rate limit
    makes callers wait): each of its recent calls in this process took at least
    ``SLOW_CALL_SECONDS`` (the first call is timed alone when none is known). A fast one
    is called in turn, where threads would only contend.
    """

    times = _CALL_TIMES.setdefault(gateway, deque(maxlen=CALL_TIMES_KEPT))

    def call(attempt: Claimed) -> tuple[GatewayResult | None, int]:
        started = time.perf_counter()
        try:
            return _send(gateway, attempt, acquire)
        finally:
            times.append(time.perf_counter() - started)

    if not claimed:
        return []
    answers: list[tuple[GatewayResult | None, int]] = []
    rest = claimed
    if not times:  # nothing known about this processor yet: time one call alone
        answers.append(call(claimed[0]))
        rest = claimed[1:]
    # The fastest recent call, not the last one: on a busy machine calls of a fast
    # processor wait for the CPU and take longer than SLOW_CALL_SECONDS, but some still
    # answer at once; threads would then only add to the contention (and to the sandbox's
    # connections beyond its pool, each a new PostgreSQL backend). A slow processor
    # is never fast, so all its recent calls are slow.
    slow = min(times) >= SLOW_CALL_SECONDS
    if threads <= 1 or not slow or len(rest) <= 1:
        return answers + [call(c) for c in rest]
    with ThreadPoolExecutor(max_workers=min(threads, len(rest))) as pool:
        return answers + list(pool.map(call, rest))


def _send(
    gateway: PaymentGateway, attempt: Claimed, acquire: Acquire | None
) -> tuple[GatewayResult | None, int]:
    try:
        return send_with_backoff(
            lambda: payments.charge(
                gateway,
                attempt,
                token=attempt.token,
                customer_ref=attempt.customer_ref,
                description=attempt.description,
            ),
            acquire,
        )
    except Exception:
        log.exception("charging attempt %s raised; the reconciler will settle it", attempt.id)
        return None, 0
