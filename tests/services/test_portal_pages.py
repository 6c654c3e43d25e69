"""The customer portal's read models (dashboard, invoice list, payment history, invoice
page) and its "Email me" copies, on a real database; rows written straight to the
tables so each test has exactly the dates and statuses it asks about."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine, event, func
from sqlmodel import Session, select

from app.domain.errors import Conflict, NotFound
from app.models import (
    CustomerAccount,
    InvoiceLine,
    OutboxMessage,
    Partner,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
    Role,
    ScheduledPayment,
    User,
)
from app.services import portal_emails, portal_pages, portal_payments
from app.services.billing_pages import (
    customer_invoice_detail,
    customer_payment_detail,
    invoice_detail,
    payment_detail,
)
from app.services.invoice_admin import Links
from tests.services.dashboard_helpers import (
    make_account,
    make_invoice,
    make_partner,
    make_payment,
    make_subscription,
)

TODAY = date(2026, 3, 10)
NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
_tokens = itertools.count(1)


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    with app.app_context(), Session(engine, expire_on_commit=False) as session:
        yield session


def customer(db: Session, account: CustomerAccount) -> User:
    """The account's customer user (who signs in to the portal)."""
    user = User(
        email=f"me-{account.id}@customers.example",
        password_hash="x",
        role=Role.CUSTOMER,
        partner_id=account.partner_id,
        customer_account_id=account.id,
    )
    db.add(user)
    db.commit()
    return user


def method(db: Session, account: CustomerAccount, last4: str, *, default: bool) -> PaymentMethod:
    row = PaymentMethod(
        partner_id=account.partner_id,
        customer_account_id=account.id,  # type: ignore[arg-type]
        gateway="sandbox",
        token=f"tok_{account.id}_{last4}",
        kind="card",
        brand="visa",
        last4=last4,
        exp_month=12,
        exp_year=2031,
        is_default=default,
    )
    db.add(row)
    db.commit()
    return row


def scheduled(
    db: Session, invoice_id: int, account: CustomerAccount, *, on: date, amount: int, status: str
) -> ScheduledPayment:
    row = ScheduledPayment(
        partner_id=account.partner_id,
        customer_account_id=account.id,  # type: ignore[arg-type]
        invoice_id=invoice_id,
        amount=amount,
        currency=account.currency,
        pay_on=on,
        status=status,
    )
    db.add(row)
    db.commit()
    return row


@pytest.fixture
def home(db: Session) -> tuple[Partner, CustomerAccount, User]:
    partner, _ = make_partner(db, "harbor")
    account = make_account(db, partner, "Jo Rivers")
    return partner, account, customer(db, account)


# -- the dashboard ---------------------------------------------------------------------------


def test_does_the_dashboard_add_up_balance_open_invoices_and_the_schedule(
    db: Session, home: tuple[Partner, CustomerAccount, User]
) -> None:
    _, account, user = home
    card = method(db, account, "4242", default=True)
    other = method(db, account, "1881", default=False)
    workshop = make_invoice(db, account, status="created", total=4000, due=TODAY + timedelta(25))
    hall = make_invoice(
        db, account, status="overdue", total=9000, paid=1000, due=TODAY - timedelta(12)
    )
    make_invoice(db, account, status="paid", total=2500, paid=2500, due=TODAY)
    make_invoice(db, account, status="canceled", total=7500, due=TODAY)
    monthly = make_subscription(
        db, account, frequency="monthly", start=TODAY + timedelta(5), amount=2500
    )
    monthly.payment_method_id = other.id
    # Installments of 150.00 towards 600.00, 500.00 charged: the last charge is 100.00.
    installments = make_subscription(
        db, account, frequency="monthly", start=TODAY - timedelta(95), amount=15000,
        stop_rule="balance_due", total=60000, charged=3, amount_charged=50000,
    )  # fmt: skip
    make_subscription(db, account, frequency="weekly", start=TODAY, amount=900, status="stopped")
    broken = make_subscription(
        db, account, frequency="monthly", start=TODAY, amount=4000, status="error"
    )
    db.add(monthly)
    db.commit()
    planned = scheduled(
        db, hall.id, account, on=TODAY + timedelta(2), amount=3000, status="scheduled"
    )
    scheduled(db, hall.id, account, on=TODAY + timedelta(1), amount=500, status="canceled")
    scheduled(db, hall.id, account, on=TODAY + timedelta(1), amount=700, status="paid")

    view = portal_pages.dashboard(db, user)

    assert view.balance_due == 4000 + 8000
    assert [inv.id for inv in view.open_invoices] == [hall.id, workshop.id]  # by due date
    assert [(c.on, c.amount, c.description) for c in view.upcoming] == [
        (installments.next_charge_date, 10000, installments.description),
        (TODAY + timedelta(2), 3000, f"Invoice {hall.number}"),
        (TODAY + timedelta(5), 2500, monthly.description),
    ]
    assert installments.next_charge_date is not None
    assert installments.next_charge_date <= TODAY + timedelta(2)
    methods = [c.method.last4 if c.method else None for c in view.upcoming]
    assert methods == ["4242", "4242", "1881"]  # own method, else the default
    assert view.upcoming[1].scheduled is not None and view.upcoming[1].scheduled.id == planned.id
    assert [s.id for s in view.in_error] == [broken.id]
    assert card.is_default


