"""Charging a subscription's due periods, each exactly once (ARCHITECTURE §1, §2).

A period is claimed under a row lock: the subscription row is locked (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, the write lock on SQLite), the period must still be due, and no
live or approved attempt may exist for it; then the attempt is committed and only then is
the processor called. An approved attempt and every effect of it (paid invoice, counters,
next date, receipt) commit together, so "approved" always means "advanced".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import update
from sqlmodel import Session, col, func, select

from app.domain import schedule as rules
from app.gateway.base import GatewayResult, PaymentGateway
from app.models import CustomerAccount, Partner, Payment, PaymentMethod, PaymentStatus, Subscription
from app.services import payments
from app.services.audit_log import add_event
from app.services.invoices import LineInput, add_invoice, apply_paid_amount
from app.services.notifications import write_email, write_receipt
from app.services.schedules import refresh_next_charge_date, schedule_of

MAX_RATE_LIMIT_RETRIES = 6
Acquire = Callable[[], None]


@dataclass(frozen=True)
class PeriodResult:
    """What happened to one subscription period (``status`` is charged, declined,
    error, unknown, in_progress, not_due or no_method)."""

    status: str
    subscription_id: int
    period: date | None = None
    amount: int = 0
    currency: str = ""
    message: str = ""
    payment_id: int | None = None
    rate_limited: int = 0
    email_ids: tuple[int, ...] = ()
    next_date: date | None = None  # after a charge: the next period's date (None: finished)


def _lock_subscription(session: Session, subscription_id: int) -> Subscription | None:
    if session.get_bind().dialect.name == "postgresql":
        query = (
            select(Subscription)
            .where(Subscription.id == subscription_id)
            .with_for_update(skip_locked=True)
        )
        return session.exec(query).first()
    # SQLite has no row locks: a no-op write takes the database write lock first.
    session.execute(
        update(Subscription)
        .where(col(Subscription.id) == subscription_id)
        .values(status=Subscription.status)
    )
    return session.get(Subscription, subscription_id, populate_existing=True)


def _period_attempts(session: Session, subscription_id: int, period: date) -> list[Payment]:
    return list(
        session.exec(
            select(Payment)
            .where(Payment.subscription_id == subscription_id, Payment.period_date == period)
            .where(col(Payment.is_recurring).is_(True))
            .order_by(Payment.id)
        ).all()
    )


def _method_for(session: Session, sub: Subscription) -> PaymentMethod | None:
    if sub.payment_method_id:
        method = session.get(PaymentMethod, sub.payment_method_id)
        if method is not None:
            return method
    return session.exec(
        select(PaymentMethod)
        .where(PaymentMethod.customer_account_id == sub.customer_account_id)
        .order_by(col(PaymentMethod.is_default).desc(), PaymentMethod.id)
    ).first()


def charge_next_period(
    session: Session,
    gateway: PaymentGateway,
    subscription_id: int,
    *,
    as_of: date,
    now: datetime,
    acquire: Acquire | None = None,
    base_url: str = "",
) -> PeriodResult:
    """Charge the subscription's next period if it is due on ``as_of``.

    Never raises for a decline or a lost answer (they are results). Returns
    ``in_progress`` when another worker holds the row or the period's attempt.
    """
    sub = _lock_subscription(session, subscription_id)
    if sub is None:
        session.rollback()
        return PeriodResult("in_progress", subscription_id)
    due = sub.next_charge_date
    if sub.status != rules.SubscriptionStatus.RECURRING or due is None or due > as_of:
        session.rollback()
        return PeriodResult("not_due", subscription_id, due)
    earlier = _period_attempts(session, subscription_id, due)
    live = [a for a in earlier if a.status in (*payments.OPEN_STATUSES, PaymentStatus.APPROVED)]
    if live:
        session.rollback()
        return _settle_live(session, gateway, live[-1], now=now, base_url=base_url)
    amount = rules.charge_amount(schedule_of(sub), amount_charged=sub.amount_charged)
    method = _method_for(session, sub)
    if method is None or amount <= 0:
        return _cannot_charge(session, sub, due, amount, method, now)
    account = session.get(CustomerAccount, sub.customer_account_id)
    assert account is not None
    spec = payments.AttemptSpec(
        partner_id=sub.partner_id,
        purpose_key=f"sub:{sub.id}:{due.isoformat()}:{len(earlier) + 1}",
        amount=amount,
        currency=sub.currency,
        method=method.kind,
        customer_account_id=sub.customer_account_id,
        subscription_id=sub.id,
        payment_method_id=method.id,
        brand=method.brand,
        last4=method.last4,
        is_recurring=True,
        period_date=due,
        gateway=gateway.name,
        detail={"source": "billing_run"},
    )
    # Commits the attempt, which also releases the subscription's lock.
    attempt, created = payments.open_attempt(session, spec)
    if not created:
        return PeriodResult(
            "in_progress", subscription_id, due, amount, sub.currency, payment_id=attempt.id
        )
    token, customer_ref = method.token, account.gateway_customer_ref
    result, limited = send_with_backoff(
        lambda: payments.charge(
            gateway, attempt, token=token, customer_ref=customer_ref, description=sub.description
        ),
        acquire,
    )
    return finish_period(session, attempt, result, now=now, base_url=base_url, rate_limited=limited)


def send_with_backoff(
    call: Callable[[], GatewayResult], acquire: Acquire | None
) -> tuple[GatewayResult, int]:
    """Send ``call`` through the shared rate limit, retrying 429s with backoff.

    The same idempotency key is reused by every retry. Returns the result and how many
    rate-limit answers were met.
    """
    limited = 0
    while True:
        if acquire is not None:
            acquire()
        result = call()
        if result.decline_code != "rate_limited" or limited >= MAX_RATE_LIMIT_RETRIES:
            return result, limited
        limited += 1
        time.sleep(min(2.0, 0.05 * 2**limited))


def _cannot_charge(
    session: Session,
    sub: Subscription,
    due: date,
    amount: int,
    method: PaymentMethod | None,
    now: datetime,
) -> PeriodResult:
    if amount <= 0:
        # Nothing owed for this period (the balance is paid): skip it without a charge.
        sub.first_period += 1
        refresh_next_charge_date(sub)
        sub.updated_at = now
        session.add(sub)
        session.commit()
        return PeriodResult(
            "not_due", sub.id, due, 0, sub.currency, "Nothing owed for this period."
        )  # type: ignore[arg-type]
    sub.status = rules.SubscriptionStatus.ERROR
    sub.last_error = "No payment method on file."
    sub.updated_at = now
    session.add(sub)
    session.commit()
    assert method is None
    return PeriodResult("no_method", sub.id, due, amount, sub.currency, sub.last_error)  # type: ignore[arg-type]


def _settle_live(
    session: Session, gateway: PaymentGateway, attempt: Payment, *, now: datetime, base_url: str
) -> PeriodResult:
    """A period that already has an attempt: settle a lost or abandoned one by asking."""
    sub_id = attempt.subscription_id or 0
    if attempt.status == PaymentStatus.APPROVED:  # cannot stay due once approved; be safe
        return PeriodResult(
            "charged",
            sub_id,
            attempt.period_date,
            attempt.amount,
            attempt.currency,
            payment_id=attempt.id,
        )
    if attempt.status == PaymentStatus.PENDING and not payments.is_stale(attempt, now):
        return PeriodResult(
            "in_progress", sub_id, attempt.period_date, attempt.amount, attempt.currency
        )
    result = payments.ask_gateway(gateway, attempt)
    if result is None:
        if attempt.status == PaymentStatus.UNKNOWN or not payments.is_stale(attempt, now):
            return PeriodResult(
                "unknown", sub_id, attempt.period_date, attempt.amount, attempt.currency
            )
        # The worker died before the processor was reached: send it now, with its own key.
        method = session.get(PaymentMethod, attempt.payment_method_id)
        account = session.get(CustomerAccount, attempt.customer_account_id)
        session.rollback()
        if method is None or account is None:
            return PeriodResult(
                "error", sub_id, attempt.period_date, message="Payment method missing."
            )
        result = payments.charge(
            gateway, attempt, token=method.token, customer_ref=account.gateway_customer_ref
        )
    return finish_period(session, attempt, result, now=now, base_url=base_url)


def finish_period(
    session: Session,
    attempt: Payment,
    result: GatewayResult,
    *,
    now: datetime,
    base_url: str = "",
    rate_limited: int = 0,
) -> PeriodResult:
    """Record the processor's answer for a period attempt and apply its effects (commits)."""
    sub_id = attempt.subscription_id or 0
    if not payments.claim_outcome(session, attempt, result, now=now):
        session.rollback()
        settled = session.get(Payment, attempt.id, populate_existing=True)
        assert settled is not None
        return PeriodResult(
            status_word(settled.status),
            sub_id,
            settled.period_date,
            settled.amount,
            settled.currency,
        )
    email_ids: list[int] = []
    if result.approved:
        email_ids = apply_period_charge(session, attempt)
    elif result.status == "declined" or (result.status == "error" and not result.retryable):
        # A retryable processor error (5xx, 429) is not the customer's decline: the
        # period stays due and the next run tries again under a new key.
        email_ids = record_decline(session, attempt, result, now=now, base_url=base_url)
    sub = session.get(Subscription, attempt.subscription_id)
    next_date = sub.next_charge_date if sub is not None else None
    session.commit()
    return PeriodResult(
        status_word(attempt.status),
        sub_id,
        attempt.period_date,
        attempt.amount,
        attempt.currency,
        "" if result.approved else result.message,
        attempt.id,
        rate_limited,
        tuple(email_ids),
        next_date,
    )


