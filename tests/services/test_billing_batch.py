"""The billing run's batch path: a few statements per batch, the same outcomes as one at a
time, and every unusual subscription still handled (ARCHITECTURE §1, §2)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from app.clock import utcnow
from app.gateway.base import GatewayResult
from app.models import (
    Invoice,
    InvoiceLine,
    OutboxMessage,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Subscription,
)
from app.services import payments
from app.services.billing_batch import BatchOutcome, charge_batch, claim, send_all
from app.services.billing_batch_apply import apply_answers
from app.services.billing_run import charge_together
from app.services.reconcile import settle
from tests.services.billing_helpers import (
    DECLINES_WHEN_CHARGED,
    add_subscription,
    approved_recurring,
    assert_ledger_matches_processor,
    at_three,
    due_customers,
    make_customer,
    make_partner,
    sandbox,
)

DAY = date(2031, 3, 10)


@contextmanager
def portico_statements(session: Session) -> Iterator[list[str]]:
    """The SQL Portico itself sends on ``session``'s engine (the sandbox's own is left out:
    it plays the processor)."""
    seen: list[str] = []
    engine = session.get_bind()

    def count(_conn, _cursor, statement, _params, _context, _many) -> None:  # noqa: ANN001
        if "sandbox" not in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _batch_statements(app, db_session, count: int, slug: str) -> int:  # noqa: ANN001
    gateway = sandbox(app)
    with app.app_context():
        partner = make_partner(db_session, slug)
        subs = due_customers(db_session, gateway, partner, count, due=DAY)
        with portico_statements(db_session) as seen:
            outcome = charge_batch(
                db_session, gateway, [s.id for s in subs], as_of=DAY, now=at_three(DAY)
            )
    assert [r.status for r in outcome.results] == ["charged"] * count
    return len(seen)


def test_does_a_batch_send_the_same_statements_for_five_subscriptions_as_for_forty(
    app, db_session
) -> None:
    few = _batch_statements(app, db_session, 5, "few")
    many = _batch_statements(app, db_session, 40, "many")
    assert few == many
    assert many <= 25  # claim, answers and every effect, whatever the batch's size


def test_does_a_batch_charge_each_period_once_with_a_paid_invoice_and_a_receipt(
    app, db_session
) -> None:
    gateway = sandbox(app)
    with app.app_context():
        partner = make_partner(db_session)
        subs = due_customers(db_session, gateway, partner, 6, due=DAY)
        outcome = charge_batch(
            db_session, gateway, [s.id for s in subs], as_of=DAY, now=at_three(DAY)
        )
    assert outcome.one_at_a_time == [] and outcome.still_due == []
    charged = approved_recurring(db_session)
    assert [(p.subscription_id, p.period_date, p.amount) for p in charged] == [
        (s.id, DAY, 1000 + i) for i, s in enumerate(subs)
    ]
    invoices = db_session.exec(select(Invoice).order_by(Invoice.sequence)).all()
    assert [i.number for i in invoices] == [f"INV-{partner.id:03d}-{n:06d}" for n in range(1, 7)]
    assert {i.status for i in invoices} == {"paid"}
    assert all(i.amount_paid == i.total for i in invoices)
    assert {p.invoice_id for p in charged} == {i.id for i in invoices}
    lines = db_session.exec(select(InvoiceLine)).all()
    assert sorted(line.amount for line in lines) == [1000 + i for i in range(6)]
    assert {line.description for line in lines} == {"Membership — Mar 10, 2031"}
    receipts = db_session.exec(select(OutboxMessage).where(OutboxMessage.kind == "receipt")).all()
    assert sorted(r.dedupe_key for r in receipts) == sorted(
        f"receipt:payment:{p.id}" for p in charged
    )
    first = next(r for r in receipts if r.dedupe_key == f"receipt:payment:{charged[0].id}")
    assert "$10.00" in first.text_body and invoices[0].number in first.text_body
    assert "Apr 10, 2031" in first.text_body  # the next charge, after the schedule moved
    for sub in subs:
        db_session.refresh(sub)
        assert (sub.recurring_count, sub.next_charge_date) == (1, date(2031, 4, 10))
    assert_ledger_matches_processor(db_session, gateway)


def test_does_a_batch_leave_the_unusual_subscriptions_to_the_one_at_a_time_path(
    app, db_session
) -> None:
    gateway = sandbox(app)
    with app.app_context():
        partner = make_partner(db_session)
        regular = due_customers(db_session, gateway, partner, 2, due=DAY)
        account, method = make_customer(db_session, gateway, partner, "Pending Pat")
        pending = add_subscription(db_session, account, method, frequency="monthly", start_date=DAY)
        # A period whose attempt is already open (a person pressed "Charge now" for it).
        payments.open_attempt(
            db_session,
            payments.AttemptSpec(
                partner_id=partner.id,  # type: ignore[arg-type]
                purpose_key=f"sub:{pending.id}:{DAY.isoformat()}:1",
                amount=1000,
                currency="USD",
                method="card",
                customer_account_id=account.id,
                payment_method_id=method.id,
                subscription_id=pending.id,
                is_recurring=True,
                period_date=DAY,
            ),
        )
        declining_account, declining = make_customer(
            db_session, gateway, partner, "Declined Dee", DECLINES_WHEN_CHARGED
        )
        declined = add_subscription(
            db_session, declining_account, declining, frequency="monthly", start_date=DAY
        )
        behind = add_subscription(
            db_session, account, method, frequency="weekly", start_date=DAY - timedelta(days=14)
        )
        later = add_subscription(
            db_session, account, method, frequency="monthly", start_date=DAY + timedelta(days=3)
        )
        ids = [s.id for s in (*regular, pending, declined, behind, later)]
        # Now (not the day's 03:00) so the open attempt is fresh, not a dead worker's.
        by_sub = charge_together(db_session, gateway, ids, as_of=DAY, now=utcnow())

    def words(sub: Subscription) -> list[str]:
        return [r.status for r in by_sub[sub.id]]  # type: ignore[index]

    assert words(regular[0]) == words(regular[1]) == ["charged"]
    assert words(pending) == ["in_progress"]  # its fresh attempt belongs to someone else
    assert words(declined) == ["declined"]
    assert words(behind) == ["charged", "charged", "charged"]  # three weeks, in order
    assert [r.period for r in by_sub[behind.id]] == [  # type: ignore[index]
        DAY - timedelta(days=14),
        DAY - timedelta(days=7),
        DAY,
    ]
    assert words(later) == ["not_due"]
    db_session.refresh(declined)
    assert declined.status == "error" and "declined" in declined.last_error
    failed = db_session.exec(
        select(OutboxMessage).where(OutboxMessage.kind == "payment_failed")
    ).all()
    assert len(failed) == 2  # the customer and the partner
    assert set(by_sub[declined.id][0].email_ids) == {m.id for m in failed}  # type: ignore[index]


class Exploding:
    """A processor whose connection breaks for one token (what a network error looks like
    to the caller); every other call goes to the real sandbox."""

    def __init__(self, inner, bad_token: str) -> None:  # noqa: ANN001
        self.inner, self.bad_token, self.name = inner, bad_token, inner.name

    def charge(self, **kwargs) -> GatewayResult:  # noqa: ANN003
        if kwargs["token"] == self.bad_token:
            raise ConnectionError("connection reset by peer")
        return self.inner.charge(**kwargs)

    def retrieve(self, **kwargs) -> GatewayResult | None:  # noqa: ANN003
        return self.inner.retrieve(**kwargs)


def test_does_a_call_that_raises_leave_its_attempt_pending_and_the_rest_applied(
    app, db_session
) -> None:
    gateway = sandbox(app)
    with app.app_context():
        partner = make_partner(db_session)
        subs = due_customers(db_session, gateway, partner, 3, due=DAY)
        method = db_session.get(PaymentMethod, subs[1].payment_method_id)
        assert method is not None
        outcome = charge_batch(
            db_session,
            Exploding(gateway, method.token),  # type: ignore[arg-type]
            [s.id for s in subs],
            as_of=DAY,
            now=at_three(DAY),
        )
        words = {r.subscription_id: r.status for r in outcome.results}
        assert [words[s.id] for s in subs] == ["charged", "error", "charged"]  # type: ignore[index]
        stuck = db_session.exec(select(Payment).where(Payment.subscription_id == subs[1].id)).one()
        assert stuck.status == PaymentStatus.PENDING
        # Later the reconciler asks the processor, which never saw the call: the attempt
        # becomes an error and the period stays due for the next run, uncharged.
        status, _ = settle(db_session, gateway, stuck, now=utcnow() + timedelta(minutes=10))
        assert status == "error"
        db_session.refresh(subs[1])
        assert subs[1].next_charge_date == DAY and subs[1].recurring_count == 0
        again = charge_together(db_session, gateway, [subs[1].id], as_of=DAY, now=at_three(DAY))
    assert [r.status for r in again[subs[1].id]] == ["charged"]  # type: ignore[index]
    assert len(approved_recurring(db_session)) == 3
    assert_ledger_matches_processor(db_session, gateway)


def test_is_an_answer_the_reconciler_applied_first_not_applied_again(app, db_session) -> None:
    gateway = sandbox(app)
    with app.app_context():
        partner = make_partner(db_session)
        subs = due_customers(db_session, gateway, partner, 2, due=DAY)
        outcome = BatchOutcome()
        claimed = claim(
            db_session, [s.id for s in subs], as_of=DAY, outcome=outcome, gateway=gateway
        )
        answers = send_all(gateway, claimed, acquire=None, threads=1)
        # The worker stalls after the processor answered; the reconciler gets there first.
        first = db_session.get(Payment, claimed[0].id)
        assert first is not None
        settle(db_session, gateway, first, now=utcnow() + timedelta(minutes=10))
        results = apply_answers(db_session, claimed, answers, now=at_three(DAY))
    assert sorted(r.status for r in results) == ["charged", "charged"]
    invoices = db_session.exec(select(Invoice)).all()
    assert sorted(i.subscription_id for i in invoices) == sorted(s.id for s in subs)  # one each
    receipts = db_session.exec(select(OutboxMessage).where(OutboxMessage.kind == "receipt")).all()
    assert len(receipts) == 2
    for sub in subs:
        db_session.refresh(sub)
        assert sub.recurring_count == 1
    assert_ledger_matches_processor(db_session, gateway)


class Slow:
    """The sandbox answering after 30 ms, like a processor across a network; records the
    thread each call came from."""

    def __init__(self, inner) -> None:  # noqa: ANN001
        from app.gateway.sandbox import SandboxGateway

        self.inner = SandboxGateway(inner.engine, latency_ms=30)
        self.name = inner.name
        self.threads: set[str] = set()

    def charge(self, **kwargs) -> GatewayResult:  # noqa: ANN003
        import threading

        self.threads.add(threading.current_thread().name)
        return self.inner.charge(**kwargs)


@pytest.mark.parametrize("threads", [1, 4])
def test_do_threads_keep_answers_with_their_own_attempts(app, db_session, threads: int) -> None:
    gateway = sandbox(app)
    slow = Slow(gateway)
    with app.app_context():
        partner = make_partner(db_session)
        subs = due_customers(db_session, gateway, partner, 12, due=DAY)
        outcome = charge_batch(
            db_session, slow, [s.id for s in subs], as_of=DAY, now=at_three(DAY),  # type: ignore[arg-type]
            threads=threads,
        )  # fmt: skip
    assert {r.status for r in outcome.results} == {"charged"}
    assert len(slow.threads) == (1 if threads == 1 else 1 + threads)  # the first, then a pool
    charged = approved_recurring(db_session)
    assert [p.amount for p in charged] == [1000 + i for i in range(12)]
    assert_ledger_matches_processor(db_session, gateway)


class Blip:
    """The sandbox answering at once, except the calls numbered in ``slow`` (30 ms: a busy
    machine); records the thread of each call, by call number."""

    def __init__(self, inner, slow: set[int]) -> None:  # noqa: ANN001
        self.inner = inner
        self.name = inner.name
        self.slow = slow
        self.calls: list[str] = []

    def charge(self, **kwargs) -> GatewayResult:  # noqa: ANN003
        self.calls.append(threading.current_thread().name)
        if len(self.calls) in self.slow:
            time.sleep(0.03)
        return self.inner.charge(**kwargs)


def _two_batches(app, db_session, gateway) -> tuple[list[str], list[str]]:  # noqa: ANN001
    """Charge 24 due subscriptions in two batches of 12 with up to 4 threads; the threads
    each batch's calls came from."""
    with app.app_context():
        partner = make_partner(db_session)
        subs = due_customers(db_session, gateway.inner, partner, 24, due=DAY)
        for batch in (subs[:12], subs[12:]):
            outcome = charge_batch(
                db_session, gateway, [s.id for s in batch], as_of=DAY, now=at_three(DAY),
                threads=4,
            )  # fmt: skip
            assert {r.status for r in outcome.results} == {"charged"}
    return gateway.calls[:12], gateway.calls[12:]


