"""Moving money exactly once (ARCHITECTURE §2).

1. :func:`open_attempt` commits a ``pending`` attempt whose ``purpose_key`` is unique;
   whoever loses the insert gets the winner's attempt and never calls the gateway.
2. The caller calls the gateway with ``attempt.idempotency_key`` (derived from the purpose
   key, so every retry reuses it), with no transaction open.
3. :func:`claim_outcome` moves the attempt out of ``pending``/``unknown`` with a
   conditional UPDATE inside the caller's transaction; only the caller that wins applies
   the effects (invoice paid, schedule advanced, emails written) and commits them together.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.clock import local_day
from app.gateway.base import GatewayResult, PaymentGateway, PaymentMethodRejected
from app.models import Partner, Payment, PaymentKind, PaymentStatus

STALE_AFTER = timedelta(minutes=3)
UNKNOWN_MESSAGE = (
    "The processor's answer was lost. Nothing will be charged again: the payment is "
    "confirmed with the processor shortly."
)
OPEN_STATUSES = (PaymentStatus.PENDING, PaymentStatus.UNKNOWN)


@dataclass(frozen=True)
class AttemptSpec:
    """What an attempt is for; ``purpose_key`` makes it unique (``form:<nonce>``, …)."""

    partner_id: int
    purpose_key: str
    amount: int
    currency: str
    method: str  # card | bank_account | manual
    kind: str = PaymentKind.CHARGE
    customer_account_id: int | None = None
    invoice_id: int | None = None
    subscription_id: int | None = None
    payment_method_id: int | None = None
    parent_payment_id: int | None = None  # the payment a refund gives money back from
    order_id: int | None = None
    brand: str = ""
    last4: str = ""
    is_recurring: bool = False
    period_date: date | None = None
    gateway: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


class AttemptRef(Protocol):
    """What a processor call needs of an attempt (a Payment row, or a batch's copy of one)."""

    @property
    def id(self) -> int | None: ...
    @property
    def purpose_key(self) -> str: ...
    @property
    def idempotency_key(self) -> str: ...
    @property
    def amount(self) -> int: ...
    @property
    def currency(self) -> str: ...


def idempotency_key_for(purpose_key: str) -> str:
    """The processor idempotency key of the attempt with ``purpose_key`` (stable forever)."""
    return f"portico:{purpose_key}"


def find_attempt(session: Session, purpose_key: str) -> Payment | None:
    """The attempt that owns ``purpose_key``, if any."""
    return session.exec(select(Payment).where(Payment.purpose_key == purpose_key)).first()


def open_attempt(
    session: Session, spec: AttemptSpec, *, precheck: Callable[[Session], None] | None = None
) -> tuple[Payment, bool]:
    """Commit a pending attempt for ``spec``; returns (attempt, created).

    When another request already owns the purpose key, nothing is written and its
    attempt is returned with ``created=False``: the caller must not call the gateway.
    ``precheck`` runs in the same transaction just before the insert (it may lock rows and
    raise a DomainError, which rolls back and propagates).
    Raises ValueError for a non-positive amount.
    """
    if spec.amount <= 0:
        raise ValueError("an attempt must move a positive amount")
    existing = find_attempt(session, spec.purpose_key)
    if existing is not None:
        session.rollback()
        return existing, False
    attempt = Payment(
        partner_id=spec.partner_id,
        customer_account_id=spec.customer_account_id,
        invoice_id=spec.invoice_id,
        subscription_id=spec.subscription_id,
        payment_method_id=spec.payment_method_id,
        parent_payment_id=spec.parent_payment_id,
        order_id=spec.order_id,
        purpose_key=spec.purpose_key,
        idempotency_key=idempotency_key_for(spec.purpose_key),
        kind=spec.kind,
        method=spec.method,
        status=PaymentStatus.PENDING,
        amount=spec.amount,
        currency=spec.currency,
        is_recurring=spec.is_recurring,
        period_date=spec.period_date,
        gateway=spec.gateway,
        brand=spec.brand,
        last4=spec.last4,
        detail=dict(spec.detail),
    )
    try:
        if precheck is not None:
            precheck(session)
        session.add(attempt)
        session.commit()
    except IntegrityError:
        session.rollback()
        winner = find_attempt(session, spec.purpose_key)
        if winner is None:  # the constraint that fired was not the purpose key
            raise
        session.rollback()
        return winner, False
    except BaseException:
        session.rollback()
        raise
    return attempt, True


def charge(
    gateway: PaymentGateway,
    attempt: AttemptRef,
    *,
    token: str,
    customer_ref: str = "",
    description: str = "",
) -> GatewayResult:
    """Send a pending attempt to the processor (call with no transaction open).

    Never raises for a decline or a lost answer: those are results.
    """
    return gateway.charge(
        amount=attempt.amount,
        currency=attempt.currency,
        token=token,
        customer_ref=customer_ref,
        idempotency_key=attempt.idempotency_key,
        description=description,
        metadata={"attempt_id": str(attempt.id), "purpose_key": attempt.purpose_key},
    )


def attach_or_decline(
    gateway: PaymentGateway, attempt: AttemptRef, *, customer_ref: str, token: str
) -> GatewayResult | None:
    """Attach a new card's token to the processor customer before it is charged.

    Returns None when it is attached, else the refusal as a declined result of
    ``attempt`` (the processor's code and message), to be recorded like any decline.
    Raises nothing for a refusal.
    """
    try:
        gateway.attach_payment_method(customer_ref=customer_ref, token=token)
    except PaymentMethodRejected as exc:
        return GatewayResult(
            status="declined",
            operation="charge",
            amount=attempt.amount,
            currency=attempt.currency,
            decline_code=exc.code,
            message=exc.message,
        )
    return None


def authorize(
    gateway: PaymentGateway,
    attempt: Payment,
    *,
    token: str,
    customer_ref: str = "",
    description: str = "",
) -> GatewayResult:
    """Place a hold for a pending ``authorization`` attempt (no transaction open)."""
    return gateway.authorize(
        amount=attempt.amount,
        currency=attempt.currency,
        token=token,
        customer_ref=customer_ref,
        idempotency_key=attempt.idempotency_key,
        description=description,
        metadata={"attempt_id": str(attempt.id), "purpose_key": attempt.purpose_key},
    )


def capture(gateway: PaymentGateway, attempt: Payment, *, authorization: Payment) -> GatewayResult:
    """Capture ``attempt.amount`` of an approved authorization (a pending ``capture`` attempt).

    Raises ValueError when the authorization is not an approved authorization or the
    amount is more than it holds.
    """
    _check_authorization(authorization, attempt.amount)
    return gateway.capture(
        reference=authorization.gateway_reference,
        amount=attempt.amount,
        idempotency_key=attempt.idempotency_key,
    )


def void(gateway: PaymentGateway, attempt: Payment, *, authorization: Payment) -> GatewayResult:
    """Release an approved, uncaptured authorization (a pending ``void`` attempt).

    Raises ValueError when ``authorization`` is not an approved authorization.
    """
    _check_authorization(authorization, 0)
    return gateway.void(
        reference=authorization.gateway_reference, idempotency_key=attempt.idempotency_key
    )


def _check_authorization(authorization: Payment, amount: int) -> None:
    if (
        authorization.kind != PaymentKind.AUTHORIZATION
        or authorization.status != PaymentStatus.APPROVED
    ):
        raise ValueError("only an approved authorization can be captured or voided")
    if amount > authorization.amount:
        raise ValueError("cannot capture more than was authorized")


def claim_outcome(
    session: Session, attempt: Payment, result: GatewayResult, *, now: datetime
) -> bool:
    """Record ``result`` on the attempt if it is still open; returns True if this call did.

    Runs a conditional UPDATE in the caller's transaction (no commit): exactly one caller
    moves an attempt out of pending/unknown, and only that caller applies the effects.
    An ``unknown`` result keeps the attempt open for the reconciler.
    """
    status = PaymentStatus(result.status)
    values: dict[str, Any] = {
        "status": status,
        "gateway_reference": result.reference,
        "decline_code": result.decline_code,
        "decline_reason": "" if result.approved else result.message,
        "settled_at": None if status == PaymentStatus.UNKNOWN else now,
    }
    if result.approved and attempt.received_on is None:
        partner = session.get(Partner, attempt.partner_id)
        # Received on the partner's local day (the UTC date can already be the next one).
        values["received_on"] = local_day(partner.timezone, now) if partner else now.date()
    outcome = session.execute(
        update(Payment)
        .where(col(Payment.id) == attempt.id, col(Payment.status).in_(OPEN_STATUSES))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if outcome.rowcount != 1:
        return False
    session.refresh(attempt)
    return True


def wait_until_settled(session: Session, attempt_id: int, *, timeout_seconds: int = 8) -> Payment:
    """Re-read an attempt until it leaves ``pending`` (another request is charging it).

    Returns the attempt as it stands when settled or when ``timeout_seconds`` pass.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        session.rollback()  # see other transactions' commits
        attempt = session.get(Payment, attempt_id, populate_existing=True)
        assert attempt is not None
        if attempt.status != PaymentStatus.PENDING or time.monotonic() >= deadline:
            return attempt
        time.sleep(0.1)


def is_stale(attempt: Payment, now: datetime) -> bool:
    """A pending attempt whose worker must have died between the gateway call and step 3."""
    return attempt.status == PaymentStatus.PENDING and attempt.created_at < now - STALE_AFTER


def ask_gateway(gateway: PaymentGateway, attempt: Payment) -> GatewayResult | None:
    """What the processor knows of the attempt (by its idempotency key), or None."""
    return gateway.retrieve(idempotency_key=attempt.idempotency_key)


def unapproved_message(attempt: Payment) -> str:
    """What to tell a person about an attempt that is not approved: the decline reason,
    that a lost answer is being confirmed, or that it is still being processed."""
    if attempt.status in (PaymentStatus.DECLINED, PaymentStatus.ERROR):
        return attempt.decline_reason or "The payment was declined."
    if attempt.status == PaymentStatus.UNKNOWN:
        return UNKNOWN_MESSAGE
    return "The payment is being processed."