def status_word(status: str) -> str:
    """The result word for an attempt's status (approved is "charged")."""
    return {PaymentStatus.APPROVED: "charged", PaymentStatus.PENDING: "in_progress"}.get(
        status, status
    )


def apply_period_charge(session: Session, attempt: Payment) -> list[int]:
    """Every effect of an approved recurring charge, in the caller's transaction.

    A paid invoice, the counters and the next charge date (``complete`` at the stop rule),
    and a receipt email. Returns the email row ids.
    """
    sub = session.get(Subscription, attempt.subscription_id, populate_existing=True)
    assert sub is not None
    account = session.get(CustomerAccount, sub.customer_account_id)
    partner = session.get(Partner, sub.partner_id)
    assert account is not None and partner is not None
    period = attempt.period_date or attempt.created_at.date()
    invoice = add_invoice(
        session,
        partner=partner,
        account=account,
        lines=[LineInput(f"{sub.description} — {period:%b %-d, %Y}", 1, attempt.amount)],
        issue_date=period,
        due_date=period,
        subscription_id=sub.id,
        prices_include_tax=True,
    )
    apply_paid_amount(invoice, invoice.total)
    session.add(invoice)
    attempt.invoice_id = invoice.id
    session.add(attempt)
    sub.recurring_count += 1
    sub.amount_charged += attempt.amount
    sub.last_error = ""
    refresh_next_charge_date(sub)
    session.add(sub)
    session.flush()
    return write_receipt(
        session, attempt, to_address=account.billing_email or account.email, partner=partner
    )


