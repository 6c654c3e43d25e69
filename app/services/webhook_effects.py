"""What a stored processor event does to Portico's payments (ADR 0018).

Part of :mod:`app.services.webhooks`, which stores events and records outcomes. An event
is about one of Portico's payments, found by our attempt id or purpose key in the
object's metadata, else by the processor reference kept on ``Payment.gateway_reference``.

- ``charge.succeeded`` / ``payment_intent.succeeded`` and ``charge.failed`` /
  ``payment_intent.payment_failed`` settle a ``pending`` or ``unknown`` attempt through
  the reconciler's :func:`app.services.reconcile.apply_outcome`, so the effects are the
  ones a late answer has. A settled attempt is never changed by an event.
- ``charge.refunded`` carries the processor's total refunded: Portico's refund attempts
  it names are settled like the reconciler would, and whatever is still missing (a
  refund made in the processor's dashboard) is recorded as one refund row through
  :func:`app.services.refunds.finish_refund`, under the payment's row lock, so a total
  already recorded changes nothing. A refund of a payment still open here proves the
  charge went through: the payment is settled as approved first.
- Every other type (disputes, payouts…) is stored and ``ignored``.

Ordering: an event older (``created``) than one already applied to the same processor
object is ``stale`` and applies nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.domain.ids import parse_id
from app.gateway.base import GatewayResult, PaymentGateway
from app.models import Payment, PaymentKind, PaymentStatus, ProcessorEvent
from app.services import payments, reconcile, refunds

SUCCEEDED: Final = frozenset({"charge.succeeded", "payment_intent.succeeded"})
FAILED: Final = frozenset({"charge.failed", "payment_intent.payment_failed"})
REFUNDED: Final = frozenset({"charge.refunded"})
HANDLED: Final = SUCCEEDED | FAILED | REFUNDED
_SETTLED_BY_EVENTS: Final = (PaymentKind.CHARGE, PaymentKind.AUTHORIZATION)
_REFUNDED_APPROVED: Final = ("succeeded", "pending")


@dataclass(frozen=True)
class StoredEvent:
    """A stored event as applying it needs it (``data`` is the processor's object)."""

    id: int
    gateway: str
    event_id: str
    type: str
    object_ref: str
    created: int
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Applied:
    """The outcome word for the event row, a note for people, emails to enqueue."""

    outcome: str
    note: str = ""
    email_ids: list[int] = field(default_factory=list)


def object_ref(data: Mapping[str, Any]) -> str:
    """The processor reference of the payment an event's object is about.

    A charge or refund of a PaymentIntent is about the intent (what Portico keeps for
    Stripe); otherwise the object's own id (a sandbox charge).
    """
    for key in ("payment_intent", "charge", "id"):
        value = _text(data.get(key))
        if value:
            return value
    return ""


def apply_event(
    session: Session, gateway: PaymentGateway, event: StoredEvent, *, now: datetime
) -> Applied:
    """Apply one stored event to the payment it is about (commits what it changes).

    Idempotent: applying the same event again finds its effects there and changes
    nothing. Raises whatever the settlement or refund services raise (database errors);
    the caller keeps the error on the event row.
    """
    if event.type not in HANDLED:
        return Applied("ignored")
    session.expire_all()  # decide on the rows as they are now, not as this session saw them
    refunded = event.type in REFUNDED
    payment = find_payment(session, event.gateway, event.data, refund=refunded)
    if payment is None:
        session.rollback()
        return Applied("unknown_object", "No payment of Portico's has this reference.")
    if _newer_event_applied(session, event):
        session.rollback()
        return Applied("stale", "A newer event about this payment was applied already.")
    currency = str(event.data.get("currency") or payment.currency).upper()
    if currency != payment.currency:
        session.rollback()
        return Applied(
            "conflict", f"The event is in {currency}, the payment in {payment.currency}."
        )
    if refunded:
        return _apply_refunds(session, gateway, event, payment, now=now)
    return _settle(session, gateway, payment, _charge_result(event, payment), now=now)


def find_payment(
    session: Session, gateway_name: str, data: Mapping[str, Any], *, refund: bool = False
) -> Payment | None:
    """Portico's payment an event's object is about, or None.

    By the attempt id and purpose key Portico puts in the metadata of every charge
    (both must agree), or the idempotency key the Stripe adapter adds; else by the
    processor reference. For a refund, the payment that can be refunded (a charge or a
    capture) rather than an authorization.
    """
    metadata = data.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    purpose = _text(metadata.get("purpose_key"))
    key = _text(metadata.get("idempotency_key"))
    if not purpose and key.startswith("portico:"):
        purpose = key.removeprefix("portico:")
    found: Payment | None = None
    attempt_id = parse_id(_text(metadata.get("attempt_id")))
    if attempt_id is not None:
        found = session.get(Payment, attempt_id)
        if found is not None and purpose and found.purpose_key != purpose:
            found = None  # another system's metadata that happens to look like ours
    if found is None and purpose:
        found = payments.find_attempt(session, purpose)
    if found is not None and found.gateway != gateway_name:
        found = None
    if found is not None and (not refund or found.kind in refunds.GATEWAY_KINDS):
        return found
    refs = [v for v in (_text(data.get("payment_intent")), _text(data.get("id"))) if v]
    kinds = refunds.GATEWAY_KINDS if refund else _SETTLED_BY_EVENTS
    if not refs:
        return None
    # gateway_reference has no index: this scan runs only for objects without our metadata.
    rows = session.exec(
        select(Payment)
        .where(
            Payment.gateway == gateway_name,
            col(Payment.gateway_reference).in_(refs),
            col(Payment.kind).in_(kinds),
        )
        .order_by(col(Payment.id).desc())
    ).all()
    if rows:
        return rows[0]
    return None if refund else found


def _newer_event_applied(session: Session, event: StoredEvent) -> bool:
    if not event.object_ref or not event.created:
        return False
    newer = session.exec(
        select(ProcessorEvent.id)
        .where(
            ProcessorEvent.gateway == event.gateway,
            ProcessorEvent.object_ref == event.object_ref,
            ProcessorEvent.outcome == "applied",
            ProcessorEvent.event_created > event.created,
            ProcessorEvent.id != event.id,
        )
        .limit(1)
    ).first()
    return newer is not None


def _charge_result(event: StoredEvent, attempt: Payment) -> GatewayResult:
    """The processor's answer about ``attempt`` as the event's object gives it."""
    data = event.data
    metadata = data.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    base: dict[str, Any] = {
        "operation": "authorization" if attempt.kind == PaymentKind.AUTHORIZATION else "charge",
        "amount": _int(data.get("amount")) or attempt.amount,
        "currency": attempt.currency,
        "reference": event.object_ref or attempt.gateway_reference,
        "metadata": {str(k): str(v) for k, v in metadata.items()},
    }
    if event.type in FAILED:
        error = data.get("last_payment_error")
        error = error if isinstance(error, Mapping) else {}
        code = data.get("failure_code") or error.get("decline_code") or error.get("code")
        message = data.get("failure_message") or error.get("message")
        return GatewayResult(
            status="declined",
            decline_code=_printable(code)[:60] or "card_declined",
            message=_printable(message)[:300] or "Your card was declined.",
            **base,
        )
    captured = _int(data.get("amount_captured")) or _int(data.get("amount_received"))
    return GatewayResult(status="approved", captured_amount=captured, **base)


def _settle(
    session: Session,
    gateway: PaymentGateway,
    attempt: Payment,
    result: GatewayResult,
    *,
    now: datetime,
) -> Applied:
    """Settle an open attempt with ``result`` the way the reconciler does."""
    if attempt.status not in payments.OPEN_STATUSES:
        session.rollback()
        return _already(attempt, result)
    _status, email_ids = reconcile.apply_outcome(session, attempt, result, now=now, gateway=gateway)
    session.rollback()
    settled = session.get(Payment, attempt.id, populate_existing=True)
    assert settled is not None
    session.rollback()
    # claim_outcome stamps the winner's ``now``: another delivery may have settled it first.
    if settled.settled_at is None or not _same_instant(settled.settled_at, now):
        return _already(settled, result)
    return Applied("applied", email_ids=list(email_ids))


def _already(attempt: Payment, result: GatewayResult) -> Applied:
    if (attempt.status == PaymentStatus.APPROVED) == result.approved:
        return Applied("noop")
    if result.approved:
        return Applied(
            "conflict",
            f"The processor says the payment succeeded; it is {attempt.status} here "
            "(flask billing verify reports it).",
        )
    return Applied("stale", f"The payment is already {attempt.status}; a failure does not undo it.")


def _apply_refunds(
    session: Session, gateway: PaymentGateway, event: StoredEvent, parent: Payment, *, now: datetime
) -> Applied:
    emails: list[int] = []
    changed = False
    if parent.status in payments.OPEN_STATUSES:
        # Only a captured charge can be refunded: the payment went through.
        settled = _settle(session, gateway, parent, _charge_result(event, parent), now=now)
        emails += settled.email_ids
        changed = settled.outcome == "applied"
        parent = session.get(Payment, parent.id, populate_existing=True)  # type: ignore[assignment]
        session.rollback()
    if parent.status != PaymentStatus.APPROVED:
        return Applied(
            "conflict", f"The processor refunded a payment that is {parent.status} here.", emails
        )
    unmatched: list[str] = []
    for refund in _refund_objects(event.data):
        applied = _settle_our_refund(session, gateway, parent, refund, now=now)
        if applied is None:
            unmatched.append(str(refund.get("id") or ""))
        else:
            emails += applied.email_ids
            changed = changed or applied.outcome == "applied"
    total = _int(event.data.get("amount_refunded"))
    reference = unmatched[0] if len(unmatched) == 1 else ""
    if _record_missing_refund(session, gateway, event, parent.id, total, reference, now=now):  # type: ignore[arg-type]
        changed = True
    return Applied("applied" if changed else "noop", email_ids=emails)


def _refund_objects(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    listed = data.get("refunds")
    items = listed.get("data") if isinstance(listed, Mapping) else None
    return [r for r in items or [] if isinstance(r, Mapping)]


def _settle_our_refund(
    session: Session,
    gateway: PaymentGateway,
    parent: Payment,
    refund: Mapping[str, Any],
    *,
    now: datetime,
) -> Applied | None:
    """Settle Portico's own refund attempt that a processor refund names; None if it
    names none of ours."""
    metadata = refund.get("metadata")
    key = _text(metadata.get("idempotency_key")) if isinstance(metadata, Mapping) else ""
    attempt = None
    if key.startswith("portico:"):
        attempt = payments.find_attempt(session, key.removeprefix("portico:"))
    if attempt is None or attempt.parent_payment_id != parent.id:
        return None
    status = "approved" if refund.get("status") in _REFUNDED_APPROVED else "declined"
    amount = _int(refund.get("amount")) or attempt.amount
    result = GatewayResult(
        status=status,
        operation="refund",
        amount=amount,
        currency=attempt.currency,
        reference=str(refund.get("id") or ""),
        refunded_amount=amount if status == "approved" else 0,
        decline_code="" if status == "approved" else "failed",
        message="" if status == "approved" else "The refund failed.",
    )
    return _settle(session, gateway, attempt, result, now=now)


def _record_missing_refund(
    session: Session,
    gateway: PaymentGateway,
    event: StoredEvent,
    parent_id: int,
    total: int,
    reference: str,
    *,
    now: datetime,
) -> bool:
    """Record what the processor refunded beyond Portico's refunds as one refund row.

    Under the parent's row lock (the order every refund takes its locks in), the amount
    missing is the processor's total minus what is recorded and what is in flight; the
    purpose key, unique per (payment, processor total), makes a repeat insert fail.
    Returns True when it recorded a refund (committed), False when nothing was missing.
    """
    session.execute(
        update(Payment)
        .where(col(Payment.id) == parent_id)
        .values(refunded_amount=Payment.refunded_amount)
        .execution_options(synchronize_session=False)
    )
    parent = session.get(Payment, parent_id, populate_existing=True)
    assert parent is not None
    recorded = parent.refunded_amount + refunds.in_flight_refunds(session, parent_id)
    missing = min(total, parent.amount) - recorded
    if missing <= 0:
        session.rollback()
        return False
    purpose = f"processor-refund:{gateway.name}:{parent_id}:{total}"
    row = Payment(
        partner_id=parent.partner_id,
        customer_account_id=parent.customer_account_id,
        invoice_id=parent.invoice_id,
        parent_payment_id=parent_id,
        payment_method_id=parent.payment_method_id,
        purpose_key=purpose,
        idempotency_key=payments.idempotency_key_for(purpose),
        kind=PaymentKind.REFUND,
        method=parent.method,
        status=PaymentStatus.PENDING,
        amount=missing,
        currency=parent.currency,
        gateway=gateway.name,
        brand=parent.brand,
        last4=parent.last4,
        detail={
            "source": refunds.REFUND_SOURCE,
            "actor": f"{gateway.name} (processor)",
            "note": f"Refunded at the processor (event {event.event_id}).",
        },
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return False
    result = GatewayResult(
        status="approved",
        operation="refund",
        amount=missing,
        currency=parent.currency,
        reference=reference,
        refunded_amount=missing,
    )
    # Inserted and settled in one transaction: no pending row for the reconciler to
    # ask about (the processor has no refund under this key).
    refunds.finish_refund(session, row, result, now=now)
    return True


def _text(value: object) -> str:
    """A reference or key to look up: a string that fits our columns, else ""."""
    if not isinstance(value, str) or len(value) > 255 or not value.isprintable():
        return ""
    return value


def _printable(value: object) -> str:
    return "".join(c for c in value if c.isprintable()) if isinstance(value, str) else ""


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _same_instant(stored: datetime, now: datetime) -> bool:
    return stored.replace(tzinfo=None) == now.astimezone(stored.tzinfo or now.tzinfo).replace(
        tzinfo=None
    )
