"""The portal's self-service catalog: what it offers, joining with the first period paid
exactly once (saved or new card), declines, lost answers, members, and gift bounds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from app.domain.errors import Conflict, FieldsInvalid, InvalidInput, NotFound
from app.models import (
    AuditEvent,
    CustomerAccount,
    DeclineRecord,
    Invoice,
    OutboxMessage,
    Partner,
    Payment,
    PaymentMethod,
    Product,
    Subscription,
    User,
)
from app.services.card_testing import DeclineLimit, TooManyDeclines
from app.services.form_tokens import FormToken
from app.services.portal_catalog import JoinOutcome, MethodChoice, join
from app.services.portal_products import JoinInput, catalog, join_page, join_terms
from app.services.reconcile import settle
from tests.services.payer_helpers import card, charges_for, new_form, sandbox

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TODAY = date(2026, 3, 2)
MAKERS = "makers@example.com"
JORDAN = "customer@example.com"
ADDRESS = "203.0.113.9"


@pytest.fixture
def ctx(demo: Flask) -> Iterator[Flask]:
    """The demo app with an app context (receipts are rendered from templates)."""
    with demo.app_context():
        yield demo


@pytest.fixture
def db(ctx: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _user(db: Session, email: str) -> User:
    return db.exec(select(User).where(User.email == email)).one()


def _product(db: Session, name: str) -> Product:
    return db.exec(select(Product).where(Product.name == name)).one()


def _form(ctx: Flask, user: User, product: Product) -> FormToken:
    return new_form(ctx, f"join:{user.customer_account_id}:{product.id}")


def _count(db: Session, model: type) -> int:
    db.rollback()
    return db.exec(select(func.count()).select_from(model)).one()


def _join(
    ctx: Flask,
    db: Session,
    user: User,
    product: Product,
    *,
    form: FormToken | None = None,
    method: MethodChoice | None = None,
    amount: str = "",
    frequency: str = "",
) -> JoinOutcome:
    if method is None:
        saved = db.exec(
            select(PaymentMethod).where(
                PaymentMethod.customer_account_id == user.customer_account_id
            )
        ).first()
        assert saved is not None
        method = MethodChoice(saved_method_id=saved.id)
    return join(
        db, sandbox(ctx), user, product.id,  # type: ignore[arg-type]
        form=form or _form(ctx, user, product), data=JoinInput(amount, frequency),
        method=method, client_address=ADDRESS, now=NOW, as_of=TODAY, limit=DeclineLimit(),
    )  # fmt: skip


# -- what is offered -----------------------------------------------------------------------


def test_does_the_catalog_list_only_the_partners_active_recurring_self_service_products(
    db: Session,
) -> None:
    makers = _user(db, MAKERS)
    us_partner = db.get(Partner, makers.partner_id)
    assert us_partner is not None
    for name, frequency, active in (("Old plan", "monthly", False), ("Gala ticket", None, True)):
        db.add(
            Product(
                partner_id=us_partner.id, name=name, unit_amount=1000, currency="USD",  # type: ignore[arg-type]
                frequency=frequency, active=active, self_service=True,
            )
        )  # fmt: skip
    db.commit()

    offered = catalog(db, makers)

    names = [item.product.name for item in offered.items]
    assert names == ["Annual supporter plan", "Community membership", "Youth programs fund"]
    membership = offered.items[1]
    assert (membership.price, membership.price_words) == (2500, "$25.00 a month")
    assert not membership.is_member and not membership.donation
    gift = offered.items[2]
    assert gift.donation and gift.price == 2000  # the suggestion
    de_product = _product(db, "Mitgliedschaft")
    with pytest.raises(NotFound):
        join_page(db, makers, de_product.id)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        join_page(db, makers, _product(db, "Workshop seat").id)  # type: ignore[arg-type]


def test_is_a_membership_priced_with_tax_as_orders_price_it(db: Session) -> None:
    makers = _user(db, MAKERS)
    partner = db.get(Partner, makers.partner_id)
    assert partner is not None
    partner.tax_rate_bp = 825  # 8.25 %: $25.00 + $2.0625 tax → $27.06 (half-up)
    db.add(partner)
    db.commit()

    item = join_page(db, makers, _product(db, "Community membership").id).item  # type: ignore[arg-type]

    assert (item.price, item.rate_bp) == (2706, 825)


def test_does_an_existing_membership_show_as_member(db: Session) -> None:
    jordan = _user(db, JORDAN)  # the demo gives Jordan a "Community membership" schedule

    items = {i.product.name: i for i in catalog(db, jordan).items}

    assert items["Community membership"].is_member
    assert not items["Youth programs fund"].is_member


# -- joining -------------------------------------------------------------------------------


def test_does_joining_with_a_saved_card_start_a_paid_membership(ctx: Flask, db: Session) -> None:
    makers = _user(db, MAKERS)
    product = _product(db, "Community membership")
    form = _form(ctx, makers, product)

    outcome = _join(ctx, db, makers, product, form=form)

    assert outcome.approved
    assert (
        outcome.message
        == "Welcome! Community membership is active; next payment $25.00 on Apr 2, 2026."
    )
    payment = db.exec(select(Payment).where(Payment.purpose_key == form.purpose_key)).one()
    sub = db.get(Subscription, outcome.subscription_id)
    assert sub is not None
    assert (sub.product_id, sub.description, sub.frequency) == (product.id, product.name, "monthly")
    assert (sub.manual_amount, sub.amount_charged, sub.recurring_count) == (2500, 2500, 1)
    assert (sub.start_date, sub.next_charge_date, sub.stop_rule) == (
        TODAY,
        date(2026, 4, 2),
        "unending",
    )
    assert sub.status == "recurring" and sub.payment_method_id == payment.payment_method_id
    invoice = db.get(Invoice, payment.invoice_id)
    assert invoice is not None and invoice.subscription_id == sub.id
    assert (invoice.status, invoice.total, invoice.amount_paid) == ("paid", 2500, 2500)
    assert payment.subscription_id == sub.id and payment.amount == 2500
    receipt = db.exec(
        select(OutboxMessage).where(OutboxMessage.dedupe_key == f"receipt:payment:{payment.id}")
    ).one()
    assert receipt.to_address == MAKERS and receipt.id in outcome.email_ids
    actions = db.exec(select(AuditEvent.action).where(AuditEvent.subject_id == sub.id)).all()
    assert "subscription.joined_by_customer" in actions
    assert [c.status for c in charges_for(sandbox(ctx), form)] == ["succeeded"]


def test_does_a_gift_with_a_new_card_keep_the_card_for_the_next_periods(
    ctx: Flask, db: Session
) -> None:
    makers = _user(db, MAKERS)
    product = _product(db, "Youth programs fund")
    cards_before = _count(db, PaymentMethod)
    form = _form(ctx, makers, product)

    outcome = _join(
        ctx, db, makers, product, form=form, amount="30.00", frequency="quarterly",
        method=MethodChoice(new_method=card(sandbox(ctx))),
    )  # fmt: skip

    assert outcome.approved and outcome.message.startswith("Thank you! Your gift to Youth")
    sub = db.get(Subscription, outcome.subscription_id)
    assert sub is not None
    assert (sub.frequency, sub.manual_amount, sub.next_charge_date) == (
        "quarterly", 3000, date(2026, 6, 2),
    )  # fmt: skip
    assert _count(db, PaymentMethod) == cards_before + 1
    kept = db.get(PaymentMethod, sub.payment_method_id)
    assert kept is not None and kept.last4 == "4242"
    assert not kept.is_default  # the card already on file stays the default
    account = db.get(CustomerAccount, makers.customer_account_id)
    (charge,) = charges_for(sandbox(ctx), form)
    assert account is not None and charge.customer_ref == account.gateway_customer_ref


def test_does_a_decline_create_nothing_and_say_why(ctx: Flask, db: Session) -> None:
    makers = _user(db, MAKERS)
    product = _product(db, "Community membership")
    subs, invoices = _count(db, Subscription), _count(db, Invoice)

    outcome = _join(
        ctx, db, makers, product,
        method=MethodChoice(new_method=card(sandbox(ctx), "4000000000000002")),
    )  # fmt: skip
    saved_then_declined = _join(
        ctx, db, makers, product,
        method=MethodChoice(new_method=card(sandbox(ctx), "4000000000000341")),
    )  # fmt: skip

    assert outcome.status == saved_then_declined.status == "declined"
    assert "declined" in outcome.message.lower()
    assert outcome.subscription_id is None
    assert (_count(db, Subscription), _count(db, Invoice)) == (subs, invoices)
    assert _count(db, DeclineRecord) == 2  # they count against the card-testing limit
    assert not catalog(db, makers).items[1].is_member


def test_does_a_double_submission_charge_once(ctx: Flask, db: Session) -> None:
    makers = _user(db, MAKERS)
    product = _product(db, "Community membership")
    form = _form(ctx, makers, product)
    subs = _count(db, Subscription)

    first = _join(ctx, db, makers, product, form=form)
    second = _join(ctx, db, makers, product, form=form)

    assert first.approved and second.approved
    assert first.payment_id == second.payment_id
    assert first.subscription_id == second.subscription_id
    assert len(charges_for(sandbox(ctx), form)) == 1
    assert _count(db, Subscription) == subs + 1


def test_is_a_lost_answer_settled_by_the_reconciler_into_one_subscription(
    ctx: Flask, db: Session
) -> None:
    makers = _user(db, MAKERS)
    product = _product(db, "Community membership")
    form = _form(ctx, makers, product)
    subs = _count(db, Subscription)
    sandbox(ctx).inject("timeout_after_charge")

    lost = _join(ctx, db, makers, product, form=form)

    assert lost.status == "unknown" and lost.subscription_id is None
    assert _count(db, Subscription) == subs
    with pytest.raises(Conflict, match="still being confirmed"):
        _join(ctx, db, makers, product)  # another tab may not join it again meanwhile
    attempt = db.get(Payment, lost.payment_id)
    status, emails = settle(db, sandbox(ctx), attempt, now=NOW + timedelta(minutes=5))  # type: ignore[arg-type]
    again, _ = settle(db, sandbox(ctx), db.get(Payment, lost.payment_id), now=NOW)  # type: ignore[arg-type]

    assert status == again == "approved" and emails
    assert _count(db, Subscription) == subs + 1
    db.rollback()
    payment = db.get(Payment, lost.payment_id, populate_existing=True)
    assert payment is not None and payment.subscription_id is not None
    assert len(charges_for(sandbox(ctx), form)) == 1
    assert catalog(db, makers).items[1].is_member


def test_is_a_member_refused_a_second_membership(ctx: Flask, db: Session) -> None:
    makers = _user(db, MAKERS)
    product = _product(db, "Community membership")
    assert _join(ctx, db, makers, product).approved
    subs = _count(db, Subscription)

    with pytest.raises(Conflict, match="already a member"):
        _join(ctx, db, makers, product)
    with pytest.raises(Conflict):
        _join(ctx, db, _user(db, JORDAN), product)

    assert _count(db, Subscription) == subs
    gift = _product(db, "Youth programs fund")  # gifts may be given more than once
    assert _join(ctx, db, makers, gift, amount="5", frequency="monthly").approved
    assert _join(ctx, db, makers, gift, amount="5", frequency="annual").approved


@pytest.mark.parametrize(
    ("amount", "frequency", "fields"),
    [
        ("0.99", "monthly", {"amount"}),
        ("10000.01", "monthly", {"amount"}),
        ("lots", "monthly", {"amount"}),
        ("", "monthly", {"amount"}),
        ("25.00", "weekly", {"frequency"}),
        ("0", "", {"amount", "frequency"}),
    ],
)
def test_are_gift_amounts_and_frequencies_checked(
    ctx: Flask, db: Session, amount: str, frequency: str, fields: set[str]
) -> None:
    makers = _user(db, MAKERS)
    gift = _product(db, "Youth programs fund")
    payments = _count(db, Payment)

    with pytest.raises(FieldsInvalid) as refused:
        _join(ctx, db, makers, gift, amount=amount, frequency=frequency)

    assert set(refused.value.errors) == fields
    assert _count(db, Payment) == payments  # nothing was charged
    page = join_page(db, makers, gift.id)  # type: ignore[arg-type]
    assert join_terms(page, JoinInput("1.00", "quarterly")).amount == 100
    assert join_terms(page, JoinInput("10,000.00", "annual")).amount == 1_000_000


def test_is_a_saved_card_of_another_customer_refused(ctx: Flask, db: Session) -> None:
    makers, jordan = _user(db, MAKERS), _user(db, JORDAN)
    jordans_card = db.exec(
        select(PaymentMethod).where(PaymentMethod.customer_account_id == jordan.customer_account_id)
    ).first()
    assert jordans_card is not None

    with pytest.raises(InvalidInput) as refused:
        _join(
            ctx, db, makers, _product(db, "Community membership"),
            method=MethodChoice(saved_method_id=jordans_card.id),
        )  # fmt: skip

    assert refused.value.field == "saved_method"


def test_does_a_taxed_membership_charge_and_invoice_the_price_shown(
    ctx: Flask, db: Session
) -> None:
    makers = _user(db, MAKERS)
    partner = db.get(Partner, makers.partner_id)
    assert partner is not None
    partner.tax_rate_bp = 825
    db.add(partner)
    db.commit()
    product = _product(db, "Community membership")
    shown = join_page(db, makers, product.id).item.price  # type: ignore[arg-type]

    outcome = _join(ctx, db, makers, product)

    payment = db.get(Payment, outcome.payment_id)
    assert payment is not None
    invoice = db.get(Invoice, payment.invoice_id)
    assert invoice is not None
    assert shown == payment.amount == invoice.total == invoice.amount_paid == 2706
    assert (invoice.subtotal, invoice.tax) == (2500, 206)
    sub = db.get(Subscription, outcome.subscription_id)
    assert sub is not None and sub.manual_amount == 2706  # every period costs the same


def test_do_declines_count_against_the_card_testing_limit(ctx: Flask, db: Session) -> None:
    makers = _user(db, MAKERS)
    product = _product(db, "Community membership")

    def attempt(number: str) -> JoinOutcome:
        return join(
            db, sandbox(ctx), makers, product.id,  # type: ignore[arg-type]
            form=_form(ctx, makers, product), data=JoinInput(),
            method=MethodChoice(new_method=card(sandbox(ctx), number)), client_address=ADDRESS,
            now=NOW, as_of=TODAY, limit=DeclineLimit(attempts=2),
        )  # fmt: skip

    assert attempt("4000000000000002").status == "declined"
    assert attempt("4000000000000002").status == "declined"
    with pytest.raises(TooManyDeclines):
        attempt("4242424242424242")
    assert not catalog(db, makers).items[1].is_member
