"""Declines: a recurring charge declined by the card network, and the way back."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from app.clock import utcnow
from app.models import Invoice, OutboxMessage, Payment, Subscription
from tests.services.billing_helpers import (
    DECLINES_WHEN_CHARGED,
    add_subscription,
    assert_ledger_matches_processor,
    make_customer,
    make_partner,
    run_billing,
    sandbox,
    save_card,
)


def _declined_subscription(app, db_session):  # noqa: ANN001, ANN202
    """A subscription due today on 4000 0000 0000 0341 (saves fine, declines when charged)."""
    today = utcnow().date()
    gateway = sandbox(app)
    partner = make_partner(db_session)
    account, card = make_customer(
        db_session, gateway, partner, "Dana Declined", number=DECLINES_WHEN_CHARGED
    )
    assert card.last4 == "0341"
    sub = add_subscription(
        db_session, account, card, frequency="monthly", start_date=today, manual_amount=4200,
        description="Mooring fee",
    )  # fmt: skip
    run = run_billing(db_session, gateway, partner.id, today)  # type: ignore[arg-type]
    return today, gateway, partner, account, sub, run


def test_does_a_declined_recurring_charge_put_the_subscription_in_error_and_tell_both(
    app, db_session
) -> None:
    with app.app_context():
        today, gateway, partner, account, sub, run = _declined_subscription(app, db_session)

    assert (run.charged, run.declined) == (0, 1)
    db_session.refresh(sub)
    assert sub.status == "error"
    assert sub.last_error == "Your card was declined."
    assert (sub.recurring_count, sub.amount_charged, sub.next_charge_date) == (0, 0, today)
    attempt = db_session.exec(select(Payment).where(Payment.subscription_id == sub.id)).one()
    assert (attempt.status, attempt.decline_code) == ("declined", "card_declined")
    assert attempt.decline_reason == "Your card was declined."
    assert db_session.exec(select(Invoice).where(Invoice.status == "paid")).all() == []

    emails = db_session.exec(
        select(OutboxMessage).where(OutboxMessage.kind == "payment_failed")
    ).all()
    by_address = {m.to_address: m for m in emails}
    assert sorted(by_address) == sorted([account.email, "admin@harbor.example"])
    to_customer = by_address[account.email]
    assert "http://localhost/portal/" in to_customer.text_body
    assert "/portal/" in to_customer.html_body
    assert "Your card was declined." in to_customer.text_body
    assert "4000000000000341" not in to_customer.text_body + to_customer.html_body
    to_partner = by_address["admin@harbor.example"]
    assert account.name in to_partner.subject + to_partner.text_body
    assert "Your card was declined." in to_partner.text_body
    assert_ledger_matches_processor(db_session, gateway)


def test_is_a_subscription_in_error_left_alone_by_later_runs(app, db_session) -> None:
    with app.app_context():
        today, gateway, partner, account, sub, run = _declined_subscription(app, db_session)
        again = run_billing(db_session, gateway, partner.id, today)  # the same day, resumed
        assert (again.id, again.charged, again.declined) == (run.id, 0, 1)
        for days in (1, 2, 31):
            later = run_billing(db_session, gateway, partner.id, today + timedelta(days=days))
            assert (later.due, later.charged, later.declined) == (0, 0, 0)

    assert len(db_session.exec(select(Payment)).all()) == 1
    assert [c.status for c in gateway.list_charges()] == ["failed"]
    emails = db_session.exec(select(OutboxMessage)).all()
    assert len(emails) == 2  # nobody is told twice
    assert db_session.get(Subscription, sub.id, populate_existing=True).status == "error"


def test_does_a_new_card_and_recurring_again_charge_the_owed_period_on_the_next_run(
    app, db_session
) -> None:
    with app.app_context():
        today, gateway, partner, account, sub, run = _declined_subscription(app, db_session)
        tomorrow = today + timedelta(days=1)
        run_billing(db_session, gateway, partner.id, tomorrow)  # still in error: nothing

        new_card = save_card(db_session, gateway, account)  # 4242 4242 4242 4242
        fresh = db_session.get(Subscription, sub.id, populate_existing=True)
        fresh.payment_method_id = new_card.id
        fresh.status = "recurring"
        db_session.add(fresh)
        db_session.commit()

        retry = run_billing(db_session, gateway, partner.id, tomorrow + timedelta(days=1))

    assert (retry.charged, retry.declined) == (1, 0)
    db_session.refresh(fresh)
    assert fresh.status == "recurring"
    assert fresh.last_error == ""
    assert (fresh.recurring_count, fresh.amount_charged) == (1, 4200)
    assert fresh.next_charge_date is not None and fresh.next_charge_date > tomorrow
    attempts = db_session.exec(
        select(Payment).where(Payment.subscription_id == sub.id).order_by(Payment.id)
    ).all()
    # The declined period is still owed: it is the one charged, on the new card.
    assert [(a.period_date, a.status, a.last4) for a in attempts] == [
        (today, "declined", "0341"),
        (today, "approved", "4242"),
    ]
    invoice = db_session.exec(select(Invoice).where(Invoice.subscription_id == sub.id)).one()
    assert (invoice.status, invoice.total, invoice.issue_date) == ("paid", 4200, today)
    assert [c.status for c in gateway.list_charges()] == ["failed", "succeeded"]
    assert_ledger_matches_processor(db_session, gateway)


def test_does_a_processor_error_leave_the_period_due_without_a_decline(app, db_session) -> None:
    """An HTTP 500 from the processor is not the customer's decline: no error status, no
    emails, and the next run charges the period (under a new key)."""
    today = utcnow().date()
    gateway = sandbox(app)
    with app.app_context():
        partner = make_partner(db_session)
        account, card = make_customer(db_session, gateway, partner, "Eli Error")
        sub = add_subscription(
            db_session,
            account,
            card,
            frequency="monthly",
            start_date=today,
            manual_amount=3100,
            description="Locker rent",
        )
        gateway.inject("server_error", times=1)
        first = run_billing(db_session, gateway, partner.id, today)  # type: ignore[arg-type]
        db_session.refresh(sub)
        assert first.charged == 0
        assert sub.status == "recurring" and sub.next_charge_date == today
        assert (
            db_session.exec(
                select(OutboxMessage).where(OutboxMessage.kind == "payment_failed")
            ).all()
            == []
        )

        run_billing(db_session, gateway, partner.id, today)  # type: ignore[arg-type]

    db_session.refresh(sub)
    assert sub.recurring_count == 1 and sub.status == "recurring"
    attempts = db_session.exec(select(Payment).where(Payment.subscription_id == sub.id)).all()
    assert sorted(a.status for a in attempts) == ["approved", "error"]
    assert_ledger_matches_processor(db_session, gateway)
