"""Sixty days of dunning for two partners with different policies, read back from SMTP.

Every day each partner's sweep runs twice at once (two threads, two sessions) and once
more after; the emails it enqueues are delivered to a real local SMTP server. What the
server received is compared with a list computed here from the policies, independently
of the code under test: recipients, subject and day, each exactly once.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, select

from app.models import CustomerAccount, DunningNotice, Invoice, OutboxMessage, OutboxStatus
from app.services.email import deliver
from app.services.invoices import apply_paid_amount
from tests.fakes.smtp_server import LocalSMTPServer
from tests.services.dunning_helpers import make_account, make_invoice, make_partner, run_sweep

START = date(2031, 5, 1)
DAYS = 60
BOTH = ("customer", "partner")

# The two policies, as the test reads them: (day, stage, recipients).
DEFAULT = [
    (5, "reminder", BOTH), (10, "reminder", BOTH), (15, "reminder", BOTH),
    (25, "reminder", BOTH), (30, "warning", BOTH), (35, "stop", BOTH),
]  # fmt: skip
CUSTOM = [
    (3, "reminder", ("partner",)),
    (7, "reminder", ("partner",)),
    (20, "reminder", ("partner",)),
]
CUSTOM_ROWS = [{"day": d, "stage": s, "recipients": list(r)} for d, s, r in CUSTOM]


@dataclass
class Case:
    invoice: Invoice
    account: CustomerAccount
    policy: list[tuple[int, str, tuple[str, ...]]]
    partner_to: str  # the partner admins' To header
    paid_on: date | None = None


def _expected(cases: list[Case]) -> Counter[tuple[date, tuple[str, ...], str]]:
    """(day, RCPT addresses, subject) of every email the policies call for, once each."""
    expected: Counter[tuple[date, tuple[str, ...], str]] = Counter()
    end = START + timedelta(days=DAYS)
    for case in cases:
        inv, name = case.invoice, case.account.name
        customer_to = inv.billing_email
        for day, stage, recipients in case.policy:
            when = inv.due_date + timedelta(days=day)
            if when > end or (case.paid_on is not None and case.paid_on <= when):
                continue
            for who in recipients:
                to = customer_to if who == "customer" else case.partner_to
                if stage == "reminder":
                    subject = (
                        f"Reminder: invoice {inv.number} is {day} days overdue"
                        if who == "customer"
                        else f"Overdue {day} days: {name}, invoice {inv.number}"
                    )
                elif stage == "warning":
                    subject = (
                        f"Service stops in 5 days: invoice {inv.number} is overdue"
                        if who == "customer"
                        else f"Service stops in 5 days for {name}: invoice {inv.number}"
                    )
                else:
                    subject = (
                        "Your service was stopped"
                        if who == "customer"
                        else f"Service stopped: {name}"
                    )
                expected[(when, tuple(sorted(to.split(", "))), subject)] += 1
    return expected


def _concurrently(app, engine: Engine, partner_ids: list[int], day: date, sink: list[int]) -> None:  # noqa: ANN001
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def one() -> None:
        try:
            with Session(engine, expire_on_commit=False) as session:
                barrier.wait(timeout=10)
                for partner_id in partner_ids:
                    run_sweep(app, session, partner_id, day, emails=sink)
        except BaseException as exc:  # reported in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []


def test_do_sixty_days_of_dunning_send_each_expected_email_once(app, engine, db_session) -> None:
    with app.app_context():
        alder = make_partner(db_session, "alder")  # the default policy
        birch = make_partner(db_session, "birch", policy=CUSTOM_ROWS, admins=2)
        alder_to, birch_to = "admin@alder.example", "admin@birch.example, admin2@birch.example"

        def case(partner, name, due, policy, to, *, billing="", paid_after=None):  # noqa: ANN001, ANN202
            account = make_account(db_session, partner, name, billing_email=billing)
            invoice = make_invoice(db_session, partner, account, due=due)
            paid_on = due + timedelta(days=paid_after) if paid_after is not None else None
            return Case(invoice, account, policy, to, paid_on)

        cases = [
            case(alder, "Ada Lovelace", START + timedelta(days=2), DEFAULT, alder_to),
            case(
                alder,
                "Ben Okri",
                START + timedelta(days=10),
                DEFAULT,
                alder_to,
                billing="accounts@okri.example",
                paid_after=12,
            ),  # fmt: skip
            case(alder, "Cy Twombly", START + timedelta(days=40), DEFAULT, alder_to),
            case(alder, "Dee Dee", START - timedelta(days=3), DEFAULT, alder_to),
            case(birch, "Eve Arden", START + timedelta(days=1), CUSTOM, birch_to),
            case(birch, "Fay Wray", START + timedelta(days=30), CUSTOM, birch_to, paid_after=5),
        ]
        for c in cases:
            assert c.invoice.billing_email  # the address on the invoice is where reminders go
        late = cases[2].invoice

    partner_ids = [alder.id, birch.id]
    received: Counter[tuple[date, tuple[str, ...], str]] = Counter()
    with LocalSMTPServer() as smtp:
        for offset in range(DAYS + 1):
            day = START + timedelta(days=offset)
            for c in cases:
                if c.paid_on == day:  # paid in the morning, before the sweep
                    invoice = db_session.get(Invoice, c.invoice.id, populate_existing=True)
                    apply_paid_amount(invoice, invoice.balance)
                    db_session.add(invoice)
                    db_session.commit()
            sink: list[int] = []
            _concurrently(app, engine, partner_ids, day, sink)
            for partner_id in partner_ids:
                again = run_sweep(app, db_session, partner_id, day, emails=sink)
                assert again["sent"] == again["emails"] == 0, (day, again)
            before = len(smtp.messages)
            with Session(engine) as session:
                for message_id in sink:
                    deliver(session, message_id, smtp_url=smtp.url)
            for _sender, rcpt, email in smtp.messages[before:]:
                received[(day, tuple(sorted(rcpt)), email["Subject"])] += 1
                types = {part.get_content_type() for part in email.walk()}
                assert {"text/plain", "text/html"} <= types
            if day == late.due_date:
                assert db_session.get(Invoice, late.id, populate_existing=True).status == "created"
            if day == late.due_date + timedelta(days=1):
                assert db_session.get(Invoice, late.id, populate_existing=True).status == "overdue"

    expected = _expected(cases)
    assert sorted(received.items()) == sorted(expected.items())
    assert max(received.values()) == 1  # no email twice
    db_session.expire_all()
    pending = db_session.exec(
        select(OutboxMessage).where(OutboxMessage.status != OutboxStatus.SENT)
    ).all()
    assert pending == []  # every email written was enqueued, and delivered
    stopped = {
        a.name: a.service_stopped_on
        for a in db_session.exec(select(CustomerAccount)).all()
        if a.service_stopped_on
    }
    assert stopped == {
        "Ada Lovelace": START + timedelta(days=37),
        "Dee Dee": START + timedelta(days=32),
    }
    # One notice per (invoice, stage) handled, none skipped: no day was missed.
    rows = db_session.exec(select(DunningNotice)).all()
    assert not [n for n in rows if n.skipped]
    assert len(rows) == len({(n.invoice_id, n.day) for n in rows}) == 6 + 2 + 3 + 6 + 3 + 1