def record_decline(
    session: Session, attempt: Payment, result: GatewayResult, *, now: datetime, base_url: str
) -> list[int]:
    """Put the attempt's subscription in ``error`` and email the customer and the partner.

    In the caller's transaction (no commit); returns the email row ids.
    """
    sub = session.get(Subscription, attempt.subscription_id, populate_existing=True)
    assert sub is not None
    account = session.get(CustomerAccount, sub.customer_account_id)
    partner = session.get(Partner, sub.partner_id)
    assert account is not None and partner is not None
    sub.status = rules.SubscriptionStatus.ERROR
    sub.last_error = result.message or "The payment was declined."
    sub.updated_at = now
    session.add(sub)
    add_event(
        session, action="subscription.charge_declined", subject_type="subscription",
        subject_id=sub.id, partner_id=sub.partner_id, customer_account_id=account.id,
        actor_label="billing run", at=now,
        detail={"payment_id": attempt.id, "period": str(attempt.period_date),
                "amount": attempt.amount, "reason": sub.last_error},
    )  # fmt: skip
    session.flush()
    context = {"subscription": sub, "account": account, "partner": partner, "attempt": attempt,
               "reason": sub.last_error, "update_url": f"{base_url}/portal/"}  # fmt: skip
    to_customer = write_email(
        session,
        template="payment_failed",
        dedupe_key=f"payment_failed:customer:{attempt.id}",
        to_address=account.billing_email or account.email,
        subject=f"Your payment to {partner.name} was declined",
        partner_id=partner.id,
        audience="customer",
        **context,
    )
    ids = [to_customer.id]
    partner_addresses = partner_admin_addresses(session, partner.id)  # type: ignore[arg-type]
    if partner_addresses:
        to_partner = write_email(
            session,
            template="payment_failed",
            dedupe_key=f"payment_failed:partner:{attempt.id}",
            to_address=", ".join(partner_addresses),
            subject=f"Declined: {account.name} — {sub.description}",
            partner_id=partner.id,
            audience="partner",
            **context,
        )
        ids.append(to_partner.id)
    return [i for i in ids if i is not None]


def partner_admin_addresses(session: Session, partner_id: int) -> list[str]:
    """The email addresses of the partner's active admins (who get its notices)."""
    from app.models import Role, User

    rows = session.exec(
        select(User.email).where(
            User.partner_id == partner_id,
            User.role == Role.PARTNER_ADMIN,
            col(User.is_active).is_(True),
        )
    ).all()
    return list(rows)


def due_subscription_ids(session: Session, *, partner_id: int, as_of: date) -> list[int]:
    """Ids of the partner's subscriptions due on ``as_of`` (by the status/date index)."""
    rows = session.exec(
        select(Subscription.id)
        .where(
            Subscription.status == rules.SubscriptionStatus.RECURRING,
            col(Subscription.next_charge_date) <= as_of,
            Subscription.partner_id == partner_id,
        )
        .order_by(Subscription.next_charge_date, Subscription.id)
    ).all()
    return [int(r) for r in rows]


def count_attempts(session: Session, subscription_id: int) -> int:
    """How many recurring attempts the subscription has (for tests and reports)."""
    return int(
        session.exec(
            select(func.count())
            .select_from(Payment)
            .where(Payment.subscription_id == subscription_id)
        ).one()
    )
