"""Charging customers' scheduled invoice payments on their day (the billing run's part).

A scheduled payment (``ScheduledPayment``, made in the portal by
:mod:`app.services.payment_scheduling`) is charged by the billing run of its ``pay_on``
day, or by the first run after it when days were missed. Money moves exactly once
(ARCHITECTURE §2): under the row's lock the row becomes ``processing`` and its attempt
(purpose key ``sched:{id}``) is committed in the same transaction; the processor is
called with no transaction open; :func:`finish_scheduled_payment` applies the outcome
(invoice paid and receipt, or ``failed`` and an email) in one transaction. A second
run, a second worker or a re-run after a crash finds the row ``processing`` or its
attempt already there, and never charges again. A lost answer leaves the row
``processing``; the reconciler, or the next run, settles it by asking the processor.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from sqlmodel import Session, col, func, select

from app.gateway.base import GatewayResult, PaymentGateway
from app.models import (
    CustomerAccount,
    Invoice,
    Partner,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
    ScheduledPayment,
    ScheduledStatus,
)
from app.services import payments
from app.services.billing_run import add_outside_charges
from app.services.notifications import write_email
from app.services.pay_links import PAYABLE, apply_invoice_payment
from app.services.scheduled_rows import (
    LIVE,
    audit,
    lock_invoice,
    lock_scheduled,
    purpose_key,
)
from app.services.subscription_access import default_method
from app.services.subscription_billing import Acquire, send_with_backoff

SOURCE: Final = "scheduled_payment"
SETTLED_BEFORE: Final = "The invoice was settled before this date"
NO_METHOD: Final = "No payment method on file."
# The run's tally word for each outcome (the CLI and the BillingRun counters use them).
TALLY: Final = {
    ScheduledStatus.PAID: "charged",
    ScheduledStatus.FAILED: "declined",
    ScheduledStatus.PROCESSING: "unknown",
    ScheduledStatus.CANCELED: "canceled",
}


@dataclass(frozen=True)
class ScheduledOutcome:
    """What happened to one scheduled payment.

    ``status`` is the row's status afterwards (paid, failed, processing, canceled), or
    ``skipped`` when this call did nothing (another worker holds it, not due, already
    handled). ``email_ids`` are outbox rows to enqueue after the commit.
    """

    status: str
    scheduled_payment_id: int
    amount: int = 0
    currency: str = ""
    message: str = ""
    payment_id: int | None = None
    rate_limited: int = 0
    email_ids: tuple[int, ...] = ()
    decline_status: str = ""  # declined | error, for a failed one


def due_scheduled_payments(
    session: Session, *, partner_id: int, as_of: date
) -> list[ScheduledPayment]:
    """The partner's payments a run of ``as_of`` looks at: scheduled on or before it, and
    ``processing`` ones (to settle a lost answer or a crashed worker's attempt)."""
    return list(
        session.exec(
            select(ScheduledPayment)
            .where(
                ScheduledPayment.partner_id == partner_id,
                col(ScheduledPayment.status).in_(LIVE),
                col(ScheduledPayment.pay_on) <= as_of,
            )
            .order_by(ScheduledPayment.pay_on, ScheduledPayment.id)
        ).all()
    )


def charge_due_scheduled_payments(
    session: Session,
    gateway: PaymentGateway,
    *,
    partner_id: int,
    as_of: date,
    now: datetime,
    base_url: str = "",
    acquire: Acquire | None = None,
    on_email: Callable[[list[int]], None] | None = None,
) -> Counter[str]:
    """Charge every payment the partner's customers scheduled on or before ``as_of``.

    Each is charged at most once (see the module docstring); the outcomes are counted
    into the partner's billing run of ``as_of`` when there is one. ``on_email`` gets the
    ids of the emails written, after each commit. Returns the tally (charged, declined,
    unknown, canceled, skipped). Raises nothing for declines or lost answers.
    """
    rows = [r.id for r in due_scheduled_payments(session, partner_id=partner_id, as_of=as_of)]
    session.rollback()
    tally: Counter[str] = Counter()
    for scheduled_id in rows:
        outcome = charge_scheduled_payment(
            session, gateway, scheduled_id, as_of=as_of, now=now, base_url=base_url,
            acquire=acquire,
        )  # fmt: skip
        word = TALLY.get(outcome.status, "skipped")  # type: ignore[call-overload]
        if word == "declined" and outcome.decline_status == PaymentStatus.ERROR:
            word = "errors"
        tally[word] += 1
        tally["rate_limited"] += outcome.rate_limited
        if word in ("charged", "declined", "errors", "unknown"):
            totals = {outcome.currency: outcome.amount} if word == "charged" else {}
            add_outside_charges(
                session, partner_id=partner_id, run_date=as_of,
                counts=Counter({word: 1, "rate_limited": outcome.rate_limited}), totals=totals,
            )  # fmt: skip
        if on_email and outcome.email_ids:
            on_email(list(outcome.email_ids))
    return +tally


def charge_scheduled_payment(
    session: Session,
    gateway: PaymentGateway,
    scheduled_id: int,
    *,
    as_of: date,
    now: datetime,
    base_url: str = "",
    acquire: Acquire | None = None,
) -> ScheduledOutcome:
    """Charge one scheduled payment if it is due on ``as_of`` (see the module docstring).

    The invoice is read again under its lock: settled meanwhile → ``canceled`` without a
    charge; a smaller balance → the balance is charged (never more than is due). A row
    already ``processing`` is settled by asking the processor. Never raises for a
    decline or a lost answer.
    """
    row = lock_scheduled(session, scheduled_id, skip_locked=True)
    if row is None or row.pay_on > as_of or row.status not in LIVE:
        session.rollback()
        return ScheduledOutcome("skipped", scheduled_id)
    if row.status == ScheduledStatus.PROCESSING:
        return _settle_processing(
            session, gateway, row, now=now, base_url=base_url, acquire=acquire
        )
    invoice = lock_invoice(session, row.invoice_id)
    if invoice.status not in PAYABLE or invoice.balance <= 0:
        row.status, row.canceled_at, row.failure_reason = (
            ScheduledStatus.CANCELED, now, SETTLED_BEFORE,
        )  # fmt: skip
        session.add(row)
        audit(session, row, "canceled", reason=SETTLED_BEFORE, invoice=invoice.number)
        session.commit()
        return ScheduledOutcome(row.status, scheduled_id, row.amount, row.currency, SETTLED_BEFORE)
    # Another payment of this invoice may be on its way to the processor right now.
    amount = min(row.amount, invoice.balance - _in_flight(session, invoice.id))  # type: ignore[arg-type]
    if amount <= 0:
        session.rollback()  # the next run looks again, once that payment has settled
        return ScheduledOutcome("skipped", scheduled_id, message="Another payment is in flight.")
    method = _method_for(session, row)
    account = session.get(CustomerAccount, row.customer_account_id)
    assert account is not None
    if method is None:
        return _fail_without_charge(session, row, base_url=base_url)
    spec = payments.AttemptSpec(
        partner_id=row.partner_id,
        purpose_key=purpose_key(scheduled_id),
        amount=amount,
        currency=row.currency,
        method=method.kind,
        kind=PaymentKind.CHARGE,
        customer_account_id=row.customer_account_id,
        invoice_id=row.invoice_id,
        payment_method_id=method.id,
        brand=method.brand,
        last4=method.last4,
        gateway=gateway.name,
        detail={
            "source": SOURCE,
            "scheduled_payment_id": scheduled_id,
            "invoice_url": _invoice_url(base_url, row.invoice_id),
        },
    )

    def mark_processing(tx: Session) -> None:
        # Committed together with the attempt: "processing" always has its attempt.
        row.status, row.amount = ScheduledStatus.PROCESSING, amount
        tx.add(row)

    token, customer_ref = method.token, account.gateway_customer_ref
    description = f"Invoice {invoice.number}"
    attempt, created = payments.open_attempt(session, spec, precheck=mark_processing)
    if not created:
        return ScheduledOutcome("skipped", scheduled_id, payment_id=attempt.id)
    result, limited = send_with_backoff(
        lambda: payments.charge(
            gateway, attempt, token=token, customer_ref=customer_ref, description=description
        ),
        acquire,
    )
    return finish_scheduled_payment(
        session, attempt, result, now=now, base_url=base_url, rate_limited=limited
    )


def finish_scheduled_payment(
    session: Session,
    attempt: Payment,
    result: GatewayResult,
    *,
    now: datetime,
    base_url: str = "",
    rate_limited: int = 0,
) -> ScheduledOutcome:
    """Record the processor's answer for a scheduled payment's attempt (commits).

    Approved: the invoice payment's effects (amount paid, receipt, service restored when
    settled) and the row ``paid``. Declined or error: the row ``failed`` with the reason
    and an email to the customer with a link to pay. Unknown: the row stays
    ``processing`` for the reconciler. A second call for the same attempt changes
    nothing (the outcome is claimed once). Raises nothing.
    """
    scheduled_id = int(attempt.detail["scheduled_payment_id"])
    if not payments.claim_outcome(session, attempt, result, now=now):
        session.rollback()  # settled by someone else, who applied its effects
        return ScheduledOutcome(
            "skipped", scheduled_id, attempt.amount, attempt.currency, "Already settled.",
            attempt.id,
        )  # fmt: skip
    row = lock_scheduled(session, scheduled_id)
    assert row is not None
    email_ids: list[int] = []
    if result.approved:
        email_ids = apply_invoice_payment(session, attempt)
        row.status, row.payment_id, row.failure_reason = ScheduledStatus.PAID, attempt.id, ""
        audit(session, row, "paid", payment=f"PAY-{attempt.id:06d}")
    elif result.status in (PaymentStatus.DECLINED, PaymentStatus.ERROR):
        reason = result.message or "The payment was declined."
        email_ids = _record_failure(session, row, reason, attempt=attempt, base_url=base_url)
    session.add(row)
    session.commit()
    return ScheduledOutcome(
        row.status,
        scheduled_id,
        attempt.amount,
        attempt.currency,
        "" if result.approved else result.message,
        attempt.id,
        rate_limited,
        tuple(email_ids),
        "" if result.approved else str(result.status),
    )


def _settle_processing(
    session: Session, gateway: PaymentGateway, row: ScheduledPayment, *, now: datetime,
    base_url: str, acquire: Acquire | None,
) -> ScheduledOutcome:  # fmt: skip
    """A row whose attempt exists: settle a lost answer or a crashed worker's attempt."""
    scheduled_id = row.id or 0
    attempt = payments.find_attempt(session, purpose_key(scheduled_id))
    if attempt is None:  # cannot happen: the row and its attempt commit together
        session.rollback()
        return ScheduledOutcome("skipped", scheduled_id)
    if attempt.status in (PaymentStatus.DECLINED, PaymentStatus.ERROR):
        # Settled without its effects (the reconciler found no charge at the processor).
        reason = attempt.decline_reason or "The payment did not go through."
        ids = _record_failure(session, row, reason, attempt=attempt, base_url=base_url)
        session.add(row)
        session.commit()
        return ScheduledOutcome(
            row.status, scheduled_id, attempt.amount, attempt.currency, reason, attempt.id,
            email_ids=tuple(ids), decline_status=str(attempt.status),
        )  # fmt: skip
    session.rollback()
    if attempt.status == PaymentStatus.APPROVED or (
        attempt.status == PaymentStatus.PENDING and not payments.is_stale(attempt, now)
    ):
        return ScheduledOutcome("skipped", scheduled_id, payment_id=attempt.id)
    result = payments.ask_gateway(gateway, attempt)
    if result is None:
        if attempt.status == PaymentStatus.UNKNOWN:  # still unknown: the reconciler's turn
            return ScheduledOutcome(
                "skipped", scheduled_id, attempt.amount, attempt.currency,
                payments.UNKNOWN_MESSAGE, attempt.id,
            )  # fmt: skip
        # The worker died before the processor was reached: send it now, with its own key.
        method = session.get(PaymentMethod, attempt.payment_method_id)
        account = session.get(CustomerAccount, attempt.customer_account_id)
        session.rollback()
        if method is None or account is None:
            result = GatewayResult(
                status="error", operation="charge", amount=attempt.amount,
                currency=attempt.currency, decline_code="no_method", message=NO_METHOD,
            )  # fmt: skip
        else:
            token, customer_ref = method.token, account.gateway_customer_ref
            result, _limited = send_with_backoff(
                lambda: payments.charge(gateway, attempt, token=token, customer_ref=customer_ref),
                acquire,
            )
    return finish_scheduled_payment(session, attempt, result, now=now, base_url=base_url)


def _fail_without_charge(
    session: Session, row: ScheduledPayment, *, base_url: str
) -> ScheduledOutcome:
    """No payment method left on the account: the row fails (nothing to charge)."""
    ids = _record_failure(session, row, NO_METHOD, attempt=None, base_url=base_url)
    session.add(row)
    session.commit()
    return ScheduledOutcome(
        row.status, row.id or 0, row.amount, row.currency, NO_METHOD,
        email_ids=tuple(ids), decline_status=PaymentStatus.ERROR,
    )  # fmt: skip


def _record_failure(
    session: Session,
    row: ScheduledPayment,
    reason: str,
    *,
    attempt: Payment | None,
    base_url: str,
) -> list[int]:
    """Mark the row ``failed`` and email the customer (caller's transaction, no commit)."""
    invoice = session.get(Invoice, row.invoice_id, populate_existing=True)
    account = session.get(CustomerAccount, row.customer_account_id)
    partner = session.get(Partner, row.partner_id)
    assert invoice is not None and account is not None and partner is not None
    row.status, row.failure_reason = ScheduledStatus.FAILED, reason[:300]
    audit(session, row, "failed", reason=reason, invoice=invoice.number)
    stored_url = str(attempt.detail.get("invoice_url", "")) if attempt is not None else ""
    message = write_email(
        session,
        template="scheduled_payment_failed",
        dedupe_key=f"scheduled_payment_failed:{row.id}",
        to_address=invoice.billing_email or account.email,
        subject=f"Your scheduled payment to {partner.name} did not go through",
        partner_id=partner.id,
        account=account,
        partner=partner,
        invoice=invoice,
        scheduled=row,
        amount=attempt.amount if attempt is not None else row.amount,
        reason=reason,
        pay_url=_invoice_url(base_url, invoice.id) if base_url else stored_url,  # type: ignore[arg-type]
    )
    return [message.id] if message.id is not None else []


def _invoice_url(base_url: str, invoice_id: int) -> str:
    return f"{base_url}/portal/invoices/{invoice_id}"


def _in_flight(session: Session, invoice_id: int) -> int:
    """Charges of the invoice sent to the processor whose answer is not in yet."""
    return int(
        session.exec(
            select(func.coalesce(func.sum(Payment.amount), 0)).where(
                Payment.invoice_id == invoice_id,
                col(Payment.status).in_(payments.OPEN_STATUSES),
                Payment.kind == PaymentKind.CHARGE,
            )
        ).one()
    )


def _method_for(session: Session, row: ScheduledPayment) -> PaymentMethod | None:
    """The chosen method, or the account's default when the chosen one was removed."""
    if row.payment_method_id is not None:
        method = session.get(PaymentMethod, row.payment_method_id)
        if method is not None and method.customer_account_id == row.customer_account_id:
            return method
    return default_method(session, row.customer_account_id)
