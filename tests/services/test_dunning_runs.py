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
from app.services.dunning import due_invoice_ids
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


def _part_of(invoice_id: int, chunks: int) -> int:
    """The chunk an invoice falls in, computed here as the design states it (Knuth's
    multiplicative hash of the id, its top 32 bits scaled to the number of chunks)."""
    return (invoice_id * 2654435761 % 2**32) * chunks // 2**32


def _in_part(ids: list[int], chunk: int, chunks: int) -> list[int]:
    return [i for i in ids if _part_of(i, chunks) == chunk]


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
            chunks=plan.chunks,
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


def test_does_a_sweep_count_the_due_into_chunks_and_record_them(app, db_session) -> None:
    partner, ids = _partner_with_due(app, db_session)

    plan = start_sweep(
        db_session, partner_id=partner.id, run_date=DAY, now=morning(DAY), chunk_size=2
    )

    assert (plan.sweep, plan.invoices, plan.chunks) == (1, 5, 3)
    run = _run(db_session)
    assert (run.id, run.sweeps) == (plan.run_id, 1)
    assert _figures(run) == ("running", 0, 0, 0, 3, 0)
    parts = [
        due_invoice_ids(db_session, partner_id=partner.id, as_of=DAY, part=(n, 3)) for n in range(3)
    ]
    assert parts == [_in_part(ids, n, 3) for n in range(3)]
    assert sorted(i for part in parts for i in part) == ids  # each due invoice in one chunk


def test_do_ids_in_a_regular_pattern_spread_evenly_over_the_chunks(app, db_session) -> None:
    """The due ids are every other id (each due invoice is followed by one not due), as
    two partners invoicing in turn would leave them: ``id % 4`` would put them all in two
    of four chunks and leave the others' workers idle."""
    partner, ids = _partner_with_due(app, db_session, count=24)
    plan = start_sweep(
        db_session, partner_id=partner.id, run_date=DAY, now=morning(DAY), chunk_size=6
    )
    assert plan.chunks == 4 and len({i % 4 for i in ids}) == 2

    sizes = [
        len(due_invoice_ids(db_session, partner_id=partner.id, as_of=DAY, part=(n, 4)))
        for n in range(4)
    ]

    assert sum(sizes) == 24
    assert all(3 <= size <= 9 for size in sizes), sizes  # within half of the even share


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

    mine = len(_in_part(_ids, 1, 3))
    assert (last["sent"], last["emails"]) == (mine, 2 * mine)
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
    first = len(_in_part(_ids, 0, 2))
    assert _figures(_run(db_session)) == ("running", first, first, 2 * first, 2, 1)
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
    handled = len(_in_part(_ids, 0, 3))

    second = start_sweep(
        db_session, partner_id=partner.id, run_date=DAY, now=morning(DAY), chunk_size=2
    )
    assert second.sweep == 2
    assert second.invoices == 5 - handled  # the first chunk's invoices have moved on
    chunks = -(-second.invoices // 2)
    assert second.chunks == chunks
    _chunk(app, db_session, first, 1)  # a leftover of sweep 1 still runs: counted, not done
    handled += len(_in_part(_ids, 1, 3))
    assert _figures(_run(db_session)) == ("running", handled, handled, 2 * handled, chunks, 0)
    for n in range(second.chunks):
        _chunk(app, db_session, second, n)

    assert _figures(_run(db_session)) == ("complete", 5, 5, 10, chunks, chunks)
    assert _rows(db_session, OutboxMessage) == 10


def test_does_a_sweep_with_nothing_due_complete_the_run_at_once(app, db_session) -> None:
    partner, _ids = _partner_with_due(app, db_session, count=0)

    plan = start_sweep(db_session, partner_id=partner.id, run_date=DAY, now=morning(DAY))

    assert (plan.chunks, plan.invoices) == (0, 0)
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