def test_does_the_dashboard_show_the_last_five_approved_or_declined_payments(
    db: Session, home: tuple[Partner, CustomerAccount, User]
) -> None:
    _, account, user = home
    invoice = make_invoice(db, account, status="paid", total=1000, paid=1000, due=TODAY)
    made = []
    for n, status in enumerate(["approved", "declined", "approved", "pending", "approved",
                                "approved", "declined", "unknown"]):  # fmt: skip
        made.append(
            make_payment(
                db, account, kind="charge", amount=100 * (n + 1), status=status,
                settled_at=NOW - timedelta(days=10 - n), invoice=invoice,
            )
        )  # fmt: skip
    make_payment(db, account, kind="refund", amount=50, settled_at=NOW)
    make_payment(db, account, kind="authorization", amount=50, settled_at=NOW)

    recent = portal_pages.dashboard(db, user).recent_payments

    assert [line.payment.id for line in recent] == [made[i].id for i in (6, 5, 4, 2, 1)]
    assert recent[0].description == f"Invoice {invoice.number}"
    assert recent[0].label == "Card •••• " and recent[0].day == (NOW - timedelta(days=4)).date()


def test_is_the_dashboard_a_constant_number_of_queries(
    db: Session, engine: Engine, home: tuple[Partner, CustomerAccount, User]
) -> None:
    _, account, user = home

    def queries() -> int:
        db.expunge_all()
        seen: list[str] = []

        def count(*_args: object) -> None:
            seen.append("q")

        event.listen(engine, "before_cursor_execute", count)
        try:
            portal_pages.dashboard(db, user)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(seen)

    card = method(db, account, "4242", default=True)
    invoice = make_invoice(db, account, status="created", total=100, due=TODAY)
    make_subscription(db, account, frequency="monthly", start=TODAY, amount=100)
    few = queries()
    for n in range(6):
        inv = make_invoice(db, account, status="overdue", total=100, due=TODAY)
        scheduled(db, inv.id, account, on=TODAY + timedelta(n), amount=50, status="scheduled")
        sub = make_subscription(db, account, frequency="weekly", start=TODAY, amount=100 + n)
        sub.payment_method_id = card.id
        db.add(sub)
        make_payment(db, account, kind="charge", amount=10, settled_at=NOW, invoice=invoice)
    db.commit()

    assert queries() == few


def test_may_a_partner_user_open_the_dashboard(db: Session) -> None:
    _, admin = make_partner(db, "harbor")
    with pytest.raises(NotFound):
        portal_pages.dashboard(db, admin)


