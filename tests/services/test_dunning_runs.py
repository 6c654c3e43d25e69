"""A day's dunning run in chunks (``start_sweep`` + ``sweep_run_chunk``), on the real
database: the run row's counts and completion are right whatever the order, repetition or
interruption of its chunks."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import col, select

from app.models import DunningNotice, DunningRun, Invoice, OutboxMessage
from app.models.dunning import DunningRunChunk
from app.services.dunning_runs import SweepPlan, start_sweep, sweep_run_chunk
from tests.services.dunning_helpers import (
    BASE_URL,
    make_account,
    make_invoice,
    make_partner,
    morning,
)

DUE = date(2031, 3, 10)
DAY = DUE + timedelta(days=5)  # the day-5 reminder of every invoice below


class Crash(Exception):
    """The worker dying between two of a chunk's transactions."""


def _partner_with_due(app, db_session, count: int = 5):  # noqa: ANN001, ANN202
    """``count`` invoices due their day-5 reminder on DAY, each followed (in id order) by
    one not due yet, which lies inside the chunks' id ranges and must stay untouched."""
    due: list[int] = []
    with app.app_context():
        partner = make_partner(db_session, "alder")
        for n in range(count):
            for name, day in ((f"Ada {n}", DUE), (f"Later {n}", DAY + timedelta(days=3))):
                account = make_account(db_session, partner, name)
                invoice = make_invoice(db_session, partner, account, due=day)
                if day == DUE:
                    due.append(invoice.id)
    return partner, due


def _chunk(app, db_session, plan: SweepPlan, n: int, **kwargs) -> Counter[str]:  # noqa: ANN001
    with app.app_context():
        return sweep_run_chunk(
            db_session,
            run_id=plan.run_id,
            sweep=plan.sweep,
            chunk=n,
            first_id=plan.chunks[n][0],
            last_id=plan.chunks[n][1],
            now=morning(DAY),
            base_url=BASE_URL,
            **kwargs,
        )


def _run(db_session) -> DunningRun:  # noqa: ANN001
    db_session.expire_all()
    return db_session.exec(select(DunningRun)).one()


def _figures(run: DunningRun) -> tuple:
    return (run.status, run.invoices, run.sent, run.emails, run.chunks, run.chunks_done)


def _rows(db_session, model) -> int:  # noqa: ANN001
    db_session.expire_all()
    return len(db_session.exec(select(model)).all())


def test_does_a_sweep_cut_the_due_ids_into_chunks_and_record_them(app, db_session) -> None:
    partner, ids = _partner_with_due(app, db_session)

    plan = start_sweep(
        db_session, partner_id=partner.id, run_date=DAY, now=morning(DAY), chunk_size=2
    )

    assert plan.chunks == [(ids[0], ids[1]), (ids[2], ids[3]), (ids[4], ids[4])]
    assert plan.sweep == 1 and plan.invoices == 5
    run = _run(db_session)
    assert (run.id, run.sweeps) == (plan.run_id, 1)
    assert _figures(run) == ("running", 0, 0, 0, 3, 0)


def test_do_the_chunks_in_any_order_complete_the_run_with_its_totals(app, db_session) -> None:
    partner, _ids = _partner_with_due(app, db_session)
    plan = start_sweep(
        db_session, partner_id=partner.id, run_date=DAY, now=morning(DAY), chunk_size=2
    )

    emails: list[int] = []
    for n in (2, 0):
        _chunk(app, db_session, plan, n, on_emails=emails.extend)
        assert _run(db_session).status == "running"
    last = _chunk(app, db_session, plan, 1, on_emails=emails.extend)

    assert (last["sent"], last["emails"]) == (2, 4)
    run = _run(db_session)
    assert _figures(run) == ("complete", 5, 5, 10, 3, 3)
    assert run.finished_at == morning(DAY)
    assert len(emails) == len(set(emails)) == 10 == _rows(db_session, OutboxMessage)
    later = db_session.exec(select(Invoice).where(col(Invoice.id).not_in(_ids))).all()
    assert len(later) == 5 and {i.status for i in later} == {"created"}  # between, not due


def test_does_a_chunk_leave_an_invoice_paid_since_the_sweep_started(app, db_session) -> None:
    partner, ids = _partner_with_due(app, db_session, count=3)
    plan = start_sweep(db_session, partner_id=partner.id, run_date=DAY, now=morning(DAY))
    paid = db_session.get(Invoice, ids[1])
    paid.amount_paid, paid.status, paid.next_dunning_on = paid.total, "paid", None
    db_session.add(paid)
    db_session.commit()

    counts = _chunk(app, db_session, plan, 0)

    assert (counts["invoices"], counts["sent"]) == (2, 2)
    assert _figures(_run(db_session)) == ("complete", 2, 2, 4, 1, 1)
    assert _rows(db_session, DunningNotice) == 2


