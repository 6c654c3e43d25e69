"""``flask dunning run``: a dry run lists what would be sent and writes nothing; a real
run sends once, whatever the number of runs."""

from __future__ import annotations

from datetime import date, timedelta

from sqlmodel import select

from app.models import DunningNotice, DunningRun, Invoice, OutboxMessage
from tests.services.dunning_helpers import make_account, make_invoice, make_partner

DUE = date(2031, 3, 10)


def _invoices(app, db_session):  # noqa: ANN001, ANN202
    with app.app_context():
        alder = make_partner(db_session, "alder")
        birch = make_partner(
            db_session, "birch", policy=[{"day": 3, "stage": "reminder", "recipients": ["partner"]}]
        )
        ada = make_invoice(db_session, alder, make_account(db_session, alder, "Ada"), due=DUE)
        old = make_invoice(
            db_session, alder, make_account(db_session, alder, "Old"), due=DUE - timedelta(20)
        )
        eve = make_invoice(db_session, birch, make_account(db_session, birch, "Eve"), due=DUE)
    return ada, old, eve


def _count(db_session, model) -> int:  # noqa: ANN001
    db_session.expire_all()
    return len(db_session.exec(select(model)).all())


def test_does_a_dry_run_list_each_stage_and_send_nothing(app, db_session) -> None:
    ada, old, eve = _invoices(app, db_session)

    result = app.test_cli_runner().invoke(
        args=["dunning", "run", "--date", (DUE + timedelta(days=5)).isoformat(), "--dry-run"]
    )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Alder Club — 2031-03-15: 2 stage(s) would be sent (dry run)"
    ada_line = next(line for line in lines if ada.number in line)
    assert "day   5 reminder" in ada_line and "5 days overdue, $120.00" in ada_line
    assert "customer <ada@customers.example>" in ada_line
    assert "partner <admin@alder.example>" in ada_line
    old_lines = [line for line in lines if old.number in line]  # 25 days overdue, never swept
    assert len(old_lines) == 4 and "day  25 reminder" in old_lines[-1]
    assert all("skipped (caught up)" in line for line in old_lines[:3])
    assert "Birch Club — 2031-03-15: 1 stage(s) would be sent (dry run)" in lines
    assert any(eve.number in line and "day   3" in line for line in lines)
    for model in (DunningNotice, OutboxMessage, DunningRun):
        assert _count(db_session, model) == 0
    fresh = db_session.get(Invoice, ada.id)
    assert (fresh.status, fresh.dunning_day, fresh.next_dunning_on) == (
        "created", 0, DUE + timedelta(days=1),
    )  # fmt: skip


def test_does_a_real_run_send_once_and_report_its_counts(app, db_session) -> None:
    _invoices(app, db_session)
    runner = app.test_cli_runner()
    args = ["dunning", "run", "--date", (DUE + timedelta(days=5)).isoformat(), "--partner", "alder"]

    first = runner.invoke(args=args)
    second = runner.invoke(args=args)

    assert first.exit_code == 0, first.output
    assert "sent 2, skipped 3, overdue 2, emails 4" in first.output
    assert "nothing due" in second.output
    assert _count(db_session, OutboxMessage) == 4  # birch was not run
    runs = db_session.exec(select(DunningRun)).all()
    assert [(r.run_date, r.status, r.sent, r.skipped, r.emails) for r in runs] == [
        (DUE + timedelta(days=5), "complete", 2, 3, 4),
    ]


def test_are_a_bad_date_and_an_unknown_partner_refused(app, db_session) -> None:
    runner = app.test_cli_runner()
    assert "use YYYY-MM-DD" in runner.invoke(args=["dunning", "run", "--date", "15/03"]).output
    unknown = runner.invoke(args=["dunning", "run", "--partner", "nobody"])
    assert unknown.exit_code != 0 and "no partner with slug 'nobody'" in unknown.output
