"""Collecting an order's first payment: approved, declined → draft → resubmitted, scheduled
activation, double submission, a lost answer, tenancy and who may collect."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from app.domain.errors import Forbidden, NotFound
from app.domain.orders import DECLINED_TAG, IllegalTransition
from app.models import Invoice, OutboxMessage, Partner, Payment, Subscription
from app.services.order_activation import activate_due_orders
from app.services.order_payments import CardChoice, convert_to_draft
from app.services.reconcile import settle
from tests.services.account_helpers import DE_ADMIN, JORDAN, US_ADMIN, US_SALES, account
from tests.services.order_helpers import (
    DECLINES,
    NOW,
    TODAY,
    cards_of,
    find_user,
    history,
    make_order,
    new_card,
    new_customer,
    order_payments,
    processor_calls,
    reload,
    submit,
)

MONTHLY = ("Support plan", 1, 2500, "monthly", TODAY)
SETUP = ("Setup", 2, 1000, "once", TODAY)


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with demo.app_context(), Session(engine, expire_on_commit=False) as session:
        yield session


def test_does_an_approved_charge_activate_the_order_with_everything_it_implies(
    demo: Flask, db: Session
) -> None:
    admin = find_user(db, US_ADMIN)
    nora = new_customer(db, admin.partner_id)  # type: ignore[arg-type]
    order = make_order(db, nora, [MONTHLY, SETUP], by=admin)
    assert order.total == 4500  # the US demo partner charges no tax

    outcome = submit(demo, db, admin, order, card=CardChoice(new_method=new_card(demo)))

    assert outcome.approved and outcome.order_status == "activated"
    order = reload(db, order)
    assert order.status == "activated" and order.activated_on == TODAY
    invoice = db.get(Invoice, order.invoice_id)
    assert invoice is not None and invoice.status == "paid"
    assert invoice.total == invoice.amount_paid == 4500
    (payment,) = order_payments(db, order)
    assert (payment.status, payment.amount, payment.invoice_id) == ("approved", 4500, invoice.id)
    subs = db.exec(select(Subscription).where(Subscription.customer_account_id == nora.id)).all()
    assert [(s.description, s.manual_amount, s.recurring_count) for s in subs] == [
        ("Support plan", 2500, 1)
    ]
    assert subs[0].next_charge_date == TODAY.replace(month=12)  # the order paid November
    (card,) = cards_of(db, nora)
    assert card.is_default and card.last4 == "4242" and payment.payment_method_id == card.id
    assert history(db, order) == ["order.submitted", "order.paid", "order.activated"]
    receipt = db.exec(select(OutboxMessage).where(OutboxMessage.kind == "receipt")).all()
    assert any(row.to_address == nora.email for row in receipt)


def test_is_a_card_on_file_charged_and_the_existing_default_kept(demo: Flask, db: Session) -> None:
    admin = find_user(db, US_ADMIN)
    jordan = account(db, JORDAN)
    default = next(card for card in cards_of(db, jordan) if card.is_default)
    order = make_order(db, jordan, [SETUP], by=admin)

    outcome = submit(demo, db, admin, order, card=CardChoice(saved_method_id=default.id))

    assert outcome.approved
    assert [c.id for c in cards_of(db, jordan) if c.is_default] == [default.id]
    assert not db.exec(
        select(Subscription).where(Subscription.description == "Setup")
    ).all()  # one-time lines are invoiced, not scheduled


def test_declined_then_draft_then_resubmitted_ends_activated(demo: Flask, db: Session) -> None:
    admin = find_user(db, US_ADMIN)
    nora = new_customer(db, admin.partner_id)  # type: ignore[arg-type]
    order = make_order(db, nora, [MONTHLY], by=admin)

    declined = submit(demo, db, admin, order, card=CardChoice(new_method=new_card(demo, DECLINES)))

    assert declined.status == "declined" and declined.order_status == "declined"
    assert "declined" in declined.message.lower()
    order = reload(db, order)
    assert order.tags == [DECLINED_TAG] and order.decline_reason == declined.message
    assert cards_of(db, nora) == []  # a declined card is not kept
    with pytest.raises(IllegalTransition, match="Convert it to draft first"):
        submit(demo, db, admin, order, card=CardChoice(new_method=new_card(demo)))

    convert_to_draft(db, admin, order.id, now=NOW)  # type: ignore[arg-type]
    approved = submit(demo, db, admin, order, card=CardChoice(new_method=new_card(demo)))

    assert approved.approved and approved.order_status == "activated"
    order = reload(db, order)
    assert order.tags == [] and order.submit_count == 2
    assert [p.status for p in order_payments(db, order)] == ["declined", "approved"]
    assert history(db, order) == [
        "order.submitted",
        "order.payment_declined",
        "order.converted_to_draft",
        "order.submitted",
        "order.paid",
        "order.activated",
    ]


def test_is_an_order_activating_later_scheduled_and_activated_on_its_day(
    demo: Flask, db: Session
) -> None:
    admin = find_user(db, US_ADMIN)
    nora = new_customer(db, admin.partner_id)  # type: ignore[arg-type]
    later = TODAY + timedelta(days=10)
    order = make_order(db, nora, [("Support plan", 1, 2500, "monthly", later)], by=admin)

    outcome = submit(demo, db, admin, order, card=CardChoice(new_method=new_card(demo)))

    assert (
        outcome.order_status == "scheduled" and "activates on December 1, 2026" in outcome.message
    )
    order = reload(db, order)
    assert db.get(Invoice, order.invoice_id).status == "paid"  # type: ignore[union-attr]
    partner_id = order.partner_id
    assert (
        activate_due_orders(db, partner_id=partner_id, as_of=later - timedelta(days=1), now=NOW)
        == 0
    )
    assert reload(db, order).status == "scheduled"

    assert activate_due_orders(db, partner_id=partner_id, as_of=later, now=NOW) == 1
    assert activate_due_orders(db, partner_id=partner_id, as_of=later, now=NOW) == 0

    order = reload(db, order)
    assert order.status == "activated" and order.activated_on == later
    (sub,) = db.exec(select(Subscription).where(Subscription.customer_account_id == nora.id))
    assert sub.start_date == later and sub.next_charge_date == later.replace(year=2027, month=1)


def test_does_a_double_submission_charge_once(demo: Flask, db: Session) -> None:
    admin = find_user(db, US_ADMIN)
    nora = new_customer(db, admin.partner_id)  # type: ignore[arg-type]
    order = make_order(db, nora, [MONTHLY], by=admin)
    card = CardChoice(new_method=new_card(demo))

    first = submit(demo, db, admin, order, card=card, sequence=1)
    again = submit(demo, db, admin, order, card=card, sequence=1)

    assert (again.payment_id, again.status) == (first.payment_id, "approved")
    assert len(processor_calls(demo, order)) == 1
    assert len(order_payments(db, order)) == 1
    assert history(db, order).count("order.activated") == 1


def test_do_two_tabs_submitting_at_once_charge_and_activate_once(
    demo: Flask, engine: Engine, db: Session
) -> None:
    admin = find_user(db, US_ADMIN)
    nora = new_customer(db, admin.partner_id)  # type: ignore[arg-type]
    order = make_order(db, nora, [MONTHLY], by=admin)
    cards = [new_card(demo), new_card(demo)]
    barrier = threading.Barrier(2)
    results: list = []
    errors: list[BaseException] = []

    def tab(card) -> None:  # noqa: ANN001
        try:
            with demo.app_context(), Session(engine, expire_on_commit=False) as session:
                barrier.wait(timeout=30)
                results.append(
                    submit(
                        demo, session, admin, order, card=CardChoice(new_method=card), sequence=1
                    )
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=tab, args=(card,)) for card in cards]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == [] and len(results) == 2
    assert results[0].payment_id == results[1].payment_id
    assert len(processor_calls(demo, order)) == 1
    assert reload(db, order).status == "activated"
    assert history(db, order).count("order.activated") == 1


def test_is_a_stale_page_with_a_new_number_refused_once_the_order_is_paid(
    demo: Flask, db: Session
) -> None:
    admin = find_user(db, US_ADMIN)
    order = make_order(db, new_customer(db, admin.partner_id), [MONTHLY], by=admin)  # type: ignore[arg-type]
    submit(demo, db, admin, order, card=CardChoice(new_method=new_card(demo)))
    with pytest.raises(IllegalTransition, match="already active"):
        submit(demo, db, admin, order, card=CardChoice(new_method=new_card(demo)), sequence=2)
    assert len(processor_calls(demo, order)) == 1


def test_is_a_lost_answer_settled_by_the_reconciler_and_applied_once(
    demo: Flask, db: Session
) -> None:
    admin = find_user(db, US_ADMIN)
    order = make_order(db, new_customer(db, admin.partner_id), [MONTHLY], by=admin)  # type: ignore[arg-type]
    gateway = demo.extensions["portico"].gateway
    gateway.inject("timeout_after_charge")

    lost = submit(demo, db, admin, order, card=CardChoice(new_method=new_card(demo)))

    assert lost.status == "unknown" and reload(db, order).status == "processing"
    attempt = db.get(Payment, lost.payment_id)
    status, emails = settle(db, gateway, attempt, now=NOW + timedelta(minutes=5))  # type: ignore[arg-type]
    assert status == "approved" and emails
    again, _ = settle(db, gateway, db.get(Payment, lost.payment_id), now=NOW)  # type: ignore[arg-type]
    assert again == "approved"  # as recorded; nothing applied twice
    order = reload(db, order)
    assert order.status == "activated" and history(db, order).count("order.activated") == 1
    assert len(processor_calls(demo, order)) == 1


def test_may_only_a_partner_user_of_the_order_collect_and_sales_only_when_allowed(
    demo: Flask, db: Session
) -> None:
    admin, sales = find_user(db, US_ADMIN), find_user(db, US_SALES)
    partner = db.get(Partner, admin.partner_id)
    assert partner is not None
    partner.sales_collect_payment = False
    db.add(partner)
    db.commit()
    order = make_order(db, new_customer(db, admin.partner_id), [MONTHLY], by=sales)  # type: ignore[arg-type]
    card = CardChoice(new_method=new_card(demo))

    with pytest.raises(NotFound):
        submit(demo, db, find_user(db, DE_ADMIN), order, card=card)
    with pytest.raises(Forbidden, match="not allowed salespeople to collect payments"):
        submit(demo, db, sales, order, card=card)
    assert processor_calls(demo, order) == [] and reload(db, order).status == "draft"

    partner = db.get(Partner, admin.partner_id, populate_existing=True)
    partner.sales_collect_payment = True  # type: ignore[union-attr]
    db.add(partner)
    db.commit()
    assert submit(demo, db, sales, order, card=card).approved


def test_is_a_card_of_another_customer_refused(demo: Flask, db: Session) -> None:
    admin = find_user(db, US_ADMIN)
    jordan_card = cards_of(db, account(db, JORDAN))[0]
    order = make_order(db, new_customer(db, admin.partner_id), [MONTHLY], by=admin)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="Choose one of this customer's cards") as refused:
        submit(demo, db, admin, order, card=CardChoice(saved_method_id=jordan_card.id))
    assert getattr(refused.value, "field", "") == "card"
    assert processor_calls(demo, order) == []


def test_does_the_account_history_word_order_events_with_formatted_amounts(
    demo: Flask, db: Session
) -> None:
    from app.services.history import account_history

    admin = find_user(db, US_ADMIN)
    nora = new_customer(db, admin.partner_id)  # type: ignore[arg-type]
    order = make_order(db, nora, [MONTHLY], by=admin)
    submit(demo, db, admin, order, card=CardChoice(new_method=new_card(demo)))

    entries, _total = account_history(db, nora, timezone="America/New_York")

    paid = next(entry for entry in entries if entry.action == "order.paid")
    assert paid.text == "Payment approved" and "Amount: $25.00" in paid.details
    assert any(entry.text == "Order activated" for entry in entries)
