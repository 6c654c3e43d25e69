"""The audit trail: every money-moving or permission-changing action, done through its real
service (the sandbox processor at the boundary), leaves exactly one event naming the actor,
the tenant, the action and the target, and no event keeps card data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from app.domain.errors import DomainError
from app.models import (
    AmountMode,
    AuditEvent,
    OutboxMessage,
    PayLink,
    Payment,
    ScheduledPayment,
    User,
)
from app.services import (
    order_settings,
    partner_settings,
    partner_users,
    pay_links,
    portal_settings,
    refunds,
    widget_admin,
    widget_payments,
)
from app.services.audit_log import MASK, add_event
from app.services.card_testing import DeclineLimit
from app.services.invitations import LinkSettings, accept_invitation, invite_token
from app.services.manual_charges import charge_now
from app.services.manual_payments import ManualPaymentForm, record_manual_payment
from app.services.order_payments import CardChoice, capture_order, void_order
from app.services.payment_scheduling import cancel_scheduled_payment
from app.services.scheduled_payments import charge_scheduled_payment
from app.services.sign_in_links import (
    consume_sign_in_link,
    request_password_reset,
    request_sign_in_link,
    reset_password,
)
from tests.services.billing_helpers import (
    DECLINES_WHEN_CHARGED,
    add_subscription,
    at_three,
    make_customer,
    run_billing,
)
from tests.services.invoice_helpers import DAY, NOW, Shop, issue, pay_by_card, token
from tests.services.order_helpers import make_order, new_card, reload, submit
from tests.services.payer_helpers import ADDRESS, card, new_form, sandbox
from tests.services.scheduled_helpers import Customer, make_customer_user, schedule

LINKS = LinkSettings(secret_key="test-secret-key-not-for-production", base_url="http://portal")
PASSWORD = "a long enough password"
TEST_CARDS = ("4242424242424242", "4000000000000341", "4000000000000002")


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    """A session inside an app context (emails render templates); emptied afterwards."""
    with app.app_context(), Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def who(app: Flask, db: Session) -> Customer:
    """A partner (its admin), a customer with a saved Visa who signs in to the portal."""
    return make_customer_user(app, db, "audit")


def _mark(db: Session) -> int:
    db.rollback()
    return int(db.exec(select(func.coalesce(func.max(AuditEvent.id), 0))).one())


def _one(db: Session, since: int, action: str) -> AuditEvent:
    """The one event ``action`` written after ``since`` (fails on none or several)."""
    db.rollback()
    rows = db.exec(
        select(AuditEvent).where(col(AuditEvent.id) > since, AuditEvent.action == action)
    ).all()
    assert len(rows) == 1, (action, [(r.action, r.subject_id) for r in rows])
    return rows[0]


def _check(
    event: AuditEvent,
    *,
    partner_id: int | None,
    subject: tuple[str, int | None],
    actor: User | None = None,
    label: str | None = None,
) -> None:
    """The event's tenant, target and actor: ``actor``'s id (None without one) and
    ``label`` (by default the actor's email)."""
    assert event.partner_id == partner_id
    assert (event.subject_type, event.subject_id) == subject
    expected_label = label if label is not None else (actor.email if actor else "")
    assert (event.actor_user_id, event.actor_label) == (actor.id if actor else None, expected_label)
    assert event.created_at is not None


def _no_card_data(db: Session) -> None:
    db.rollback()
    for event in db.exec(select(AuditEvent)).all():
        text = repr(event.detail)
        assert not any(number in text for number in TEST_CARDS), event
        assert not re.search(r"\d{12,}", text), event


def _email_token(db: Session, message_id: int, path: str) -> str:
    message = db.get_one(OutboxMessage, message_id)
    match = re.search(rf"{LINKS.base_url}{path}(\S+)", message.text_body)
    assert match, message.text_body
    return match.group(1)


def test_does_each_payer_payment_leave_one_event_naming_the_payer(
    app: Flask, db: Session, who: Customer
) -> None:
    shop, gateway = who.shop, sandbox(app)
    partner_id = shop.partner.id
    widget = widget_admin.create_widget(
        db,
        shop.admin,
        widget_admin.WidgetInput(
            title="Dues",
            amount_mode=AmountMode.FIXED,
            fixed_amount="25",
            accept_card=True,
            allow_one_time=True,
        ),
    )

    since = _mark(db)
    loaded, partner = widget_payments.load_widget(db, widget.key)
    payer = widget_payments.validate_payer(
        loaded, widget_payments.PayerInput(name="Pat", email="pat@example.com", amount="25.00")
    )
    paid = widget_payments.pay(
        db,
        gateway,
        widget=loaded,
        partner=partner,
        form=new_form(app, f"widget:{widget.key}"),
        payer=payer,
        method=card(gateway),
        client_address=ADDRESS,
        now=NOW,
        as_of=DAY,
        limit=DeclineLimit(),
    )
    assert paid.approved
    event = _one(db, since, "widget.paid")
    _check(
        event,
        partner_id=partner_id,
        subject=("payment", paid.attempt_id),
        label="payer pat@example.com",
    )

    invoice = issue(app, db, shop)
    since = _mark(db)
    payment = pay_by_card(app, db, shop, invoice, 4000)  # the portal's pay-now
    event = _one(db, since, "invoice.paid_by_payer")
    _check(
        event,
        partner_id=partner_id,
        subject=("payment", payment.id),
        label=f"payer {shop.account.email}",
    )
    assert event.detail["via"] == "portal" and event.detail["invoice"] == invoice.number

    link = db.exec(select(PayLink).where(PayLink.invoice_id == invoice.id)).one()
    view = pay_links.open_link(
        db, LINKS.secret_key, pay_links.token_for(LINKS.secret_key, link), now=NOW
    )
    form = token(app, f"paylink:{link.id}")
    since = _mark(db)
    outcome = pay_links.pay_invoice(
        db,
        gateway,
        view=view,
        form=form,
        amount=1000,
        method=card(gateway),
        payer_email="payer@example.com",
        client_address=ADDRESS,
        now=NOW,
        limit=DeclineLimit(),
    )
    assert outcome.approved
    event = _one(db, since, "invoice.paid_by_payer")
    _check(
        event,
        partner_id=partner_id,
        subject=("payment", outcome.attempt_id),
        label="payer payer@example.com",
    )
    assert event.detail["via"] == "pay link"
    _no_card_data(db)


def test_does_each_partner_money_action_leave_one_event_naming_the_partner_user(
    app: Flask, db: Session, who: Customer
) -> None:
    shop, gateway = who.shop, sandbox(app)
    admin, partner_id = shop.admin, shop.partner.id
    sub = add_subscription(
        db, shop.account, shop.method, frequency="monthly", start_date=DAY + timedelta(days=10)
    )

    since = _mark(db)
    charged = charge_now(db, gateway, admin, sub.id, now=NOW)  # type: ignore[arg-type]
    assert charged.status == "approved"
    event = _one(db, since, "subscription.charged_now")
    _check(event, partner_id=partner_id, subject=("subscription", sub.id), actor=admin)
    assert event.detail["payment_id"] == charged.payment_id

    invoice = issue(app, db, shop)
    since = _mark(db)
    recorded = record_manual_payment(
        db,
        admin,
        invoice.id,
        ManualPaymentForm(
            kind="check", amount="30.00", reference="1001", received_on=DAY.isoformat()
        ),
        token=token(app, f"manual-payment:{invoice.id}"),
        as_of=DAY,
        now=NOW,
    )
    event = _one(db, since, "payment.recorded")
    _check(
        event,
        partner_id=partner_id,
        subject=("payment", recorded.payment.id),
        actor=admin,
        label=admin.name,
    )

    since = _mark(db)
    refunds.record_manual_refund(
        db,
        admin,
        recorded.payment.id,
        refunds.RefundForm(amount="5.00", reference="cash back", refunded_on=DAY.isoformat()),
        token=token(app, f"refund:{recorded.payment.id}"),
        as_of=DAY,
        now=NOW,
    )
    event = _one(db, since, "payment.refunded")
    _check(event, partner_id=partner_id, subject=("payment", recorded.payment.id), actor=admin)

    by_card = pay_by_card(app, db, shop, invoice, 2000)
    since = _mark(db)
    refund = refunds.refund_payment(
        db,
        gateway,
        admin,
        by_card.id,
        refunds.RefundForm(amount="20.00", note="4242 4242 4242 4242"),
        token=token(app, f"refund:{by_card.id}"),
        now=NOW,
    )
    assert refund.status == "approved"
    event = _one(db, since, "payment.refunded")
    _check(event, partner_id=partner_id, subject=("payment", by_card.id), actor=admin)
    _no_card_data(db)


def test_does_a_declined_charge_now_leave_one_event_with_the_reason(
    app: Flask, db: Session, who: Customer
) -> None:
    shop, gateway = who.shop, sandbox(app)
    account, method = make_customer(db, gateway, shop.partner, "Dee Cline", DECLINES_WHEN_CHARGED)
    sub = add_subscription(db, account, method, frequency="monthly", start_date=DAY)

    since = _mark(db)
    declined = charge_now(db, gateway, shop.admin, sub.id, now=NOW)  # type: ignore[arg-type]

    assert declined.status == "declined"
    event = _one(db, since, "subscription.charged_now_failed")
    _check(event, partner_id=shop.partner.id, subject=("subscription", sub.id), actor=shop.admin)
    assert event.detail["status"] == "declined" and event.detail["reason"]


def test_does_each_order_payment_step_leave_one_event(
    app: Flask, db: Session, who: Customer
) -> None:
    shop = who.shop
    admin, partner_id = shop.admin, shop.partner.id
    plan = ("Support plan", 1, 6000, "monthly", DAY)

    order = make_order(db, shop.account, [plan], by=admin)
    since = _mark(db)
    paid = submit(app, db, admin, order, card=CardChoice(new_method=new_card(app)), now=NOW)
    assert paid.approved
    _check(
        _one(db, since, "order.submitted"),
        partner_id=partner_id,
        subject=("order", order.id),
        actor=admin,
    )
    # The processor's answer is recorded apart from the person (the reconciler may record
    # it): the event names who submitted the order.
    _check(
        _one(db, since, "order.paid"),
        partner_id=partner_id,
        subject=("order", order.id),
        label=admin.email,
    )

    held = make_order(db, shop.account, [plan], by=admin)
    since = _mark(db)
    submit(
        app, db, admin, held, choice="authorize", card=CardChoice(new_method=new_card(app)), now=NOW
    )
    assert reload(db, held).status == "authorized"
    _check(
        _one(db, since, "order.authorized"),
        partner_id=partner_id,
        subject=("order", held.id),
        label=admin.email,
    )
    since = _mark(db)
    capture_order(
        db, app.extensions["portico"].gateway, admin, held.id, amount=6000, now=NOW, as_of=DAY
    )
    _check(
        _one(db, since, "order.captured"),
        partner_id=partner_id,
        subject=("order", held.id),
        label=admin.email,
    )

    voided = make_order(db, shop.account, [plan], by=admin)
    submit(
        app,
        db,
        admin,
        voided,
        choice="authorize",
        card=CardChoice(new_method=new_card(app)),
        now=NOW,
    )
    since = _mark(db)
    void_order(db, app.extensions["portico"].gateway, admin, voided.id, now=NOW)  # type: ignore[arg-type]
    _check(
        _one(db, since, "order.voided"),
        partner_id=partner_id,
        subject=("order", voided.id),
        label=admin.email,
    )
    _no_card_data(db)


def test_do_scheduled_payments_leave_one_event_when_made_charged_and_canceled(
    app: Flask, db: Session, who: Customer
) -> None:
    shop, partner_id = who.shop, who.shop.partner.id
    invoice = issue(app, db, shop)
    pay_on = DAY + timedelta(days=5)

    since = _mark(db)
    made = schedule(app, db, who, invoice, pay_on=pay_on)
    row = made.scheduled
    _check(
        _one(db, since, "scheduled_payment.created"),
        partner_id=partner_id,
        subject=("scheduled_payment", row.id),
        actor=who.user,
    )

    since = _mark(db)
    outcome = charge_scheduled_payment(
        db,
        sandbox(app),
        row.id,
        as_of=pay_on,
        now=datetime.combine(pay_on, NOW.timetz()),
    )
    assert db.get_one(ScheduledPayment, row.id, populate_existing=True).status == "paid", outcome
    _check(
        _one(db, since, "scheduled_payment.paid"),
        partner_id=partner_id,
        subject=("scheduled_payment", row.id),
        label="billing run",
    )

    later = schedule(app, db, who, issue(app, db, shop), pay_on=pay_on)
    since = _mark(db)
    cancel_scheduled_payment(db, who.user, later.scheduled.id, now=NOW)  # type: ignore[arg-type]
    _check(
        _one(db, since, "scheduled_payment.canceled"),
        partner_id=partner_id,
        subject=("scheduled_payment", later.scheduled.id),
        actor=who.user,
    )


def test_does_a_billing_run_leave_one_event_per_run_and_per_decline_but_none_per_approval(
    app: Flask, db: Session, who: Customer
) -> None:
    shop, gateway = who.shop, sandbox(app)
    add_subscription(db, shop.account, shop.method, frequency="monthly", start_date=DAY)
    account, method = make_customer(db, gateway, shop.partner, "Dee Cline", DECLINES_WHEN_CHARGED)
    declining = add_subscription(db, account, method, frequency="monthly", start_date=DAY)

    since = _mark(db)
    run = run_billing(db, gateway, shop.partner.id, DAY, now=at_three(DAY))  # type: ignore[arg-type]

    assert (run.charged, run.declined, run.status) == (1, 1, "complete")
    started = _one(db, since, "billing_run.started")
    completed = _one(db, since, "billing_run.completed")
    for event in (started, completed):
        _check(
            event, partner_id=shop.partner.id, subject=("billing_run", run.id), label="billing run"
        )
    assert (completed.detail["charged"], completed.detail["declined"]) == (1, 1)
    decline = _one(db, since, "subscription.charge_declined")
    _check(
        decline,
        partner_id=shop.partner.id,
        subject=("subscription", declining.id),
        label="billing run",
    )
    actions = db.exec(select(AuditEvent.action).where(col(AuditEvent.id) > since)).all()
    assert sorted(actions) == [
        "billing_run.completed",
        "billing_run.started",
        "subscription.charge_declined",
    ]  # the approval's record is its Payment row
    [approval] = db.exec(
        select(Payment).where(Payment.status == "approved", col(Payment.is_recurring).is_(True))
    ).all()
    assert approval.subscription_id != declining.id and approval.period_date == DAY


def test_do_changes_to_who_may_sign_in_leave_one_event(
    app: Flask, db: Session, who: Customer
) -> None:
    admin, partner_id = who.shop.admin, who.shop.partner.id

    since = _mark(db)
    invited = partner_users.invite_user(
        db,
        admin,
        partner_users.InviteInput(name="Robin Park", email="robin@audit.example"),
        links=LINKS,
        now=NOW,
    ).user
    _check(
        _one(db, since, "user.invited"),
        partner_id=partner_id,
        subject=("user", invited.id),
        actor=admin,
    )

    since = _mark(db)
    accept_invitation(
        db,
        LINKS.secret_key,
        invite_token(LINKS.secret_key, invited, now=NOW),
        password=PASSWORD,
        confirm=PASSWORD,
        now=NOW,
    )
    _check(
        _one(db, since, "user.invitation_accepted"),
        partner_id=partner_id,
        subject=("user", invited.id),
        actor=invited,
    )

    for active, action in ((False, "user.deactivated"), (True, "user.reactivated")):
        since = _mark(db)
        partner_users.set_user_active(db, admin, invited.id, active=active)  # type: ignore[arg-type]
        _check(
            _one(db, since, action),
            partner_id=partner_id,
            subject=("user", invited.id),
            actor=admin,
        )

    [reset_email] = request_password_reset(
        db, email=invited.email, base_url=LINKS.base_url, now=NOW
    )
    since = _mark(db)
    reset_password(
        db,
        _email_token(db, reset_email, "/password/reset/"),
        password=PASSWORD + "!",
        confirm=PASSWORD + "!",
        now=NOW,
    )
    _check(
        _one(db, since, "user.password_reset"),
        partner_id=partner_id,
        subject=("user", invited.id),
        actor=invited,
    )

    later = NOW + timedelta(minutes=1)
    [link_email] = request_sign_in_link(db, email=invited.email, base_url=LINKS.base_url, now=later)
    since = _mark(db)
    consume_sign_in_link(db, _email_token(db, link_email, "/login/link/"), now=later)
    _check(
        _one(db, since, "user.signed_in_by_link"),
        partner_id=partner_id,
        subject=("user", invited.id),
        actor=invited,
    )


def test_do_partner_settings_that_decide_who_may_do_what_leave_one_event(
    app: Flask, db: Session, who: Customer
) -> None:
    admin, partner = who.shop.admin, who.shop.partner
    subject = ("partner", partner.id)

    since = _mark(db)
    form = order_settings.order_settings(db, admin)
    order_settings.update_order_settings(
        db, admin, replace(form, sales_collect_payment=not form.sales_collect_payment)
    )
    _check(
        _one(db, since, "partner.order_settings_updated"),
        partner_id=partner.id,
        subject=subject,
        actor=admin,
    )

    since = _mark(db)
    portal_settings.update_portal_settings(
        db,
        admin,
        portal_settings.PortalSettingsForm(
            portal_cancel_allowed=True, portal_schedule_after_due=True
        ),
    )
    _check(
        _one(db, since, "partner.portal_settings_updated"),
        partner_id=partner.id,
        subject=subject,
        actor=admin,
    )

    for change, action in (
        (partner_settings.add_allowed_origin, "partner.origin_added"),
        (partner_settings.remove_allowed_origin, "partner.origin_removed"),
    ):
        since = _mark(db)
        change(db, admin, "https://club.example")
        event = _one(db, since, action)
        _check(event, partner_id=partner.id, subject=subject, actor=admin)
        assert event.detail["origin"] == "https://club.example"

    widget = widget_admin.create_widget(
        db,
        admin,
        widget_admin.WidgetInput(
            title="Dues",
            amount_mode=AmountMode.FIXED,
            fixed_amount="25",
            accept_card=True,
            allow_one_time=True,
        ),
    )
    for active, action in ((False, "widget.deactivated"), (True, "widget.activated")):
        since = _mark(db)
        widget_admin.set_widget_active(db, admin, widget.id, active)  # type: ignore[arg-type]
        _check(
            _one(db, since, action),
            partner_id=partner.id,
            subject=("widget", widget.id),
            actor=admin,
        )


def test_does_a_refused_action_leave_no_event(app: Flask, db: Session, who: Customer) -> None:
    shop = who.shop
    invoice = issue(app, db, shop)
    since = _mark(db)

    with pytest.raises(DomainError):
        record_manual_payment(
            db,
            shop.admin,
            invoice.id,
            ManualPaymentForm(
                kind="check", amount="5000.00", reference="1", received_on=DAY.isoformat()
            ),
            token=token(app, f"manual-payment:{invoice.id}"),
            as_of=DAY,
            now=NOW,
        )
    with pytest.raises(DomainError):
        partner_settings.add_allowed_origin(db, shop.admin, "not an origin")

    assert _mark(db) == since


def test_is_a_card_number_masked_before_an_event_is_kept(
    app: Flask, db: Session, who: Customer
) -> None:
    shop: Shop = who.shop
    add_event(
        db,
        action="payment.noted",
        subject_type="payment",
        subject_id=None,
        partner_id=shop.partner.id,
        actor=shop.admin,
        detail={
            "note": "card 4242 4242 4242 4242 exp 12/34",
            "nested": ["4000-0000-0000-0002"],
            "amount": 2500,
            "last4": "4242",
        },
        at=datetime(2026, 3, 2, tzinfo=UTC),
    )
    db.commit()

    [event] = db.exec(select(AuditEvent).where(AuditEvent.action == "payment.noted")).all()
    assert event.detail == {
        "note": f"card {MASK} exp 12/34",
        "nested": [MASK],
        "amount": 2500,
        "last4": "4242",
    }
    _no_card_data(db)