def test_is_a_fast_processor_called_in_turn_even_when_a_batchs_first_call_is_slow(
    app, db_session
) -> None:
    blip = Blip(sandbox(app), slow={13})  # the second batch's first call
    _first, second = _two_batches(app, db_session, blip)
    assert set(second) == {threading.current_thread().name}  # recent calls were fast
    assert_ledger_matches_processor(db_session, blip.inner)


def test_is_a_slow_processor_called_on_threads_from_the_first_call_of_later_batches(
    app, db_session
) -> None:
    slow = Blip(sandbox(app), slow=set(range(1, 25)))
    first, second = _two_batches(app, db_session, slow)
    main = threading.current_thread().name
    assert first[0] == main and main not in first[1:]  # timed alone, then threads
    assert main not in second  # known slow: every call on the pool
    assert len(set(second)) > 1
    assert_ledger_matches_processor(db_session, slow.inner)


@pytest.mark.parametrize("path", ["batch", "one_at_a_time"])
def test_is_a_payment_received_on_the_partners_local_day(app, db_session, path: str) -> None:
    from app.services.subscription_billing import charge_next_period

    gateway = sandbox(app)
    late_evening = datetime(2031, 3, 10, 3, 30, tzinfo=UTC)  # Mar 9, 23:30 in New York
    with app.app_context():
        partner = make_partner(db_session)
        partner.timezone = "America/New_York"
        db_session.add(partner)
        db_session.commit()
        (sub,) = due_customers(db_session, gateway, partner, 1, due=date(2031, 3, 9))
        if path == "batch":
            charge_batch(db_session, gateway, [sub.id], as_of=date(2031, 3, 9), now=late_evening)
        else:
            charge_next_period(
                db_session, gateway, sub.id, as_of=date(2031, 3, 9), now=late_evening
            )
    (payment,) = approved_recurring(db_session)
    assert payment.received_on == date(2031, 3, 9)
    receipt = db_session.exec(select(OutboxMessage).where(OutboxMessage.kind == "receipt")).one()
    assert "Mar 9, 2031" in receipt.text_body
