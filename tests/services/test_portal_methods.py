"""The customer's payment methods: expiry flags, add, make default, remove, Retry now."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from app.domain.errors import Conflict, InvalidInput, NotFound
from app.gateway.sandbox import SandboxGateway
from app.models import (
    AuditEvent,
    CustomerAccount,
    Invoice,
    Payment,
    PaymentMethod,
    Role,
    ScheduledPayment,
    ScheduledStatus,
    Subscription,
    User,
)
from app.services import customer_billing, portal_methods
from app.services.subscription_access import method_of
from app.services.subscription_billing import charge_next_period
from tests.services.payer_helpers import bank_account, card, sandbox

AS_OF = date(2030, 1, 10)
NOW = datetime(2030, 1, 10, 15, 0, tzinfo=UTC)
JORDAN = "customer@example.com"  # Visa 4242 on file (default), three subscriptions
MAKERS = "makers@example.com"
DECLINES_AFTER_ATTACH = "4000000000000341"


@pytest.fixture
def ctx(demo: Flask) -> Iterator[Flask]:
    with demo.app_context():
        yield demo


@pytest.fixture
def db(ctx: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def gateway(ctx: Flask) -> SandboxGateway:
    return sandbox(ctx)


def user(db: Session, email: str) -> User:
    db.rollback()
    return db.exec(select(User).where(User.email == email)).one()


def methods_of(db: Session, email: str) -> list[PaymentMethod]:
    db.rollback()
    account_id = user(db, email).customer_account_id
    return list(
        db.exec(
            select(PaymentMethod)
            .where(PaymentMethod.customer_account_id == account_id)
            .order_by(PaymentMethod.id)  # type: ignore[arg-type]
        ).all()
    )


def defaults(db: Session, email: str) -> list[int | None]:
    return [m.id for m in methods_of(db, email) if m.is_default]


def subs_of(db: Session, email: str) -> list[Subscription]:
    db.rollback()
    account_id = user(db, email).customer_account_id
    return list(
        db.exec(select(Subscription).where(Subscription.customer_account_id == account_id)).all()
    )


def fresh(db: Session, model: type, record_id: int):  # noqa: ANN201
    db.rollback()
    return db.get(model, record_id, populate_existing=True)


def count(db: Session, model: type) -> int:
    db.rollback()
    return db.exec(select(func.count()).select_from(model)).one()


def add(
    db: Session, gateway: SandboxGateway, email: str = JORDAN, number: str = "5555555555554444",
    *, make_default: bool = False,
) -> portal_methods.MethodChange:  # fmt: skip
    return portal_methods.add_method(
        db, gateway, user(db, email), card(gateway, number),
        holder_name="Jordan Rivera", make_default=make_default,
    )  # fmt: skip


def new_customer(db: Session, name: str = "Casey Newcomer") -> User:
    """A customer of the US partner with no payment method and no subscription."""
    jordan = user(db, JORDAN)
    account = CustomerAccount(
        partner_id=jordan.partner_id, name=name, email="casey@example.com", currency="USD"
    )
    db.add(account)
    db.flush()
    person = User(
        email="casey@example.com", name=name, password_hash="-", role=Role.CUSTOMER,
        partner_id=jordan.partner_id, customer_account_id=account.id,
    )  # fmt: skip
    db.add(person)
    db.commit()
    return person


def subscription(
    db: Session, person: User, method_id: int | None, **fields: object
) -> Subscription:
    sub = Subscription(
        partner_id=person.partner_id, customer_account_id=person.customer_account_id,
        payment_method_id=method_id, description=str(fields.pop("description", "Pottery class")),
        frequency="monthly", currency="USD", manual_amount=4000, start_date=AS_OF,
        next_charge_date=AS_OF, **fields,
    )  # fmt: skip
    db.add(sub)
    db.commit()
    return sub


# -- the list and its expiry flags ------------------------------------------------------


def _card_row(db: Session, person: User, month: int, year: int, last4: str) -> PaymentMethod:
    method = PaymentMethod(
        partner_id=person.partner_id, customer_account_id=person.customer_account_id,
        gateway="sandbox", token=f"pm_sbx_expiry_{last4}", kind="card", brand="visa",
        last4=last4, exp_month=month, exp_year=year,
    )  # fmt: skip
    db.add(method)
    db.commit()
    return method


@pytest.mark.parametrize(
    ("as_of", "state", "warns"),
    [
        (date(2031, 3, 31) - timedelta(days=61), "ok", False),
        (date(2031, 3, 31) - timedelta(days=60), "expiring", True),
        (date(2031, 3, 31) - timedelta(days=59), "expiring", True),
        (date(2031, 3, 31), "expiring", True),  # still valid on the last day of its month
        (date(2031, 4, 1), "expired", True),
    ],
)
def test_which_cards_does_the_list_flag_as_expiring_or_expired(
    db: Session, as_of: date, state: str, warns: bool
) -> None:
    jordan = user(db, JORDAN)
    expiring = _card_row(db, jordan, 3, 2031, "0303")  # works through March 31, 2031

    page = portal_methods.methods_page(db, jordan, as_of=as_of)

    (row,) = [r for r in page.rows if r.method.id == expiring.id]
    assert (row.expiry.state, row.expiry.warns) == (state, warns)
    assert row.expiry.last_day == date(2031, 3, 31)


def test_does_the_list_show_the_default_first_and_what_each_method_pays_for(
    db: Session, gateway: SandboxGateway
) -> None:
    jordan = user(db, JORDAN)
    other = add(db, gateway).method
    pinned = subscription(db, jordan, other.id, description="Kiln time")
    follows = subscription(db, jordan, None, description="Glaze club")
    subscription(db, jordan, None, description="Old retreat", status="complete")

    page = portal_methods.methods_page(db, jordan, as_of=AS_OF)

    visa, mastercard = page.rows
    assert visa.method.is_default and visa.label == "Visa ending in 4242"
    assert mastercard.label == "Mastercard ending in 4444"
    assert [s.id for s in mastercard.subscriptions] == [pinned.id]
    described = [s.description for s in visa.subscriptions]
    assert "Community membership" in described and follows.description in described
    assert "Old retreat" not in described  # a complete subscription charges nothing
    assert page.failed == []


def test_can_a_non_customer_list_methods(db: Session) -> None:
    with pytest.raises(NotFound):
        portal_methods.methods_page(db, user(db, "admin@us-partner.example"), as_of=AS_OF)


# -- adding a card or a bank account ----------------------------------------------------


def test_is_an_added_card_stored_without_its_number_and_not_default_unless_asked(
    db: Session, gateway: SandboxGateway
) -> None:
    before = defaults(db, JORDAN)

    change = add(db, gateway)

    row = fresh(db, PaymentMethod, change.method.id)
    assert (row.kind, row.brand, row.last4, row.exp_month) == ("card", "mastercard", "4444", 12)
    assert row.token.startswith("pm_sbx_") and "5555555555554444" not in row.token
    assert row.holder_name == "Jordan Rivera" and not change.is_default
    assert defaults(db, JORDAN) == before
    account = fresh(db, CustomerAccount, row.customer_account_id)
    charged = gateway.charge(
        amount=100, currency="USD", token=row.token, customer_ref=account.gateway_customer_ref,
        idempotency_key="test:attached",
    )  # fmt: skip
    assert charged.approved  # attached to the account's processor customer


def test_does_a_card_added_as_default_take_over_the_following_subscriptions(
    db: Session, gateway: SandboxGateway
) -> None:
    change = add(db, gateway, make_default=True)

    assert change.is_default and defaults(db, JORDAN) == [change.method.id]
    for sub in subs_of(db, JORDAN):
        assert method_of(db, sub).id == change.method.id  # type: ignore[union-attr]
    events = db.exec(select(AuditEvent.action)).all()
    assert "payment_method.added" in events


def test_is_the_first_method_of_an_account_its_default_with_a_processor_customer(
    db: Session, gateway: SandboxGateway
) -> None:
    casey = new_customer(db)

    change = portal_methods.add_method(
        db, gateway, casey, bank_account(gateway, "000123456789"),
        holder_name="Casey Newcomer", make_default=False,
    )  # fmt: skip

    row = fresh(db, PaymentMethod, change.method.id)
    assert (row.kind, row.bank_name, row.last4, row.exp_month) == (
        "bank_account", "STRIPE TEST BANK", "6789", None,
    )  # fmt: skip
    assert row.is_default and change.is_default
    account = fresh(db, CustomerAccount, casey.customer_account_id)
    assert account.gateway_customer_ref.startswith("cus_sbx_")


@pytest.mark.parametrize("number", ["4000000000000002", "4000000000009995"])
def test_is_a_card_refused_when_saved_reported_at_the_card_field_and_nothing_stored(
    db: Session, gateway: SandboxGateway, number: str
) -> None:
    before = count(db, PaymentMethod)
    tokenized = card(gateway, number)  # the sandbox tokenizes it; the refusal is on attach

    with pytest.raises(InvalidInput) as raised:
        portal_methods.add_method(
            db, gateway, user(db, JORDAN), tokenized, holder_name="J", make_default=True
        )

    assert raised.value.field == "card_number" and "declined" in raised.value.message
    assert count(db, PaymentMethod) == before


def test_is_a_refused_bank_account_reported_at_the_account_number(
    db: Session, gateway: SandboxGateway
) -> None:
    with pytest.raises(InvalidInput) as raised:
        portal_methods.add_method(
            db, gateway, user(db, JORDAN), bank_account(gateway, "000111111116"),
            holder_name="J", make_default=False,
        )  # fmt: skip

    assert raised.value.field == "account_number"


# -- making a method the default --------------------------------------------------------


def test_does_make_default_move_following_subscriptions_but_not_pinned_ones(
    db: Session, gateway: SandboxGateway
) -> None:
    jordan = user(db, JORDAN)
    visa = methods_of(db, JORDAN)[0]
    mastercard = add(db, gateway).method
    third = add(db, gateway, number=DECLINES_AFTER_ATTACH).method
    pinned = subscription(db, jordan, third.id, description="Kiln time")
    unset = subscription(db, jordan, None, description="Glaze club")
    on_visa = [s.id for s in subs_of(db, JORDAN) if s.payment_method_id == visa.id]
    assert on_visa

    change = portal_methods.make_default(db, jordan, mastercard.id)

    assert change.is_default and defaults(db, JORDAN) == [mastercard.id]
    for sub_id in on_visa:
        assert fresh(db, Subscription, sub_id).payment_method_id == mastercard.id
    assert fresh(db, Subscription, pinned.id).payment_method_id == third.id
    assert method_of(db, fresh(db, Subscription, unset.id)).id == mastercard.id  # type: ignore[union-attr]
    made = db.exec(
        select(AuditEvent).where(AuditEvent.action == "payment_method.made_default")
    ).one()
    assert made.detail["method"] == "Mastercard ending in 4444"


def test_is_making_the_default_default_again_harmless(db: Session) -> None:
    visa = methods_of(db, JORDAN)[0]
    before = {s.id: s.payment_method_id for s in subs_of(db, JORDAN)}

    portal_methods.make_default(db, user(db, JORDAN), visa.id)

    assert defaults(db, JORDAN) == [visa.id]
    assert {s.id: s.payment_method_id for s in subs_of(db, JORDAN)} == before


def test_can_a_customer_touch_another_accounts_method(db: Session, gateway: SandboxGateway) -> None:
    theirs = methods_of(db, MAKERS)[0]
    jordan = user(db, JORDAN)

    with pytest.raises(NotFound):
        portal_methods.make_default(db, jordan, theirs.id)
    with pytest.raises(NotFound):
        portal_methods.remove_method(db, gateway, jordan, theirs.id)
    with pytest.raises(NotFound):
        portal_methods.make_default(db, user(db, "admin@us-partner.example"), theirs.id)
    assert methods_of(db, MAKERS)[0].is_default


# -- removing a method ------------------------------------------------------------------


def test_is_removing_the_only_method_of_an_active_subscription_refused(
    db: Session, gateway: SandboxGateway
) -> None:
    casey = new_customer(db)
    only = portal_methods.add_method(
        db, gateway, casey, card(gateway), holder_name="Casey", make_default=True
    ).method
    subscription(db, casey, only.id, description="Community membership", status="error")

    with pytest.raises(Conflict) as refused:
        portal_methods.remove_method(db, gateway, casey, only.id)

    assert refused.value.message == (
        "This card pays for Community membership and it is your only payment method. "
        "Add another card or bank account first."
    )
    assert fresh(db, PaymentMethod, only.id) is not None


@pytest.mark.parametrize("status", ["stopped", "complete"])
def test_can_the_only_method_go_when_its_subscription_no_longer_charges(
    db: Session, gateway: SandboxGateway, status: str
) -> None:
    casey = new_customer(db)
    only = portal_methods.add_method(
        db, gateway, casey, card(gateway), holder_name="Casey", make_default=True
    ).method
    sub = subscription(db, casey, only.id, status=status)

    removed = portal_methods.remove_method(db, gateway, casey, only.id)

    assert removed.new_default is None and removed.detached
    assert fresh(db, PaymentMethod, only.id) is None
    assert fresh(db, Subscription, sub.id).payment_method_id is None


def test_is_the_only_method_kept_for_a_waiting_scheduled_payment(
    db: Session, gateway: SandboxGateway
) -> None:
    casey = new_customer(db)
    only = portal_methods.add_method(
        db, gateway, casey, card(gateway), holder_name="Casey", make_default=True
    ).method
    _scheduled(db, casey, only.id)

    with pytest.raises(Conflict, match="scheduled payment"):
        portal_methods.remove_method(db, gateway, casey, only.id)


def _scheduled(
    db: Session, person: User, method_id: int, status: str = ScheduledStatus.SCHEDULED
) -> ScheduledPayment:
    invoice = db.exec(
        select(Invoice).where(Invoice.customer_account_id == user(db, JORDAN).customer_account_id)
    ).first()
    assert invoice is not None
    scheduled = ScheduledPayment(
        partner_id=person.partner_id, customer_account_id=person.customer_account_id,
        invoice_id=invoice.id, payment_method_id=method_id, amount=1000, currency="USD",
        pay_on=AS_OF + timedelta(days=5), status=status,
    )  # fmt: skip
    db.add(scheduled)
    db.commit()
    return scheduled


def test_does_removing_a_method_move_what_it_paid_for_to_the_default(
    db: Session, gateway: SandboxGateway
) -> None:
    jordan = user(db, JORDAN)
    visa = methods_of(db, JORDAN)[0]
    mastercard = add(db, gateway).method
    pinned = subscription(db, jordan, mastercard.id, description="Kiln time")
    waiting = _scheduled(db, jordan, mastercard.id)
    paid = Payment(
        partner_id=jordan.partner_id, customer_account_id=jordan.customer_account_id,
        payment_method_id=mastercard.id, purpose_key="test:paid-with-mastercard",
        idempotency_key="test:paid-with-mastercard", kind="charge", method="card",
        status="approved", amount=1500, currency="USD", gateway="sandbox",
        brand="mastercard", last4="4444",
    )  # fmt: skip
    db.add(paid)
    db.commit()

    removed = portal_methods.remove_method(db, gateway, jordan, mastercard.id)

    assert removed.label == "Mastercard ending in 4444" and removed.detached
    assert removed.new_default is not None and removed.new_default.id == visa.id
    assert not removed.new_default_promoted  # the Visa already was the default
    assert fresh(db, Subscription, pinned.id).payment_method_id == visa.id
    assert fresh(db, ScheduledPayment, waiting.id).payment_method_id == visa.id
    kept = fresh(db, Payment, paid.id)
    assert (kept.payment_method_id, kept.brand, kept.last4) == (None, "mastercard", "4444")
    assert [m.id for m in methods_of(db, JORDAN)] == [visa.id]
    assert db.exec(select(AuditEvent).where(AuditEvent.action == "payment_method.removed")).one()


def test_does_removing_the_default_promote_the_oldest_remaining_method(
    db: Session, gateway: SandboxGateway
) -> None:
    jordan = user(db, JORDAN)
    visa = methods_of(db, JORDAN)[0]
    older = add(db, gateway).method
    add(db, gateway, number=DECLINES_AFTER_ATTACH)
    history = db.exec(select(Payment).where(Payment.payment_method_id == visa.id)).all()
    assert history  # the demo's payments named the Visa

    removed = portal_methods.remove_method(db, gateway, jordan, visa.id)

    assert removed.new_default_promoted and removed.new_default.id == older.id  # type: ignore[union-attr]
    assert defaults(db, JORDAN) == [older.id]
    for sub in subs_of(db, JORDAN):
        assert method_of(db, sub).id == older.id  # type: ignore[union-attr]
    for payment in history:
        kept = fresh(db, Payment, payment.id)
        assert kept.payment_method_id is None and kept.last4 == "4242"


def test_can_a_removed_card_still_be_charged_at_the_processor(
    db: Session, gateway: SandboxGateway
) -> None:
    jordan = user(db, JORDAN)
    mastercard = add(db, gateway).method
    token = fresh(db, PaymentMethod, mastercard.id).token
    customer_ref = fresh(db, CustomerAccount, jordan.customer_account_id).gateway_customer_ref

    portal_methods.remove_method(db, gateway, jordan, mastercard.id)

    result = gateway.charge(
        amount=100, currency="USD", token=token, customer_ref=customer_ref,
        idempotency_key="test:after-removal",
    )  # fmt: skip
    assert result.status == "error" and not result.approved


def test_is_a_method_being_charged_by_a_scheduled_payment_kept(
    db: Session, gateway: SandboxGateway
) -> None:
    jordan = user(db, JORDAN)
    mastercard = add(db, gateway).method
    _scheduled(db, jordan, mastercard.id, status=ScheduledStatus.PROCESSING)

    with pytest.raises(Conflict, match="being made right now"):
        portal_methods.remove_method(db, gateway, jordan, mastercard.id)
    assert fresh(db, PaymentMethod, mastercard.id) is not None


def test_does_a_failed_detach_still_remove_the_method(
    db: Session, gateway: SandboxGateway, caplog: pytest.LogCaptureFixture
) -> None:
    jordan = user(db, JORDAN)
    mastercard = add(db, gateway).method
    # The processor already forgot the token (as if detached from its dashboard).
    gateway.detach_payment_method(token=fresh(db, PaymentMethod, mastercard.id).token)
    db.execute(
        PaymentMethod.__table__.update()  # type: ignore[attr-defined]
        .where(PaymentMethod.__table__.c.id == mastercard.id)  # type: ignore[attr-defined]
        .values(token="pm_sbx_unknown_to_the_processor")
    )
    db.commit()

    removed = portal_methods.remove_method(db, gateway, jordan, mastercard.id)

    assert not removed.detached and fresh(db, PaymentMethod, mastercard.id) is None
    assert "could not be detached" in caplog.text


# -- Retry now after a new default ------------------------------------------------------


def test_does_retry_now_charge_the_card_just_made_default(
    db: Session, gateway: SandboxGateway
) -> None:
    jordan = user(db, JORDAN)
    sub = subscription(db, jordan, None, description="Kiln time")
    customer_billing.replace_payment_method(
        db, gateway, jordan, sub.id, card(gateway, DECLINES_AFTER_ATTACH)
    )  # the 0341 card becomes the default and the subscription's card
    assert charge_next_period(db, gateway, sub.id, as_of=AS_OF, now=NOW).status == "declined"
    assert fresh(db, Subscription, sub.id).status == "error"
    assert [
        f.subscription.id for f in portal_methods.methods_page(db, jordan, as_of=AS_OF).failed
    ] == [sub.id]

    change = add(db, gateway, number="4242424242424242", make_default=True)
    assert [s.id for s in change.in_error] == [sub.id]
    result = customer_billing.retry_now(
        db, gateway, user(db, JORDAN), sub.id, as_of=AS_OF, now=NOW, base_url=""
    )

    assert result.status == "charged"
    after = fresh(db, Subscription, sub.id)
    assert (after.status, after.recurring_count, after.payment_method_id) == (
        "recurring", 1, change.method.id,
    )  # fmt: skip
    approved = db.exec(
        select(Payment).where(Payment.subscription_id == sub.id, Payment.status == "approved")
    ).one()
    assert (approved.payment_method_id, approved.last4) == (change.method.id, "4242")
