"""Authorize only: capture all or part, void, the expiry job, and a hold released once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.domain.errors import DomainError, Forbidden, InvalidInput
from app.domain.orders import IllegalTransition
from app.models import Invoice, Order, Partner
from app.services.order_holds import void_expired_authorizations
from app.services.order_payments import CardChoice, capture_order, void_order
from tests.services.account_helpers import US_ADMIN, US_SALES
from tests.services.order_helpers import (
    NOW,
    TODAY,
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

PLAN = ("Support plan", 1, 6000, "monthly", TODAY)


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with demo.app_context(), Session(engine, expire_on_commit=False) as session:
        yield session


def _authorized(demo: Flask, db: Session) -> Order:
    admin = find_user(db, US_ADMIN)
    order = make_order(db, new_customer(db, admin.partner_id), [PLAN], by=admin)  # type: ignore[arg-type]
    held = submit(
        demo, db, admin, order, choice="authorize", card=CardChoice(new_method=new_card(demo))
    )
    assert held.approved and held.order_status == "authorized"
    assert "authorized" in held.message
    return reload(db, order)


def _gateway(demo: Flask):  # noqa: ANN202
    return demo.extensions["portico"].gateway


def test_does_a_full_capture_activate_the_order(demo: Flask, db: Session) -> None:
    order = _authorized(demo, db)
    assert order.invoice_id is None  # nothing is invoiced while only held

    captured = capture_order(
        db, _gateway(demo), find_user(db, US_ADMIN), order.id, amount=6000, now=NOW, as_of=TODAY
    )  # type: ignore[arg-type]

    assert captured.approved and captured.order_status == "activated"
    order = reload(db, order)
    invoice = db.get(Invoice, order.invoice_id)
    assert invoice is not None and (invoice.status, invoice.amount_paid) == ("paid", 6000)
    assert [p.kind for p in order_payments(db, order)] == ["authorization", "capture"]
    assert "order.captured" in history(db, order) and "order.activated" in history(db, order)


def test_does_a_partial_capture_leave_the_rest_due_on_the_invoice(demo: Flask, db: Session) -> None:
    order = _authorized(demo, db)
    captured = capture_order(
        db, _gateway(demo), find_user(db, US_ADMIN), order.id, amount=3500, now=NOW, as_of=TODAY
    )  # type: ignore[arg-type]
    assert captured.approved
    invoice = db.get(Invoice, reload(db, order).invoice_id)
    assert invoice is not None
    assert (invoice.total, invoice.amount_paid, invoice.status) == (6000, 3500, "created")
    (record,) = [c for c in processor_calls(demo, order) if c.kind == "authorization"]
    assert record.captured_amount == 3500


def test_is_a_capture_above_the_hold_refused_before_the_processor(demo: Flask, db: Session) -> None:
    order = _authorized(demo, db)
    with pytest.raises(InvalidInput, match=r"at most the \$60.00") as refused:
        capture_order(
            db, _gateway(demo), find_user(db, US_ADMIN), order.id, amount=6001, now=NOW, as_of=TODAY
        )  # type: ignore[arg-type]
    assert refused.value.field == "amount"
    assert reload(db, order).status == "authorized"


def test_does_a_void_release_the_hold_and_forbid_a_later_capture(demo: Flask, db: Session) -> None:
    order = _authorized(demo, db)
    admin = find_user(db, US_ADMIN)

    voided = void_order(db, _gateway(demo), admin, order.id, now=NOW)  # type: ignore[arg-type]

    assert voided.approved and voided.order_status == "voided"
    assert reload(db, order).invoice_id is None
    (hold,) = [c for c in processor_calls(demo, order) if c.kind == "authorization"]
    assert hold.status == "canceled"  # the processor's word for a released hold
    with pytest.raises(IllegalTransition, match="voided cannot be activated"):
        capture_order(db, _gateway(demo), admin, order.id, amount=100, now=NOW, as_of=TODAY)  # type: ignore[arg-type]
    assert "order.voided" in history(db, order)


def test_is_a_hold_not_captured_in_time_voided_by_the_job_once(demo: Flask, db: Session) -> None:
    order = _authorized(demo, db)
    partner = db.get(Partner, order.partner_id)
    assert partner is not None and partner.authorization_days == 7
    gateway = _gateway(demo)

    early = void_expired_authorizations(
        db, gateway, partner_id=partner.id, as_of=TODAY + timedelta(days=6), now=NOW
    )  # type: ignore[arg-type]
    assert early == 0 and reload(db, order).status == "authorized"

    due = TODAY + timedelta(days=7)
    assert void_expired_authorizations(db, gateway, partner_id=partner.id, as_of=due, now=NOW) == 1  # type: ignore[arg-type]
    assert void_expired_authorizations(db, gateway, partner_id=partner.id, as_of=due, now=NOW) == 0  # type: ignore[arg-type]

    order = reload(db, order)
    assert order.status == "voided"
    voids = [p for p in order_payments(db, order) if p.kind == "void"]
    assert len(voids) == 1 and voids[0].detail["reason"] == "Not captured within 7 days."
    assert history(db, order)[-1] == "order.voided"


def test_do_a_capture_and_a_void_at_once_settle_the_hold_one_way(
    demo: Flask, engine: Engine, db: Session
) -> None:
    order = _authorized(demo, db)
    admin = find_user(db, US_ADMIN)
    gateway = _gateway(demo)
    barrier = threading.Barrier(2)
    results: list = []
    refusals: list[BaseException] = []

    def act(kind: str) -> None:
        try:
            with demo.app_context(), Session(engine, expire_on_commit=False) as session:
                barrier.wait(timeout=30)
                if kind == "capture":
                    results.append(
                        capture_order(
                            session, gateway, admin, order.id, amount=6000, now=NOW, as_of=TODAY
                        )  # type: ignore[arg-type]
                    )
                else:
                    results.append(void_order(session, gateway, admin, order.id, now=NOW))  # type: ignore[arg-type]
        except DomainError as exc:
            refusals.append(exc)

    threads = [threading.Thread(target=act, args=(kind,)) for kind in ("capture", "void")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) + len(refusals) == 2
    approved = [r for r in results if r.approved]
    assert len(approved) == 1
    order = reload(db, order)
    assert order.status in ("activated", "voided")
    follow_ups = [p for p in order_payments(db, order) if p.kind in ("capture", "void")]
    assert [p.status for p in follow_ups].count("approved") == 1


def test_may_a_sales_user_capture_only_when_allowed(demo: Flask, db: Session) -> None:
    order = _authorized(demo, db)
    partner = db.get(Partner, order.partner_id)
    partner.sales_collect_payment = False  # type: ignore[union-attr]
    db.add(partner)
    db.commit()
    sales = find_user(db, US_SALES)
    with pytest.raises(Forbidden, match="Settings → Orders"):
        capture_order(db, _gateway(demo), sales, order.id, amount=6000, now=NOW, as_of=TODAY)  # type: ignore[arg-type]
    with pytest.raises(Forbidden):
        void_order(db, _gateway(demo), sales, order.id, now=NOW)  # type: ignore[arg-type]
    assert reload(db, order).status == "authorized"


def test_is_capturing_a_draft_an_illegal_transition_with_a_message(
    demo: Flask, db: Session
) -> None:
    admin = find_user(db, US_ADMIN)
    order = make_order(db, new_customer(db, admin.partner_id), [PLAN], by=admin)  # type: ignore[arg-type]
    with pytest.raises(IllegalTransition, match="An order that is draft cannot be activated"):
        capture_order(db, _gateway(demo), admin, order.id, amount=100, now=NOW, as_of=TODAY)  # type: ignore[arg-type]


def test_does_the_ledger_check_agree_after_holds_captures_and_voids(
    demo: Flask, db: Session
) -> None:
    from app.services.reconcile import verify

    captured, voided = _authorized(demo, db), _authorized(demo, db)
    admin = find_user(db, US_ADMIN)
    capture_order(db, _gateway(demo), admin, captured.id, amount=2500, now=NOW, as_of=TODAY)  # type: ignore[arg-type]
    void_order(db, _gateway(demo), admin, voided.id, now=NOW)  # type: ignore[arg-type]

    assert verify(db, _gateway(demo)) == []
