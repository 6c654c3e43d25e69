"""Shared set-up for billing-engine tests: a partner, customers with saved sandbox cards,
subscription rows, billing runs, and the ledger-versus-processor comparison.

Everything goes through the real services and the sandbox processor (the boundary fake);
subscriptions are built as rows because the tests need schedules that start in the past
or far in the future, which the partner form rightly refuses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, time

from flask import Flask
from sqlmodel import Session, col, select

from app.clock import utcnow
from app.gateway.base import CardDetails
from app.gateway.sandbox import SandboxGateway
from app.models import (
    BillingRun,
    CustomerAccount,
    Partner,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Role,
    Subscription,
    User,
)
from app.services import payments
from app.services.billing_run import process_chunk, start_run
from app.services.reconcile import verify
from app.services.schedules import refresh_next_charge_date

VISA = "4242424242424242"
DECLINES_WHEN_CHARGED = "4000000000000341"
ADMIN_EMAIL = "admin@harbor.example"


def sandbox(app: Flask) -> SandboxGateway:
    gateway = app.extensions["portico"].gateway
    assert isinstance(gateway, SandboxGateway)
    return gateway


def at_three(day: date) -> datetime:
    """The instant the billing run of ``day`` starts (03:00 UTC, the default hour)."""
    return datetime.combine(day, time(3), tzinfo=UTC)


def make_partner(session: Session, slug: str = "harbor") -> Partner:
    """A US partner (UTC, USD, no tax) with one partner admin, who gets decline emails."""
    partner = Partner(name="Harbor Sailing Club", slug=slug, country="US", timezone="UTC")
    session.add(partner)
    session.flush()
    session.add(
        User(
            email=f"admin@{slug}.example",
            name="Harbor Admin",
            password_hash="not-a-real-hash",
            role=Role.PARTNER_ADMIN,
            partner_id=partner.id,
        )
    )
    session.commit()
    return partner


def partner_admin(session: Session, partner: Partner) -> User:
    """The partner admin ``make_partner`` created (who presses the partner's buttons)."""
    return session.exec(
        select(User).where(User.partner_id == partner.id, User.role == Role.PARTNER_ADMIN)
    ).one()


def save_card(
    session: Session,
    gateway: SandboxGateway,
    account: CustomerAccount,
    number: str = VISA,
) -> PaymentMethod:
    """Tokenize a test card, attach it to the account's processor customer, keep the row."""
    if not account.gateway_customer_ref:
        account.gateway_customer_ref = gateway.create_customer(
            email=account.email, name=account.name, idempotency_key=f"customer:{account.id}"
        )
        session.add(account)
    token = gateway.tokenize_card(
        CardDetails(number=number, exp_month=12, exp_year=utcnow().year + 6, cvc="123")
    )
    saved = gateway.attach_payment_method(
        customer_ref=account.gateway_customer_ref, token=token.token
    )
    method = PaymentMethod(
        partner_id=account.partner_id,
        customer_account_id=account.id,  # type: ignore[arg-type]
        gateway=gateway.name,
        token=saved.token,
        kind="card",
        brand=saved.brand,
        last4=saved.last4,
        exp_month=saved.exp_month,
        exp_year=saved.exp_year,
        is_default=True,
    )
    session.add(method)
    session.commit()
    return method


def make_customer(
    session: Session, gateway: SandboxGateway, partner: Partner, name: str, number: str = VISA
) -> tuple[CustomerAccount, PaymentMethod]:
    """A customer account of ``partner`` with one saved card (its default)."""
    slug = name.lower().replace(" ", "-")
    account = CustomerAccount(
        partner_id=partner.id,  # type: ignore[arg-type]
        name=name,
        email=f"{slug}@customers.example",
        currency=partner.currency,
    )
    session.add(account)
    session.commit()
    return account, save_card(session, gateway, account, number)


def add_subscription(
    session: Session,
    account: CustomerAccount,
    method: PaymentMethod,
    *,
    frequency: str,
    start_date: date,
    description: str = "Membership",
    charge_day: int | None = None,
    stop_rule: str = "unending",
    end_date: date | None = None,
    stop_count: int | None = None,
    total_amount: int | None = None,
    manual_amount: int | None = 1000,
) -> Subscription:
    """A recurring subscription row with its derived next charge date."""
    sub = Subscription(
        partner_id=account.partner_id,
        customer_account_id=account.id,  # type: ignore[arg-type]
        payment_method_id=method.id,
        description=description,
        frequency=frequency,
        currency=account.currency,
        start_date=start_date,
        charge_day=charge_day,
        stop_rule=stop_rule,
        end_date=end_date,
        stop_count=stop_count,
        total_amount=total_amount,
        manual_amount=manual_amount,
    )
    refresh_next_charge_date(sub)
    session.add(sub)
    session.commit()
    return sub


def due_customers(
    session: Session, gateway: SandboxGateway, partner: Partner, count: int, *, due: date
) -> list[Subscription]:
    """``count`` monthly subscriptions (one customer each) whose first charge is ``due``."""
    subs = []
    for i in range(count):
        account, method = make_customer(session, gateway, partner, f"Member {i:03d}")
        subs.append(
            add_subscription(
                session,
                account,
                method,
                frequency="monthly",
                start_date=due,
                manual_amount=1000 + i,
            )  # fmt: skip
        )
    return subs


def run_billing(
    session: Session,
    gateway: SandboxGateway,
    partner_id: int,
    day: date,
    *,
    now: datetime | None = None,
    acquire: Callable[[], None] | None = None,
    base_url: str = "http://localhost",
) -> BillingRun:
    """Start (or resume) the partner's run for ``day`` and process its chunks here."""
    plan = start_run(session, partner_id=partner_id, run_date=day, chunk_size=50)
    for chunk in plan.chunks:
        process_chunk(
            session,
            gateway,
            run_id=plan.run.id,  # type: ignore[arg-type]
            subscription_ids=chunk,
            now=now or utcnow(),
            acquire=acquire,
            base_url=base_url,
        )
    run = session.get(BillingRun, plan.run.id, populate_existing=True)
    assert run is not None
    return run


def approved_recurring(session: Session) -> list[Payment]:
    session.rollback()
    return list(
        session.exec(
            select(Payment)
            .where(Payment.status == PaymentStatus.APPROVED, col(Payment.is_recurring).is_(True))
            .order_by(Payment.subscription_id, Payment.period_date)
        ).all()
    )


def charge_by_hand(
    session: Session, gateway: SandboxGateway, sub: Subscription, amount: int, *, key: str
) -> Payment:
    """A person's "Charge now": a non-recurring charge that counts against the total.

    Goes through the payments service exactly once per ``key`` like any attempt, then
    applies what a manual charge changes on the schedule: ``amount_charged`` (so the
    balance and a balance-due stop follow) and the derived next charge date. It is not a
    recurring charge, so the period counters do not move.
    """
    method = session.get(PaymentMethod, sub.payment_method_id)
    account = session.get(CustomerAccount, sub.customer_account_id)
    assert method is not None and account is not None
    attempt, created = payments.open_attempt(
        session,
        payments.AttemptSpec(
            partner_id=sub.partner_id,
            purpose_key=f"manual:{sub.id}:{key}",
            amount=amount,
            currency=sub.currency,
            method=method.kind,
            customer_account_id=account.id,
            subscription_id=sub.id,
            payment_method_id=method.id,
            is_recurring=False,
            gateway=gateway.name,
            detail={"source": "manual"},
        ),
    )
    assert created
    result = payments.charge(
        gateway, attempt, token=method.token, customer_ref=account.gateway_customer_ref
    )
    assert result.approved, result
    assert payments.claim_outcome(session, attempt, result, now=utcnow())
    fresh = session.get(Subscription, sub.id, populate_existing=True)
    assert fresh is not None
    fresh.amount_charged += amount
    refresh_next_charge_date(fresh)
    session.add(fresh)
    session.commit()
    return attempt


def assert_ledger_matches_processor(session: Session, gateway: SandboxGateway) -> None:
    """The processor's money and Portico's approved charges agree, one to one.

    Every succeeded sandbox charge has exactly one approved Payment with its key and
    amount, every approved Payment has its succeeded charge, no (subscription, period)
    holds two approved recurring charges, and ``verify`` lists no difference.
    """
    session.rollback()
    succeeded = [c for c in gateway.list_charges() if c.status == "succeeded"]
    approved = session.exec(
        select(Payment).where(Payment.status == PaymentStatus.APPROVED, Payment.kind == "charge")
    ).all()
    theirs = Counter((c.idempotency_key, c.amount) for c in succeeded)
    ours = Counter((p.idempotency_key, p.amount) for p in approved)
    assert theirs == ours
    assert max(theirs.values(), default=1) == 1
    periods = Counter((p.subscription_id, p.period_date) for p in approved if p.is_recurring)
    assert [k for k, n in periods.items() if n > 1] == []
    assert verify(session, gateway) == []
