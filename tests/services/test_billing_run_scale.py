"""The billing run's per-chunk work does not grow with the run: a chunk's check that the
run is done asks for one due subscription, not the whole due list (ARCHITECTURE §2)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

from sqlalchemy import event
from sqlmodel import Session

from app.models import BillingRun
from app.services.billing_run import process_chunk, start_run
from tests.services.billing_helpers import at_three, due_customers, make_partner, sandbox

DAY = date(2031, 5, 12)


@contextmanager
def statements(session: Session) -> Iterator[list[str]]:
    seen: list[str] = []

    def keep(_conn, _cursor, statement, _params, _context, _many) -> None:  # noqa: ANN001
        seen.append(" ".join(statement.split()))

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", keep)


def _reads_of_the_due_list(seen: list[str]) -> list[str]:
    """Portico's reads of due subscriptions not restricted to given ids."""
    return [
        s
        for s in seen
        if "FROM subscription" in s
        and "subscription.next_charge_date <=" in s
        and "subscription.id IN" not in s
    ]


def test_does_a_chunk_read_one_due_row_to_know_whether_the_run_is_done(app, db_session) -> None:
    gateway = sandbox(app)
    with app.app_context():
        partner = make_partner(db_session)
        due_customers(db_session, gateway, partner, 12, due=DAY)
        plan = start_run(db_session, partner_id=partner.id, run_date=DAY, chunk_size=2)  # type: ignore[arg-type]
        run_id = plan.run.id
        assert run_id is not None
        with statements(db_session) as seen:
            tally = process_chunk(
                db_session, gateway, run_id=run_id, subscription_ids=plan.chunks[0],
                now=at_three(DAY),
            )  # fmt: skip

    assert tally["charged"] == 2
    reads = _reads_of_the_due_list(seen)
    assert reads, "the chunk checks whether anything is still due"
    assert all(" LIMIT " in s for s in reads), reads
    run = db_session.get(BillingRun, run_id, populate_existing=True)
    assert run is not None and run.status == "running"  # ten still due


def test_does_the_last_chunk_complete_the_run_and_a_resumed_run_finish_when_nothing_is_due(
    app, db_session
) -> None:
    gateway = sandbox(app)
    with app.app_context():
        partner = make_partner(db_session)
        due_customers(db_session, gateway, partner, 5, due=DAY)
        first = start_run(db_session, partner_id=partner.id, run_date=DAY, chunk_size=2)  # type: ignore[arg-type]
        # Started again before any chunk ran (a second operator): the same run, six chunks
        # counted, of which only the second plan's three will ever run.
        again = start_run(db_session, partner_id=partner.id, run_date=DAY, chunk_size=2)  # type: ignore[arg-type]
        assert again.run.id == first.run.id
        for chunk in again.chunks:
            process_chunk(
                db_session, gateway, run_id=again.run.id, subscription_ids=chunk,  # type: ignore[arg-type]
                now=at_three(DAY),
            )  # fmt: skip
        done = db_session.get(BillingRun, first.run.id, populate_existing=True)
        assert done is not None
        assert (done.status, done.chunks, done.chunks_done) == ("complete", 6, 3)
        for chunk in first.chunks:  # the first plan's jobs find nothing left to charge
            tally = process_chunk(
                db_session, gateway, run_id=first.run.id, subscription_ids=chunk,  # type: ignore[arg-type]
                now=at_three(DAY),
            )  # fmt: skip
            assert tally["charged"] == 0

    run = db_session.get(BillingRun, first.run.id, populate_existing=True)
    assert run is not None
    assert (run.status, run.charged, run.chunks, run.chunks_done) == ("complete", 5, 6, 6)