# -- the invoice list ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("open", {"created", "overdue"}),
        ("overdue", {"overdue"}),
        ("paid", {"paid"}),
        ("canceled", {"canceled", "cancellation"}),
        ("all", {"created", "overdue", "paid", "canceled", "cancellation"}),
        ("bogus", {"created", "overdue", "paid", "canceled", "cancellation"}),
    ],
)
def test_does_each_invoice_filter_show_its_statuses(
    db: Session, home: tuple[Partner, CustomerAccount, User], status: str, expected: set[str]
) -> None:
    partner, account, user = home
    for n, state in enumerate(["created", "overdue", "paid", "canceled", "cancellation"]):
        make_invoice(db, account, status=state, total=1000, due=TODAY + timedelta(n))
    stranger = make_account(db, partner, "Someone Else")
    make_invoice(db, stranger, status="created", total=1000, due=TODAY)

    result = portal_pages.invoice_list(db, user, status=status)

    assert {inv.status for inv in result.page.rows} == expected
    assert result.page.total == len(expected)
    assert result.status == (status if status != "bogus" else "all")
    assert result.counts == {"all": 5, "open": 2, "overdue": 1, "paid": 1, "canceled": 2}


def test_is_the_invoice_list_newest_first_and_paged(
    db: Session, home: tuple[Partner, CustomerAccount, User]
) -> None:
    _, account, user = home
    made = [
        make_invoice(db, account, status="paid", total=100, due=TODAY, issue=TODAY - timedelta(n))
        for n in range(5)
    ]

    first = portal_pages.invoice_list(db, user, page=1, per_page=2)
    last = portal_pages.invoice_list(db, user, page=9, per_page=2)

    assert [i.id for i in first.page.rows] == [made[0].id, made[1].id]
    assert (first.page.pages, last.page.page, [i.id for i in last.page.rows]) == (
        3, 3, [made[4].id],
    )  # fmt: skip


# -- the payment history ---------------------------------------------------------------------


def test_does_the_range_count_partner_local_days_with_both_ends_included(db: Session) -> None:
    partner, _ = make_partner(db, "west", timezone="America/Los_Angeles")
    account = make_account(db, partner, "Lee West")
    user = customer(db, account)
    # 06:30 UTC on Mar 2 is 22:30 on Mar 1 in Los Angeles.
    late_evening = make_payment(db, account, kind="charge", amount=100, status="declined",
                                settled_at=datetime(2026, 3, 2, 6, 30, tzinfo=UTC))  # fmt: skip
    first_day = make_payment(db, account, kind="check", amount=200, method="manual",
                             received_on=date(2026, 3, 1), settled_at=NOW)  # fmt: skip
    last_day = make_payment(db, account, kind="charge", amount=300, received_on=date(2026, 3, 5),
                            settled_at=datetime(2026, 3, 6, 1, 0, tzinfo=UTC))  # fmt: skip
    make_payment(db, account, kind="charge", amount=400, received_on=date(2026, 3, 6),
                 settled_at=datetime(2026, 3, 6, 20, 0, tzinfo=UTC))  # fmt: skip
    make_payment(db, account, kind="refund", amount=50, received_on=date(2026, 3, 3),
                 settled_at=datetime(2026, 3, 3, 20, 0, tzinfo=UTC))  # fmt: skip

    def ids(start: str, end: str) -> set[int]:
        days = portal_payments.parse_range({"from": start, "to": end})
        history = portal_payments.payment_history(db, user, days=days)
        return {line.payment.id for line in history.page.rows}

    assert ids("2026-03-01", "2026-03-05") == {late_evening.id, first_day.id, last_day.id}
    assert ids("2026-03-02", "2026-03-05") == {last_day.id}
    assert ids("2026-03-01", "2026-03-01") == {late_evening.id, first_day.id}
    assert ids("", "2026-03-01") == {late_evening.id, first_day.id}
    assert len(ids("2026-03-05", "")) == 2
    everything = portal_payments.payment_history(db, user).page.rows
    assert [line.day for line in everything][-1] == date(2026, 3, 1)  # shown in local days
    assert {line.day for line in everything if line.payment.id == late_evening.id} == {
        date(2026, 3, 1)
    }


@pytest.mark.parametrize(
    ("args", "errors"),
    [
        ({"from": "2026-02-30", "to": ""}, {"from"}),
        ({"from": "yesterday", "to": "03/01/2026"}, {"from", "to"}),
        ({"from": "2026-03-05", "to": "2026-03-01"}, {"to"}),
    ],
)
def test_are_bad_range_dates_reported_on_their_field(
    args: dict[str, str], errors: set[str]
) -> None:
    with pytest.raises(portal_payments.RangeInvalid) as caught:
        portal_payments.parse_range(args)
    assert set(caught.value.errors) == errors


