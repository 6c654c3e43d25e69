"""Settling lost answers and comparing Portico's ledger with the processor's.

An attempt whose answer was lost (``unknown``) or whose worker died (``pending`` for more
than a few minutes) is settled by asking the processor by its idempotency key, never by
charging again; the effects of an approval are then applied exactly as if the answer had
arrived in time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from app.gateway.base import GatewayResult, PaymentGateway
from app.models import Partner, Payment, PaymentKind, PaymentStatus, Widget
from app.services import payments


@dataclass(frozen=True)
class Difference:
    purpose_key: str
    ours: str
    theirs: str
    note: str


def open_attempts(session: Session, *, now: datetime) -> list[Payment]:
    """Attempts whose outcome Portico does not know: unknown, or pending and stale."""
    rows = session.exec(
        select(Payment)
        .where(col(Payment.status).in_(payments.OPEN_STATUSES), Payment.gateway != "")
        .order_by(Payment.id)
    ).all()
    return [p for p in rows if p.status == PaymentStatus.UNKNOWN or payments.is_stale(p, now)]


def settle(
    session: Session, gateway: PaymentGateway, attempt: Payment, *, now: datetime
) -> tuple[str, list[int]]:
    """Settle one open attempt from the processor's records (commits).

    Returns (what happened, email ids to enqueue). When the processor has no record the
    money never moved: the attempt becomes ``error`` with no other effect (no decline, no
    email, the schedule untouched), so its purpose may be tried afresh.
    """
    result = payments.ask_gateway(gateway, attempt)
    if result is None:
        nothing = GatewayResult(
            status="error",
            operation="charge",
            amount=attempt.amount,
            currency=attempt.currency,
            decline_code="not_received",
            message="The processor has no record of this payment; nothing was charged.",
            retryable=True,
        )
        # An order or a scheduled payment must leave ``processing`` (and the customer
        # hear that their scheduled payment did not go through).
        if attempt.order_id is not None or attempt.detail.get("source") == "scheduled_payment":
            return apply_outcome(session, attempt, nothing, now=now, gateway=gateway)
        if not payments.claim_outcome(session, attempt, nothing, now=now):
            session.rollback()
            return "already settled", []
        session.commit()
        return str(attempt.status), []
    return apply_outcome(session, attempt, result, now=now, gateway=gateway)


def apply_outcome(
    session: Session,
    attempt: Payment,
    result: GatewayResult,
    *,
    now: datetime,
    gateway: PaymentGateway | None = None,
) -> tuple[str, list[int]]:
    """Record a late answer and apply the effects its purpose calls for (commits).

    ``gateway`` lets an approved recurring widget payment find the processor customer
    its card was saved to, so the billing run can charge that card later.
    """
    source = str(attempt.detail.get("source", ""))
    if attempt.subscription_id and attempt.is_recurring and source == "billing_run":
        from app.services.subscription_billing import finish_period

        outcome = finish_period(session, attempt, result, now=now)
        return outcome.status, list(outcome.email_ids)
    if source == "refund":
        from app.services.refunds import finish_refund

        refund = finish_refund(session, attempt, result, now=now)
        return refund.status, list(refund.email_ids)
    if source == "order":
        from app.services.order_payments import finish_order_payment

        order = finish_order_payment(session, attempt, result, now=now, gateway=gateway)
        return order.status, list(order.email_ids)
    if source == "order_hold":
        from app.services.order_holds import finish_hold

        hold = finish_hold(session, attempt, result, now=now)
        return hold.status, list(hold.email_ids)
    if source == "manual_charge":
        from app.services.manual_charges import finish_manual_charge

        manual = finish_manual_charge(session, attempt, result, now=now)
        return manual.status, list(manual.email_ids)
    if source == "scheduled_payment":
        from app.services.scheduled_payments import finish_scheduled_payment

        scheduled = finish_scheduled_payment(session, attempt, result, now=now)
        return scheduled.status, list(scheduled.email_ids)
    if source == "portal_join":
        from app.services.portal_catalog import finish_join

        joined = finish_join(session, attempt, result, now=now)
        return joined.status, list(joined.email_ids)
    if not payments.claim_outcome(session, attempt, result, now=now):
        session.rollback()
        return "already settled", []
    email_ids: list[int] = []
    if result.approved and source == "widget":
        from app.services.widget_effects import apply_widget_payment
        from app.services.widget_payments import widget_customer_ref

        widget = session.get(Widget, attempt.detail.get("widget_id"))
        partner = session.get(Partner, attempt.partner_id)
        assert widget is not None and partner is not None
        customer_ref = widget_customer_ref(gateway, attempt) if gateway is not None else ""
        email_ids = apply_widget_payment(
            session, attempt, widget, partner, customer_ref, now.date()
        )
    elif result.approved and source == "paylink":
        from app.services.pay_links import apply_invoice_payment

        email_ids = apply_invoice_payment(session, attempt)
    session.commit()
    return str(attempt.status), email_ids


def verify(session: Session, gateway: PaymentGateway) -> list[Difference]:
    """Every difference between Portico's charges and the processor's records."""
    differences: list[Difference] = []
    ours = session.exec(
        select(Payment).where(Payment.kind == PaymentKind.CHARGE, Payment.gateway == gateway.name)
    ).all()
    # Every attempt of ours counts as known, holds and captures of orders included.
    known = set(
        session.exec(select(Payment.idempotency_key).where(Payment.gateway == gateway.name)).all()
    )
    for payment in ours:
        known.add(payment.idempotency_key)
        remote = gateway.retrieve(idempotency_key=payment.idempotency_key)
        theirs = remote.status if remote else "none"
        if payment.status == PaymentStatus.APPROVED and (remote is None or not remote.approved):
            differences.append(
                Difference(payment.purpose_key, payment.status, theirs, "approved here, not there")
            )
        elif payment.status != PaymentStatus.APPROVED and remote is not None and remote.approved:
            differences.append(
                Difference(payment.purpose_key, payment.status, theirs, "approved there, not here")
            )
        elif remote is not None and remote.approved and remote.amount != payment.amount:
            differences.append(
                Difference(
                    payment.purpose_key, str(payment.amount), str(remote.amount), "amounts differ"
                )
            )
    list_charges = getattr(gateway, "list_charges", None)
    if list_charges is not None:
        for charge in list_charges():
            key = getattr(charge, "idempotency_key", "")
            if (
                key
                and key.startswith("portico:")
                and key not in known
                and getattr(charge, "status", "") != "failed"
            ):
                differences.append(
                    Difference(
                        key.removeprefix("portico:"), "none", "charged", "unknown to Portico"
                    )
                )
    return differences
