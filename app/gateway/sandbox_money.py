"""The money effects of the sandbox processor: charge, authorize, capture, void, refund.

Each ``perform_*`` function runs inside :func:`app.gateway.sandbox_ledger.run_once`'s
transaction, after the idempotency row was inserted, and returns the response to store.
Balance rules (capture at most once, refund at most what is left) are conditional
``UPDATE … WHERE`` statements, so they hold under concurrency on SQLite and PostgreSQL
without explicit row locks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col

from app.gateway.base import GatewayResult, Outcome
from app.gateway.sandbox_cards import behaviour_of
from app.gateway.sandbox_ledger import (
    Performed,
    find_charge,
    find_payment_method,
    new_reference,
    result_to_dict,
)
from app.models.sandbox import SandboxCharge, SandboxRefund


@dataclass(frozen=True)
class ChargeRequest:
    """What a charge or an authorization asks for besides amount and currency."""

    token: str
    customer_ref: str
    description: str
    capture: bool


def perform_charge(
    session: Session,
    base: GatewayResult,
    *,
    key: str,
    request: ChargeRequest,
    forced_decline: bool,
) -> Performed:
    """Charge (or authorize) ``base.amount`` on a token, as its test behaviour says.

    An approval or a decline leaves a charge row (declines as ``failed``, like a
    processor's failed charge object); errors leave nothing, so the key can be retried.
    """
    method = find_payment_method(session, request.token)
    if method is None:
        return _error(base, "resource_missing", "No such payment method.")
    if request.customer_ref and method.customer_ref != request.customer_ref:
        return _error(
            base, "resource_missing", "This payment method is not attached to this customer."
        )
    behaviour = behaviour_of("decline" if forced_decline else method.behaviour)
    if behaviour.status == "error":
        return _error(base, behaviour.decline_code, behaviour.message, behaviour.retryable)
    approved = behaviour.approves
    charge = SandboxCharge(
        reference=new_reference("ch"),
        kind="charge" if request.capture else "authorization",
        status=("succeeded" if request.capture else "requires_capture") if approved else "failed",
        amount=base.amount,
        currency=base.currency,
        captured=approved and request.capture,
        captured_amount=base.amount if approved and request.capture else 0,
        payment_method_token=method.token,
        customer_ref=request.customer_ref or method.customer_ref or "",
        description=request.description,
        decline_code=behaviour.decline_code,
        meta=dict(base.metadata),
        idempotency_key=key,
    )
    session.add(charge)
    result = replace(
        base,
        status=behaviour.status,
        reference=charge.reference,
        decline_code=behaviour.decline_code,
        message=behaviour.message,
        captured_amount=charge.captured_amount,
    )
    return result_to_dict(result), True


def _error(base: GatewayResult, code: str, message: str, retryable: bool = False) -> Performed:
    error = replace(base, status="error", decline_code=code, message=message, retryable=retryable)
    return result_to_dict(error), False


def _conditional_update(
    session: Session, charge: SandboxCharge, where: list[Any], values: dict[str, Any]
) -> bool:
    statement = (
        update(SandboxCharge)
        .where(col(SandboxCharge.id) == charge.id, *where)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).rowcount == 1  # type: ignore[attr-defined]


def _refreshed(session: Session, charge: SandboxCharge) -> SandboxCharge:
    session.refresh(charge)
    return charge


def _declined(base: GatewayResult, code: str, message: str) -> Performed:
    return result_to_dict(
        replace(base, status="declined", decline_code=code, message=message)
    ), True


def perform_capture(
    session: Session, base: GatewayResult, *, key: str, forced_decline: bool
) -> Performed:
    """Capture ``base.amount`` of the authorization ``base.reference``; see the gateway."""
    charge = find_charge(session, base.reference)
    if charge is None:
        return _missing_charge(base)
    base = replace(base, currency=charge.currency)
    if forced_decline:
        return _declined(base, "card_declined", "The payment processor declined the capture.")
    captured = _conditional_update(
        session,
        charge,
        [
            col(SandboxCharge.status) == "requires_capture",
            col(SandboxCharge.amount) >= base.amount,
        ],
        {"status": "succeeded", "captured": True, "captured_amount": base.amount},
    )
    charge = _refreshed(session, charge)
    if not captured:
        if charge.status == "succeeded":
            return _declined(base, "already_captured", "This payment was already captured.")
        if charge.status == "canceled":
            return _declined(base, "authorization_voided", "This authorization was voided.")
        if charge.status == "failed":
            return _declined(
                base, "charge_failed", "This payment was declined; nothing to capture."
            )
        return _declined(
            base,
            "amount_too_large",
            f"The capture amount is more than the authorized amount ({charge.amount}).",
        )
    return result_to_dict(
        replace(
            base, status="approved", captured_amount=charge.captured_amount, metadata=charge.meta
        )
    ), True


def perform_void(
    session: Session, base: GatewayResult, *, key: str, forced_decline: bool
) -> Performed:
    """Release the uncaptured authorization ``base.reference``; see the gateway."""
    charge = find_charge(session, base.reference)
    if charge is None:
        return _missing_charge(base)
    base = replace(base, amount=charge.amount, currency=charge.currency)
    if forced_decline:
        return _declined(base, "card_declined", "The payment processor declined the void.")
    voided = _conditional_update(
        session,
        charge,
        [col(SandboxCharge.status) == "requires_capture"],
        {"status": "canceled"},
    )
    charge = _refreshed(session, charge)
    if not voided:
        if charge.status == "succeeded":
            return _declined(
                base, "already_captured", "A captured payment cannot be voided; refund it instead."
            )
        if charge.status == "canceled":
            return _declined(base, "authorization_voided", "This authorization was already voided.")
        return _declined(base, "charge_failed", "This payment was declined; nothing to void.")
    return result_to_dict(replace(base, status="approved", metadata=charge.meta)), True


def perform_refund(
    session: Session, base: GatewayResult, *, key: str, forced_decline: bool
) -> Performed:
    """Refund ``base.amount`` of the captured charge ``base.reference``; see the gateway."""
    charge = find_charge(session, base.reference)
    if charge is None:
        return _missing_charge(base)
    base = replace(base, reference="", currency=charge.currency)
    if forced_decline:
        return _declined(base, "refund_declined", "The payment processor declined the refund.")
    new_total = col(SandboxCharge.refunded_amount) + base.amount
    refunded = _conditional_update(
        session,
        charge,
        [col(SandboxCharge.status) == "succeeded", new_total <= col(SandboxCharge.captured_amount)],
        {"refunded_amount": new_total, "refunded": new_total == col(SandboxCharge.captured_amount)},
    )
    charge = _refreshed(session, charge)
    base = replace(
        base, captured_amount=charge.captured_amount, refunded_amount=charge.refunded_amount
    )
    if not refunded:
        if charge.status != "succeeded":
            return _declined(
                base,
                "charge_not_captured",
                "Only a captured payment can be refunded; void an authorization instead.",
            )
        remaining = charge.captured_amount - charge.refunded_amount
        return _declined(
            base,
            "amount_too_large",
            "The refund is more than what is left to refund on this payment "
            f"({remaining} of {charge.captured_amount} in minor units).",
        )
    reference = new_reference("re")
    session.add(
        SandboxRefund(
            reference=reference,
            charge_id=charge.id,  # type: ignore[arg-type]
            amount=base.amount,
            currency=charge.currency,
            idempotency_key=key,
        )
    )
    return result_to_dict(replace(base, status="approved", reference=reference)), True


def _missing_charge(base: GatewayResult) -> Performed:
    return _error(base, "resource_missing", "No such payment.")


def failed_result(
    base: GatewayResult,
    code: str,
    message: str,
    *,
    retryable: bool = True,
    status: Outcome = "error",
) -> GatewayResult:
    """A result that moved nothing, or whose effect is unknown: no processor reference."""
    return replace(
        base,
        status=status,
        reference="",
        decline_code=code,
        message=message,
        retryable=retryable,
    )


def invalid_request(
    base: GatewayResult, *, check_amount: bool, check_currency: bool
) -> GatewayResult | None:
    """An error result when the amount or currency is unusable, else None."""
    amount_ok = isinstance(base.amount, int) and not isinstance(base.amount, bool)
    if check_amount and not (amount_ok and base.amount > 0):
        return failed_result(
            base,
            "invalid_amount",
            "The amount must be a positive whole number of minor units.",
            retryable=False,
        )
    currency = base.currency
    if check_currency and not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
        return failed_result(
            base,
            "invalid_currency",
            "The currency must be a three-letter ISO 4217 code.",
            retryable=False,
        )
    return None