def test_is_the_payment_history_newest_first_and_paged(
    db: Session, home: tuple[Partner, CustomerAccount, User]
) -> None:
    _, account, user = home
    made = [
        make_payment(db, account, kind="charge", amount=100, settled_at=NOW - timedelta(days=n))
        for n in range(5)
    ]

    page = portal_payments.payment_history(db, user, page=2, per_page=2).page

    assert [line.payment.id for line in page.rows] == [made[2].id, made[3].id]
    assert (page.total, page.pages) == (5, 3)


def test_is_a_back_dated_check_listed_on_its_day_not_when_recorded(
    db: Session, home: tuple[Partner, CustomerAccount, User]
) -> None:
    _, account, user = home
    card = make_payment(db, account, kind="charge", amount=100, received_on=TODAY - timedelta(2),
                        settled_at=NOW - timedelta(days=2))  # fmt: skip
    check = make_payment(db, account, kind="check", amount=200, method="manual",
                         received_on=TODAY - timedelta(10), settled_at=NOW)  # fmt: skip
    declined = make_payment(db, account, kind="charge", amount=300, status="declined",
                            settled_at=NOW - timedelta(days=5))  # fmt: skip

    rows = portal_payments.payment_history(db, user).page.rows

    assert [line.payment.id for line in rows] == [card.id, declined.id, check.id]
    assert [line.day for line in rows] == [TODAY - timedelta(2), TODAY - timedelta(5),
                                           TODAY - timedelta(10)]  # fmt: skip


# -- an invoice's page, tenant isolation -----------------------------------------------------


def test_does_the_invoice_page_list_its_scheduled_payments(
    db: Session, home: tuple[Partner, CustomerAccount, User]
) -> None:
    _, account, user = home
    invoice = make_invoice(db, account, status="created", total=9000, due=TODAY + timedelta(20))
    later = scheduled(
        db, invoice.id, account, on=TODAY + timedelta(9), amount=5000, status="scheduled"
    )
    failed = scheduled(
        db, invoice.id, account, on=TODAY + timedelta(1), amount=4000, status="failed"
    )
    scheduled(db, invoice.id, account, on=TODAY + timedelta(3), amount=100, status="canceled")

    view = portal_pages.portal_invoice(db, user, invoice.id)

    assert [row.id for row in view.scheduled] == [failed.id, later.id]
    assert view.detail.payable and view.detail.invoice.id == invoice.id


def test_can_a_customer_reach_another_accounts_invoice_or_payment(
    db: Session, home: tuple[Partner, CustomerAccount, User]
) -> None:
    partner, account, user = home
    neighbour = make_account(db, partner, "Next Door")
    theirs = make_invoice(db, neighbour, status="created", total=1000, due=TODAY)
    their_payment = make_payment(db, neighbour, kind="charge", amount=1000, settled_at=NOW)
    mine = make_invoice(db, account, status="created", total=1000, due=TODAY)
    nonce = "n1"

    for load in (
        lambda: customer_invoice_detail(db, user, theirs.id),
        lambda: portal_pages.portal_invoice(db, user, theirs.id),
        lambda: customer_payment_detail(db, user, their_payment.id),
        lambda: portal_payments.portal_receipt(db, user, their_payment.id),
        lambda: portal_emails.email_invoice(db, user, theirs.id, nonce=nonce, now=NOW, links=LINKS),
        lambda: portal_emails.email_receipt(db, user, their_payment.id, nonce=nonce),
        lambda: customer_invoice_detail(db, user, 999_999),
    ):
        with pytest.raises(NotFound):
            load()
    assert customer_invoice_detail(db, user, mine.id).invoice.id == mine.id
    assert _outbox(db) == []