def test_does_a_chunk_run_twice_send_and_count_once(app, db_session) -> None:
    partner, _ids = _partner_with_due(app, db_session)
    plan = start_sweep(
        db_session, partner_id=partner.id, run_date=DAY, now=morning(DAY), chunk_size=3
    )
    _chunk(app, db_session, plan, 0)

    again = _chunk(app, db_session, plan, 0)  # a retry, or the same job queued twice

    assert again == Counter()
    assert _figures(_run(db_session)) == ("running", 3, 3, 6, 2, 1)
    _chunk(app, db_session, plan, 1)
    _chunk(app, db_session, plan, 1)
    assert _figures(_run(db_session)) == ("complete", 5, 5, 10, 2, 2)
    assert _rows(db_session, DunningNotice) == 5
    assert _rows(db_session, OutboxMessage) == 10
    assert _rows(db_session, DunningRunChunk) == 2


def test_does_a_chunk_that_died_between_its_transactions_lose_and_double_nothing(
    app, db_session
) -> None:
    """The chunk's first transaction (2 invoices) commits with its counts; the worker dies
    before the rest and before the chunk is marked done; the chunk runs again."""
    partner, _ids = _partner_with_due(app, db_session)
    plan = start_sweep(db_session, partner_id=partner.id, run_date=DAY, now=morning(DAY))

    def die(_email_ids: list[int]) -> None:
        raise Crash

    with pytest.raises(Crash):
        _chunk(app, db_session, plan, 0, batch_size=2, on_emails=die)
    db_session.rollback()
    assert _figures(_run(db_session)) == ("running", 2, 2, 4, 1, 0)  # counted with the work

    rerun = _chunk(app, db_session, plan, 0, batch_size=2)

    assert (rerun["invoices"], rerun["sent"]) == (3, 3)  # the first two are no longer due
    assert _figures(_run(db_session)) == ("complete", 5, 5, 10, 1, 1)
    assert _rows(db_session, DunningNotice) == 5
    assert _rows(db_session, OutboxMessage) == 10


def test_does_a_new_sweep_supersede_an_unfinished_one(app, db_session) -> None:
    """Sweep 1's worker died after its first chunk; an operator sweeps the day again."""
    partner, _ids = _partner_with_due(app, db_session)
    first = start_sweep(
        db_session, partner_id=partner.id, run_date=DAY, now=morning(DAY), chunk_size=2
    )
    _chunk(app, db_session, first, 0)

    second = start_sweep(
        db_session, partner_id=partner.id, run_date=DAY, now=morning(DAY), chunk_size=2
    )
    assert second.sweep == 2
    assert second.chunks == first.chunks[1:]  # the first chunk's invoices have moved on
    _chunk(app, db_session, first, 1)  # a leftover of sweep 1 still runs: counted, not done
    assert _figures(_run(db_session)) == ("running", 4, 4, 8, 2, 0)
    for n in range(len(second.chunks)):
        _chunk(app, db_session, second, n)

    assert _figures(_run(db_session)) == ("complete", 5, 5, 10, 2, 2)
    assert _rows(db_session, OutboxMessage) == 10


def test_does_a_sweep_with_nothing_due_complete_the_run_at_once(app, db_session) -> None:
    partner, _ids = _partner_with_due(app, db_session, count=0)

    plan = start_sweep(db_session, partner_id=partner.id, run_date=DAY, now=morning(DAY))

    assert (plan.chunks, plan.invoices) == ([], 0)
    run = _run(db_session)
    assert _figures(run) == ("complete", 0, 0, 0, 0, 0)
    assert run.finished_at == morning(DAY)


def test_is_the_selection_answered_from_the_sweeps_own_index(app, engine, db_session) -> None:
    partner, _ids = _partner_with_due(app, db_session, count=2)
    query = "SELECT id FROM invoice WHERE partner_id = :p AND next_dunning_on <= :d"
    params = {"p": partner.id, "d": DAY}
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":  # a tiny table: make the planner show its pick
            conn.execute(text("SET enable_seqscan = off"))
            conn.execute(text("SET enable_bitmapscan = off"))
            plan = " ".join(r[0] for r in conn.execute(text(f"EXPLAIN {query}"), params))
            assert "Index Only Scan using ix_invoice_dunning_due" in plan, plan
        else:
            plan = " ".join(
                str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {query}"), params)
            )
            assert "COVERING INDEX ix_invoice_dunning_due" in plan, plan
