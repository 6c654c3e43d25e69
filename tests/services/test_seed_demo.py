"""seed_demo: the demo data set of ARCHITECTURE §4, loaded once, through the sandbox.

The data set is seeded once for this module (about a second) and only read by the tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, text
from sqlmodel import Session, SQLModel, col, select

from app.gateway.sandbox import SandboxGateway
from app.models import (
    CustomerAccount,
    Invoice,
    Partner,
    Payment,
    PaymentMethod,
    Product,
    Subscription,
    User,
)
from app.services.auth import authenticate
from app.services.demo import seed_demo

DEMO_PASSWORD = "portico-demo"
# ARCHITECTURE §4: (email, role, partner slug or None)
DEMO_SIGN_INS = [
    ("operator@example.com", "operator", None),
    ("admin@us-partner.example", "partner_admin", "us-partner"),
    ("sales@us-partner.example", "partner_sales", "us-partner"),
    ("admin@de-partner.example", "partner_admin", "de-partner"),
    ("customer@example.com", "customer", "us-partner"),
]
# Full numbers the demo tokenizes; none may be stored anywhere.
SECRETS = ("4242424242424242", "5555555555554444", "4000000000000341", "378282246310005")
BANK_ACCOUNT_NUMBER = "000123456789"
MANUAL_METHOD = "manual"


@dataclass(frozen=True)
class Seeded:
    created: bool
    gateway: SandboxGateway


def _empty(engine: Engine) -> None:
    tables = list(reversed(SQLModel.metadata.sorted_tables))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(table.delete())


@pytest.fixture(scope="module")
def seeded(engine: Engine) -> Iterator[Seeded]:
    gateway = SandboxGateway(engine, latency_ms=0)
    with Session(engine, expire_on_commit=False) as session:
        created = seed_demo(session, gateway)
    yield Seeded(created, gateway)
    _empty(engine)


@pytest.fixture
def session(seeded: Seeded, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in SQLModel.metadata.sorted_tables
        }


def test_does_the_first_seed_report_that_it_created_the_demo(seeded: Seeded) -> None:
    assert seeded.created is True


def test_are_there_a_us_partner_in_usd_and_a_german_one_in_eur_with_vat(
    session: Session,
) -> None:
    partners = {p.slug: p for p in session.exec(select(Partner)).all()}

    assert set(partners) == {"us-partner", "de-partner"}
    us, de = partners["us-partner"], partners["de-partner"]
    assert (us.country, us.currency) == ("US", "USD")
    assert (de.country, de.currency, de.tax_rate_bp) == ("DE", "EUR", 1900)


@pytest.mark.parametrize(("email", "role", "slug"), DEMO_SIGN_INS)
def test_can_each_demo_user_of_the_architecture_sign_in(
    session: Session, email: str, role: str, slug: str | None
) -> None:
    user = authenticate(session, email=email, password=DEMO_PASSWORD, now=datetime.now(UTC))

    assert user.role == role
    partner = session.get(Partner, user.partner_id) if user.partner_id else None
    assert (partner.slug if partner else None) == slug


def test_does_the_demo_customer_have_three_subscriptions_and_open_invoices(
    session: Session,
) -> None:
    user = session.exec(select(User).where(User.email == "customer@example.com")).one()
    account_id = user.customer_account_id
    subscriptions = session.exec(
        select(Subscription).where(Subscription.customer_account_id == account_id)
    ).all()
    invoices = session.exec(select(Invoice).where(Invoice.customer_account_id == account_id)).all()

    assert len(subscriptions) == 3
    assert {i.status for i in invoices} >= {"created", "overdue"}


def test_are_there_six_customer_accounts_with_payment_methods(session: Session) -> None:
    accounts = session.exec(select(CustomerAccount)).all()
    methods = session.exec(select(PaymentMethod)).all()
    with_methods = {m.customer_account_id for m in methods}

    assert len(accounts) >= 6
    assert len(with_methods & {a.id for a in accounts}) >= 6
    assert {m.kind for m in methods} == {"card", "bank_account"}
    for method in methods:
        assert len(method.last4) == 4 and method.token
    for account_id in with_methods:
        assert sum(m.is_default for m in methods if m.customer_account_id == account_id) == 1


def test_can_each_demo_partner_sell_one_time_and_recurring_products_in_its_currency(
    session: Session,
) -> None:
    partners = {p.id: p for p in session.exec(select(Partner)).all()}
    products = session.exec(select(Product)).all()

    for partner in partners.values():
        own = [p for p in products if p.partner_id == partner.id]
        assert {p.currency for p in own} == {partner.currency}, partner.slug
        assert any(p.frequency is None for p in own), partner.slug
        assert any(p.frequency == "monthly" for p in own), partner.slug
        assert all(p.active and p.unit_amount > 0 for p in own), partner.slug


def test_may_the_us_demo_salesperson_collect_order_payments(session: Session) -> None:
    partners = {p.slug: p for p in session.exec(select(Partner)).all()}

    assert partners["us-partner"].sales_collect_payment is True
    assert partners["us-partner"].sales_send_for_approval is True
    assert partners["de-partner"].sales_collect_payment is False


def test_are_subscriptions_in_several_frequencies_and_states(session: Session) -> None:
    subscriptions = session.exec(select(Subscription)).all()
    statuses = Counter(s.status for s in subscriptions)

    assert set(statuses) >= {"recurring", "error", "stopped", "complete"}
    assert len({s.frequency for s in subscriptions}) >= 4
    for sub in subscriptions:
        if sub.status == "recurring":
            assert sub.next_charge_date is not None, sub.description
        if sub.status == "stopped":
            assert sub.next_charge_date is None, sub.description
        if sub.status == "error":
            assert sub.last_error, sub.description


def test_are_invoices_in_every_status(session: Session) -> None:
    invoices = session.exec(select(Invoice)).all()
    by_id = {i.id: i for i in invoices}

    every_status = {"created", "paid", "overdue", "canceled", "cancellation"}
    assert {i.status for i in invoices} >= every_status
    for credit in (i for i in invoices if i.status == "cancellation"):
        canceled = by_id[credit.cancels_invoice_id]
        assert canceled.status == "canceled"
        assert credit.series == "CN"
        assert credit.total == -canceled.total
    for invoice in invoices:
        assert invoice.total == invoice.subtotal + invoice.tax


def test_is_every_paid_invoice_paid_by_approved_payments(session: Session) -> None:
    paid = session.exec(select(Invoice).where(Invoice.status == "paid")).all()

    assert paid
    for invoice in paid:
        approved = session.exec(
            select(Payment)
            .where(Payment.invoice_id == invoice.id)
            .where(Payment.status == "approved")
        ).all()
        assert approved, invoice.number
        assert sum(p.amount for p in approved) == invoice.amount_paid == invoice.total


def test_is_every_gateway_payment_on_the_sandbox_ledger(session: Session, seeded: Seeded) -> None:
    """Card and bank payments point at a real sandbox charge, findable by reference and by
    the payment's own idempotency key (what a reconciler asks the processor with)."""
    ledger = {c.reference: c for c in seeded.gateway.list_charges()}
    payments = session.exec(select(Payment).where(col(Payment.method) != MANUAL_METHOD)).all()
    paid_invoice_ids = set(session.exec(select(Invoice.id).where(Invoice.status == "paid")).all())

    assert any(p.status == "approved" and p.invoice_id in paid_invoice_ids for p in payments)
    for payment in payments:
        charge = ledger.get(payment.gateway_reference)
        assert charge is not None, payment.purpose_key
        assert (charge.amount, charge.currency) == (payment.amount, payment.currency)
        assert charge.status == ("succeeded" if payment.status == "approved" else "failed")
        stored = seeded.gateway.retrieve(idempotency_key=payment.idempotency_key)
        assert stored is not None, payment.purpose_key
        assert stored.reference == payment.gateway_reference


def test_are_manual_payments_kept_off_the_gateway(session: Session) -> None:
    manual = session.exec(select(Payment).where(Payment.method == MANUAL_METHOD)).all()

    assert manual  # the demo has an invoice paid by check
    for payment in manual:
        assert payment.kind in ("check", "cash", "bank_transfer")
        assert payment.gateway_reference == ""


def test_does_any_table_hold_a_full_card_or_account_number(engine: Engine, seeded: Seeded) -> None:
    found = []
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                for column, value in row.items():
                    text_value = str(value)
                    found += [
                        (table.name, column, secret)
                        for secret in (*SECRETS, BANK_ACCOUNT_NUMBER)
                        if secret in text_value
                    ]

    assert found == []


def test_does_a_second_seed_add_nothing(engine: Engine, seeded: Seeded) -> None:
    before = _row_counts(engine)
    assert before["partner"] == 2  # the first seed is there

    with Session(engine) as session:
        created_again = seed_demo(session, seeded.gateway)

    assert created_again is False
    assert _row_counts(engine) == before
