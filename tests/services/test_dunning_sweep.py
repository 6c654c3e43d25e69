"""The dunning sweep, stage by stage: catch-up, service stop and restore, the timeline,
policy changes, and a selection whose cost follows the invoices due."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from flask import render_template
from sqlalchemy import event
from sqlmodel import select

from app.domain.dunning import PolicyInvalid, parse_policy
from app.models import CustomerAccount, Invoice, PayLink, Subscription
from app.services import pay_links
from app.services.card_testing import DeclineLimit
from app.services.dunning_settings import save_dunning_policy
from app.services.dunning_timeline import timeline_for
from app.services.invoices import apply_paid_amount
from tests.services.billing_helpers import add_subscription, make_customer, partner_admin, sandbox
from tests.services.dunning_helpers import (
    make_account,
    make_invoice,
    make_partner,
    morning,
    notices,
    outbox,
    run_sweep,
)
from tests.services.payer_helpers import card, new_form

DUE = date(2031, 3, 10)


def _day(n: int) -> date:
    return DUE + timedelta(days=n)


def test_does_a_missed_week_send_only_the_latest_due_stage(app, db_session) -> None:
    with app.app_context():
        partner = make_partner(db_session, "alder")
        account = make_account(db_session, partner, "Ada Lovelace")
        invoice = make_invoice(db_session, partner, account, due=DUE)

    first = run_sweep(app, db_session, partner.id, _day(5))
    # No run from day 6 to day 16: the day-10 stage was missed, day 15 is now due.
    caught_up = run_sweep(app, db_session, partner.id, _day(17))

    assert (first["overdue"], first["sent"]) == (1, 1)
    assert (caught_up["sent"], caught_up["skipped"], caught_up["emails"]) == (1, 1, 2)
    handled = [(n.day, n.skipped, n.handled_on) for n in notices(db_session, invoice.id)]
    assert handled == [(5, False, _day(5)), (10, True, _day(17)), (15, False, _day(17))]
    subjects = [m.subject for m in outbox(db_session, "dunning_reminder")]
    assert subjects == [
        f"Reminder: invoice {invoice.number} is 5 days overdue",
        f"Overdue 5 days: Ada Lovelace, invoice {invoice.number}",
        f"Reminder: invoice {invoice.number} is 17 days overdue",  # the days it really is
        f"Overdue 17 days: Ada Lovelace, invoice {invoice.number}",
    ]
    fresh = db_session.get(Invoice, invoice.id, populate_existing=True)
    assert (fresh.dunning_day, fresh.next_dunning_on) == (15, _day(25))


def test_does_day_35_stop_service_and_paying_by_the_emailed_link_restore_it(
    app, db_session
) -> None:
    secret = app.config["PORTICO"].secret_key
    with app.app_context():
        partner = make_partner(db_session, "alder")
        account, method = make_customer(db_session, sandbox(app), partner, "Late Larry")
        sub = add_subscription(
            db_session, account, method, frequency="monthly", start_date=date(2031, 1, 5)
        )
        invoice = make_invoice(db_session, partner, account, due=DUE, amount=4500)

    for n in (5, 10, 15, 25, 30, 34):
        run_sweep(app, db_session, partner.id, _day(n), secret=secret)
    db_session.expire_all()
    assert db_session.get(Subscription, sub.id).status == "recurring"
    warning = next(
        m for m in outbox(db_session, "dunning_warning") if m.to_address == account.email
    )
    assert "stops in 5 days, on Apr 14, 2031" in warning.text_body and "$45.00" in warning.text_body

    stop = run_sweep(app, db_session, partner.id, _day(35), secret=secret)

    assert (stop["sent"], stop["stopped"], stop["emails"]) == (1, 1, 2)
    db_session.expire_all()
    stopped = db_session.get(CustomerAccount, account.id)
    assert (stopped.status, stopped.service_stopped_on) == ("suspended", _day(35))
    assert db_session.get(Subscription, sub.id).status == "suspended"
    assert db_session.get(Invoice, invoice.id).next_dunning_on is None  # nothing after stop
    assert {m.to_address for m in outbox(db_session, "service_stopped")} == {
        account.email, "admin@alder.example",
    }  # fmt: skip

    # Reminders reuse a pay link while it has a week left; the warning (day 30) got a new
    # one, since the first expires on day 35. The customer pays with the warning's link.
    links = db_session.exec(select(PayLink).order_by(PayLink.id)).all()
    assert [link.expires_at for link in links] == [morning(_day(35)), morning(_day(60))]
    tokens = set(re.findall(r"/pay/([\w.\-]+)", warning.text_body))
    assert len(tokens) == 1
    with app.app_context():
        view = pay_links.open_link(db_session, secret, tokens.pop(), now=morning(_day(36)))
        assert view.state == "payable"
        outcome = pay_links.pay_invoice(
            db_session, sandbox(app), view=view, form=new_form(app, f"paylink:{view.link.id}"),
            amount=4500, method=card(sandbox(app)), payer_email=account.email,
            client_address="203.0.113.9", now=morning(_day(36)), limit=DeclineLimit(),
        )  # fmt: skip
    assert outcome.approved
    db_session.expire_all()
    restored = db_session.get(CustomerAccount, account.id)
    assert (restored.status, restored.service_stopped_on) == ("active", None)
    assert db_session.get(Subscription, sub.id).status == "recurring"
    assert len(outbox(db_session, "service_restored")) == 2
    later = run_sweep(app, db_session, partner.id, _day(40), secret=secret)
    assert later["invoices"] == 0  # a paid invoice has left the sweep


def test_does_the_timeline_show_what_was_sent_skipped_and_comes_next(app, db_session) -> None:
    with app.app_context():
        partner = make_partner(db_session, "alder")
        account = make_account(db_session, partner, "Ada Lovelace", billing_email="ap@ada.example")
        invoice = make_invoice(db_session, partner, account, due=DUE)
    run_sweep(app, db_session, partner.id, _day(5))
    run_sweep(app, db_session, partner.id, _day(16))

    with app.app_context():
        invoice = db_session.get(Invoice, invoice.id, populate_existing=True)
        timeline = timeline_for(db_session, invoice, as_of=_day(16))
        html = render_template("partner/_dunning_timeline.html", timeline=timeline)

    assert [(e.day, e.state, e.on) for e in timeline] == [
        (5, "sent", _day(5)), (10, "skipped", _day(16)), (15, "sent", _day(16)),
        (25, "next", _day(25)),
    ]  # fmt: skip
    assert timeline[0].recipients == (
        ("customer", "ap@ada.example"), ("partner", "admin@alder.example"),
    )  # fmt: skip
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "<ol>" in html and 'aria-labelledby="dunning-timeline-heading"' in html
    assert "Reminder — day 5 overdue sent on Mar 15, 2031" in text
    assert "skipped on Mar 26, 2031" in text
    assert "Reminder — day 25 overdue next on Apr 4, 2031" in text
    assert "customer (ap@ada.example), partner (admin@alder.example)" in text

    with app.app_context():
        apply_paid_amount(invoice, invoice.balance)
        db_session.commit()
        paid = timeline_for(db_session, invoice, as_of=_day(17))
        empty = render_template("partner/_dunning_timeline.html", timeline=[])
    assert [e.state for e in paid] == ["sent", "skipped", "sent"]  # no next stage once paid
    assert "No overdue reminders" in empty


def test_does_a_due_stage_the_sweep_has_not_reached_show_as_next_today(app, db_session) -> None:
    with app.app_context():
        partner = make_partner(db_session, "alder")
        account = make_account(db_session, partner, "Ada Lovelace")
        invoice = make_invoice(db_session, partner, account, due=DUE)
        timeline = timeline_for(db_session, invoice, as_of=_day(12))
    assert [(e.day, e.state, e.on, e.due_on) for e in timeline] == [
        (10, "next", _day(12), _day(10)),
    ]


def test_do_partner_only_stages_email_only_the_partner(app, db_session) -> None:
    rows = [{"day": 3, "stage": "reminder", "recipients": ["partner"]}]
    with app.app_context():
        partner = make_partner(db_session, "birch", policy=rows, admins=2)
        account = make_account(db_session, partner, "Eve Arden")
        make_invoice(db_session, partner, account, due=DUE)
    counts = run_sweep(app, db_session, partner.id, _day(3))
    sent = outbox(db_session)
    assert counts["emails"] == 1
    assert [(m.to_address, m.kind) for m in sent] == [
        ("admin@birch.example, admin2@birch.example", "dunning_reminder")
    ]
    assert "Your dunning settings do not email the customer" in sent[0].text_body


def test_do_paid_and_canceled_invoices_leave_the_sweep_without_emails(app, db_session) -> None:
    with app.app_context():
        partner = make_partner(db_session, "alder")
        account = make_account(db_session, partner, "Ada Lovelace")
        paid = make_invoice(db_session, partner, account, due=DUE)
        canceled = make_invoice(db_session, partner, account, due=DUE)
        paid.amount_paid = paid.total  # counted elsewhere, the sweep date left behind
        canceled.status = "canceled"
        db_session.add_all([paid, canceled])
        db_session.commit()
    counts = run_sweep(app, db_session, partner.id, _day(5))
    assert (counts["invoices"], counts["closed"], counts["emails"]) == (2, 2, 0)
    db_session.expire_all()
    assert {db_session.get(Invoice, i).next_dunning_on for i in (paid.id, canceled.id)} == {None}


def test_does_a_new_policy_apply_only_to_stages_still_ahead(app, db_session) -> None:
    with app.app_context():
        partner = make_partner(db_session, "alder")
        account = make_account(db_session, partner, "Ada Lovelace")
        far = make_invoice(db_session, partner, account, due=DUE)  # 40 days overdue below
        near = make_invoice(db_session, partner, account, due=_day(28))  # 12 days overdue
        soon = make_invoice(db_session, partner, account, due=_day(45))  # not due yet
    run_sweep(app, db_session, partner.id, _day(40))  # far: stop (35) sent, others skipped
    rows = [
        {"day": "3", "stage": "reminder", "recipients": ["customer"]},
        {"day": "14", "stage": "reminder", "recipients": ["customer"]},
        {"day": "50", "stage": "reminder", "recipients": ["customer", "partner"]},
    ]
    with app.app_context():
        save_dunning_policy(db_session, partner_admin(db_session, partner), rows, as_of=_day(40))
    db_session.expire_all()
    assert db_session.get(Invoice, far.id).next_dunning_on == _day(50)
    assert db_session.get(Invoice, near.id).next_dunning_on == _day(28 + 14)
    assert db_session.get(Invoice, soon.id).next_dunning_on == _day(46)

    counts = run_sweep(app, db_session, partner.id, _day(42))
    assert (counts["invoices"], counts["sent"], counts["skipped"]) == (1, 1, 0)
    # Day 5 was skipped and day 10 sent by the old policy; day 3 of the new one lies in
    # the past and is neither sent nor recorded.
    assert [(n.day, n.skipped) for n in notices(db_session, near.id)] == [
        (5, True), (10, False), (14, False),
    ]  # fmt: skip


def _statements_for_sweep(app, db_session, engine, partner_id: int, day: date) -> int:  # noqa: ANN001
    seen: list[str] = []

    def count(*args: object) -> None:
        seen.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        run_sweep(app, db_session, partner_id, day, chunk_size=500)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def test_does_the_sweeps_cost_follow_the_invoices_due_not_all_invoices(
    app, engine, db_session
) -> None:
    with app.app_context():
        small = make_partner(db_session, "alder")
        large = make_partner(db_session, "birch")
        for partner, idle in ((small, 0), (large, 300)):
            account = make_account(db_session, partner, f"Member of {partner.slug}")
            for _ in range(10):
                make_invoice(db_session, partner, account, due=DUE)  # due a reminder on day 5
            for _ in range(idle):
                make_invoice(db_session, partner, account, due=_day(60))  # not due for weeks
    db_session.expire_all()
    small_cost = _statements_for_sweep(app, db_session, engine, small.id, _day(5))
    large_cost = _statements_for_sweep(app, db_session, engine, large.id, _day(5))
    assert large_cost == small_cost
    assert small_cost <= 15  # one chunk: a dozen statements for ten invoices, 20 emails
    assert len(outbox(db_session, "dunning_reminder")) == 40


def test_is_a_stored_policy_checked_before_the_sweep_uses_it(app, db_session) -> None:
    policy = parse_policy([{"day": 2, "stage": "reminder", "recipients": ["partner"]}])
    assert policy[0].day == 2
    with app.app_context():
        partner = make_partner(db_session, "alder")
        partner.dunning_policy = [{"day": 0, "stage": "reminder", "recipients": []}]
        db_session.add(partner)
        db_session.commit()
    with pytest.raises(PolicyInvalid):
        run_sweep(app, db_session, partner.id, _day(5))
