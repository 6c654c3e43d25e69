"""Service stopped for overdue invoices, and restored when they are paid."""

from __future__ import annotations

from datetime import date, timedelta

from sqlmodel import Session, select

from app.models import CustomerAccount, Invoice, OutboxMessage, Subscription
from app.services.invoices import LineInput, add_invoice, apply_paid_amount
from app.services.service_stop import restore_if_settled, stop_service
from tests.services.billing_helpers import (
    add_subscription,
    make_customer,
    make_partner,
    sandbox,
)

DUE = date(2031, 1, 10)
STOP_DAY = DUE + timedelta(days=35)


def _overdue_customer(app, session: Session):  # noqa: ANN001, ANN202
    gateway = sandbox(app)
    partner = make_partner(session)
    account, method = make_customer(session, gateway, partner, "Late Larry")
    monthly = add_subscription(
        session, account, method, frequency="monthly", start_date=date(2030, 12, 10)
    )
    paused = add_subscription(
        session, account, method, frequency="monthly", start_date=date(2030, 12, 20)
    )
    paused.status = "stopped"
    session.add(paused)
    invoice = add_invoice(
        session,
        partner=partner,
        account=account,
        lines=[LineInput("Support plan", 1, 12000)],
        issue_date=DUE - timedelta(days=30),
        due_date=DUE,
    )
    invoice.status = "overdue"
    session.commit()
    return account, invoice, monthly, paused


def _emails(session: Session, kind: str) -> list[OutboxMessage]:
    return list(session.exec(select(OutboxMessage).where(OutboxMessage.kind == kind)).all())


def test_does_stopping_suspend_the_recurring_subscriptions_and_tell_both(app, db_session) -> None:
    with app.app_context():
        account, invoice, monthly, paused = _overdue_customer(app, db_session)
        ids = stop_service(db_session, account.id, invoice=invoice, days=35, as_of=STOP_DAY)
        db_session.commit()
        again = stop_service(db_session, account.id, invoice=invoice, days=35, as_of=STOP_DAY)
    assert again == []  # stopped once
    for row in (account, monthly, paused):
        db_session.refresh(row)
    assert (account.status, account.service_stopped_on) == ("suspended", STOP_DAY)
    assert monthly.status == "suspended"
    assert paused.status == "stopped"  # a paused schedule stays as the partner left it
    stopped = _emails(db_session, "service_stopped")
    assert sorted(m.id for m in stopped) == sorted(ids)
    assert {m.to_address for m in stopped} == {account.email, "admin@harbor.example"}
    customer = next(m for m in stopped if m.to_address == account.email)
    assert invoice.number in customer.text_body and "$120.00" in customer.text_body


def test_does_paying_every_overdue_invoice_restore_service_from_that_day(app, db_session) -> None:
    with app.app_context():
        account, invoice, monthly, _paused = _overdue_customer(app, db_session)
        stop_service(db_session, account.id, invoice=invoice, days=35, as_of=STOP_DAY)
        db_session.commit()
        paid_on = STOP_DAY + timedelta(days=20)  # Mar 6: the Feb 10 and Mar 10 periods...
        apply_paid_amount(invoice, 5000)
        assert restore_if_settled(db_session, account.id, as_of=paid_on) == []  # partly paid
        apply_paid_amount(invoice, 7000)
        ids = restore_if_settled(db_session, account.id, as_of=paid_on)
        db_session.commit()
    db_session.refresh(account)
    db_session.refresh(monthly)
    assert (account.status, account.service_stopped_on) == ("active", None)
    assert monthly.status == "recurring"
    # Periods that fell while service was stopped are not charged afterwards.
    assert monthly.next_charge_date == date(2031, 3, 10)
    restored = _emails(db_session, "service_restored")
    assert sorted(m.id for m in restored) == sorted(ids) and len(ids) == 2


def test_does_a_second_overdue_invoice_keep_service_stopped(app, db_session) -> None:
    with app.app_context():
        account, invoice, _monthly, _paused = _overdue_customer(app, db_session)
        partner_id = account.partner_id
        other = add_invoice(
            db_session,
            partner=_partner(db_session, partner_id),
            account=account,
            lines=[LineInput("Hardware", 1, 3000)],
            issue_date=DUE,
            due_date=DUE + timedelta(days=5),
        )
        stop_service(db_session, account.id, invoice=invoice, days=35, as_of=STOP_DAY)
        apply_paid_amount(invoice, invoice.total)
        assert restore_if_settled(db_session, account.id, as_of=STOP_DAY + timedelta(days=1)) == []
        apply_paid_amount(other, other.total)
        assert restore_if_settled(db_session, account.id, as_of=STOP_DAY + timedelta(days=1))
        db_session.commit()
    account = db_session.get(CustomerAccount, account.id)
    assert account is not None and account.status == "active"


def _partner(session: Session, partner_id: int):  # noqa: ANN202
    from app.models import Partner

    return session.get(Partner, partner_id)


def test_is_an_account_never_stopped_left_alone_by_payments(app, db_session) -> None:
    with app.app_context():
        account, invoice, monthly, _paused = _overdue_customer(app, db_session)
        apply_paid_amount(invoice, invoice.total)
        assert restore_if_settled(db_session, account.id, as_of=STOP_DAY) == []
    assert (
        db_session.exec(select(Subscription).where(Subscription.id == monthly.id)).one().status
        == "recurring"
    )
    assert (
        db_session.exec(select(Invoice).where(Invoice.id == invoice.id)).one().next_dunning_on
        is None
    )
