"""Orders for service tests: built from rows (the builder has its own tests), paid through
the real order services and the sandbox processor."""

from __future__ import annotations

from datetime import UTC, date, datetime

from flask import Flask
from sqlmodel import Session, col, select

from app.domain.orders import line_amounts
from app.gateway.base import CardDetails, TokenizedMethod
from app.models import (
    AuditEvent,
    CustomerAccount,
    Order,
    OrderLine,
    Partner,
    Payment,
    PaymentMethod,
    User,
)
from app.services.invoices import tax_rate_for
from app.services.order_payments import CardChoice, OrderPaymentOutcome, submit_order

NOW = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
TODAY = date(2026, 11, 21)  # NOW in New York
GOOD = "4242424242424242"
DECLINES = "4000000000000002"


def find_user(db: Session, email: str) -> User:
    return db.exec(select(User).where(User.email == email)).one()


def new_customer(db: Session, partner_id: int, name: str = "Nora Quist") -> CustomerAccount:
    """A customer of the partner with no card on file."""
    partner = db.get(Partner, partner_id)
    assert partner is not None
    slug = name.lower().replace(" ", ".")
    account = CustomerAccount(
        partner_id=partner_id, name=name, email=f"{slug}@example.net", currency=partner.currency
    )
    db.add(account)
    db.commit()
    return account


def make_order(
    db: Session,
    account: CustomerAccount,
    lines: list[tuple[str, int, int, str, date]],
    *,
    by: User,
    status: str = "draft",
) -> Order:
    """An order with ``lines`` of (description, quantity, unit price, frequency, date)."""
    partner = db.get(Partner, account.partner_id)
    assert partner is not None
    rate = tax_rate_for(account, partner)
    sequence = (
        db.exec(select(Order.sequence).order_by(col(Order.sequence).desc())).first() or 0
    ) + 1
    order = Order(
        partner_id=account.partner_id,
        customer_account_id=account.id,  # type: ignore[arg-type]
        sequence=sequence,
        number=f"SO-TEST-{sequence}",
        status=status,
        currency=account.currency,
        created_by_user_id=by.id,
        activation_date=min(day for *_rest, day in lines),
    )
    db.add(order)
    db.flush()
    for position, (description, quantity, price, frequency, day) in enumerate(lines):
        net, tax = line_amounts(quantity, price, rate)
        order.subtotal += net
        order.tax += tax
        db.add(
            OrderLine(
                order_id=order.id,  # type: ignore[arg-type]
                position=position,
                description=description,
                quantity=quantity,
                unit_amount=price,
                tax_rate_bp=rate,
                amount=net,
                tax_amount=tax,
                frequency=frequency,
                activation_date=day,
            )
        )
    order.total = order.subtotal + order.tax
    db.add(order)
    db.commit()
    return order


def new_card(app: Flask, number: str = GOOD) -> TokenizedMethod:
    gateway = app.extensions["portico"].gateway
    return gateway.tokenize_card(CardDetails(number, 12, 2034, "123", "Nora Quist"))


def submit(
    app: Flask,
    db: Session,
    user: User,
    order: Order,
    *,
    choice: str = "charge",
    card: CardChoice,
    sequence: int | None = None,
    now: datetime = NOW,
) -> OrderPaymentOutcome:
    fresh = db.get(Order, order.id, populate_existing=True)
    assert fresh is not None
    return submit_order(
        db,
        app.extensions["portico"].gateway,
        user,
        order.id,  # type: ignore[arg-type]
        choice=choice,
        card=card,
        sequence=sequence if sequence is not None else fresh.submit_count + 1,
        now=now,
        as_of=now.date(),
    )


def reload(db: Session, order: Order) -> Order:
    db.rollback()
    fresh = db.get(Order, order.id, populate_existing=True)
    assert fresh is not None
    return fresh


def history(db: Session, order: Order) -> list[str]:
    rows = db.exec(
        select(AuditEvent.action)
        .where(AuditEvent.subject_type == "order", AuditEvent.subject_id == order.id)
        .order_by(col(AuditEvent.id))
    ).all()
    return list(rows)


def order_payments(db: Session, order: Order) -> list[Payment]:
    return list(
        db.exec(select(Payment).where(Payment.order_id == order.id).order_by(col(Payment.id)))
    )


def cards_of(db: Session, account: CustomerAccount) -> list[PaymentMethod]:
    query = select(PaymentMethod).where(PaymentMethod.customer_account_id == account.id)
    return list(db.exec(query.order_by(col(PaymentMethod.id))))


def processor_calls(app: Flask, order: Order) -> list:
    gateway = app.extensions["portico"].gateway
    return [c for c in gateway.list_charges() if f"order:{order.id}:" in c.idempotency_key]