def test_do_the_partner_and_customer_loaders_refuse_each_other(
    db: Session, home: tuple[Partner, CustomerAccount, User]
) -> None:
    partner, account, user = home
    admin = db.exec(
        select(User).where(User.partner_id == partner.id, User.role != Role.CUSTOMER)
    ).one()
    invoice = make_invoice(db, account, status="created", total=1000, due=TODAY)
    payment = make_payment(db, account, kind="charge", amount=1000, settled_at=NOW)

    for load in (
        lambda: invoice_detail(db, user, invoice.id),
        lambda: payment_detail(db, user, payment.id),
        lambda: customer_invoice_detail(db, admin, invoice.id),
        lambda: customer_payment_detail(db, admin, payment.id),
    ):
        with pytest.raises(NotFound):
            load()
    assert invoice_detail(db, admin, invoice.id).invoice.id == invoice.id
    assert customer_payment_detail(db, user, payment.id).payment.id == payment.id


# -- "Email me" ------------------------------------------------------------------------------

LINKS = Links(secret="test-secret-key-not-for-production", base_url="http://localhost")


def _outbox(db: Session) -> list[OutboxMessage]:
    db.rollback()
    return list(db.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all())


def test_is_the_invoice_emailed_once_per_form_to_the_customers_own_address(
    db: Session, home: tuple[Partner, CustomerAccount, User]
) -> None:
    _, account, user = home
    invoice = make_invoice(db, account, status="overdue", total=4000, due=TODAY - timedelta(3))
    db.add(
        InvoiceLine(invoice_id=invoice.id, description="Hall rental", unit_amount=4000, amount=4000)
    )  # type: ignore[arg-type]
    db.commit()

    first = portal_emails.email_invoice(db, user, invoice.id, nonce="a", now=NOW, links=LINKS)
    again = portal_emails.email_invoice(db, user, invoice.id, nonce="a", now=NOW, links=LINKS)

    rows = _outbox(db)
    assert len(rows) == 1 and first.email_ids == again.email_ids == [rows[0].id]
    assert (rows[0].kind, rows[0].to_address) == ("invoice_issued", user.email)
    assert user.email != account.email  # the signed-in address, not the billing one
    assert invoice.number in rows[0].subject and "Hall rental" in rows[0].text_body
    assert "http://localhost/pay/" in rows[0].text_body  # something is due: a pay link
    assert (first.what, first.to_address) == (invoice.number, user.email)

    portal_emails.email_invoice(db, user, invoice.id, nonce="b", now=NOW, links=LINKS)
    assert len(_outbox(db)) == 2


def test_has_an_emailed_paid_invoice_no_pay_link(
    db: Session, home: tuple[Partner, CustomerAccount, User]
) -> None:
    _, account, user = home
    invoice = make_invoice(db, account, status="paid", total=4000, paid=4000, due=TODAY)

    portal_emails.email_invoice(db, user, invoice.id, nonce="a", now=NOW, links=LINKS)

    (row,) = _outbox(db)
    assert "/pay/" not in row.text_body and "paid" in row.text_body


def test_is_a_receipt_emailed_once_per_form_and_never_for_a_declined_payment(
    db: Session, home: tuple[Partner, CustomerAccount, User]
) -> None:
    _, account, user = home
    approved = make_payment(db, account, kind="charge", amount=2500, settled_at=NOW,
                            received_on=TODAY)  # fmt: skip
    declined = make_payment(db, account, kind="charge", amount=2500, status="declined",
                            settled_at=NOW)  # fmt: skip
    refund = make_payment(db, account, kind=PaymentKind.REFUND, amount=100, settled_at=NOW)

    sent = portal_emails.email_receipt(db, user, approved.id, nonce="x")
    portal_emails.email_receipt(db, user, approved.id, nonce="x")
    for payment_id in (declined.id, refund.id):
        with pytest.raises(Conflict):
            portal_emails.email_receipt(db, user, payment_id, nonce=f"y{next(_tokens)}")
        with pytest.raises(Conflict):
            portal_payments.portal_receipt(db, user, payment_id)

    rows = _outbox(db)
    assert len(rows) == 1 and sent.email_ids == [rows[0].id]
    assert (rows[0].kind, rows[0].to_address) == ("receipt", user.email)
    assert f"PAY-{approved.id:06d}" in rows[0].text_body and "$25.00" in rows[0].text_body
    assert approved.status == PaymentStatus.APPROVED
    count = db.exec(select(func.count()).select_from(OutboxMessage)).one()
    assert count == 1
