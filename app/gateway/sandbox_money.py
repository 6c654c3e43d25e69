"""The money effects of the sandbox processor: charge, authorize, capture, void, refund.

Each ``perform_*`` function runs inside :func:`app.gateway.sandbox_ledger.run_once`'s
transaction, on the money call's one connection, and returns the response to store;
``run_once`` then inserts the idempotency row with that response and commits. They use
SQLAlchemy Core statements built once here (no ORM objects on the hot path).

Balance rules (capture at most once, refund at most what is left) are conditional
``UPDATE … WHERE … RETURNING`` statements, so they hold under concurrency on SQLite and
PostgreSQL without explicit row locks, and an approval needs no second read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, literal, select, update

from app.clock import utcnow
from app.gateway import sandbox_limits as limits
from app.gateway.base import GatewayResult, Outcome
from app.gateway.sandbox_cards import DETACHED, behaviour_of
from app.gateway.sandbox_ledger import Performed, new_reference, result_to_dict
from app.models.sandbox import SandboxCharge, SandboxPaymentMethod, SandboxRefund

_CHARGES = SandboxCharge.__table__  # type: ignore[attr-defined]
_METHODS = SandboxPaymentMethod.__table__  # type: ignore[attr-defined]
_C = _CHARGES.c

_METHOD = select(_METHODS.c.customer_ref, _METHODS.c.behaviour).where(
    _METHODS.c.token == bindparam("token")
)
# A charge's first read: whether the gate has anything active for the call (parameter
# ``operation``), and the payment method (``token`` NULL when there is none).
_ONE_ROW = select(literal(1).label("one")).subquery("one_row")
_GATED_METHOD = select(
    limits.ACTIVE.label("gated"),
    _METHODS.c.token,
    _METHODS.c.customer_ref,
    _METHODS.c.behaviour,
).select_from(_ONE_ROW.outerjoin(_METHODS, _METHODS.c.token == bindparam("token")))
_INSERT_CHARGE = insert(_CHARGES)
_INSERT_REFUND = insert(SandboxRefund.__table__)  # type: ignore[attr-defined]
# What never changes on a charge, read once per capture, void or refund.
_TARGET = select(_C.id, _C.amount, _C.currency, _C.metadata.label("meta")).where(
    _C.reference == bindparam("reference")
)
# What may have changed, read only when a conditional update matched nothing.
_STATE = select(_C.status, _C.amount, _C.captured_amount, _C.refunded_amount).where(
    _C.id == bindparam("charge_id")
)
_CAPTURE = (
    update(_CHARGES)
    .where(
        _C.id == bindparam("charge_id"),
        _C.status == "requires_capture",
        _C.amount >= bindparam("want"),
    )
    .values(status="succeeded", captured=True, captured_amount=bindparam("want"))
    .returning(_C.captured_amount)
)
_VOID = (
    update(_CHARGES)
    .where(_C.id == bindparam("charge_id"), _C.status == "requires_capture")
    .values(status="canceled")
    .returning(_C.id)
)
_NEW_TOTAL = _C.refunded_amount + bindparam("want")
_REFUND = (
    update(_CHARGES)
    .where(
        _C.id == bindparam("charge_id"),
        _C.status == "succeeded",
        _C.captured_amount >= _NEW_TOTAL,
    )
    .values(refunded_amount=_NEW_TOTAL, refunded=_C.captured_amount == _NEW_TOTAL)
    .returning(_C.captured_amount, _C.refunded_amount)
)

ChargeRow = Row[Any]
MethodRow = Row[Any]


class Unread:
    """The type of :data:`UNREAD`: a row not read yet (None means "read: there is none")."""


UNREAD = Unread()


@dataclass(frozen=True)
class ChargeRequest:
    """What a charge or an authorization asks for besides amount and currency."""

    token: str
    customer_ref: str
    description: str
    capture: bool


def load_charge(conn: Connection, reference: str) -> ChargeRow | None:
    """The id, amount, currency and metadata (``meta``) of a charge, or None."""
    return conn.execute(_TARGET, {"reference": reference}).first()


def gate_and_method(conn: Connection, operation: str, token: str) -> tuple[bool, MethodRow | None]:
    """One read for a charge: (whether the gate has anything active for ``operation``,
    the payment method of ``token`` or None). Opens ``conn``'s transaction."""
    row = conn.execute(_GATED_METHOD, {"operation": operation, "token": token}).one()
    return bool(row.gated), (row if row.token is not None else None)


def perform_charge(
    conn: Connection,
    base: GatewayResult,
    *,
    key: str,
    request: ChargeRequest,
    forced_decline: bool,
    method: MethodRow | None | Unread = UNREAD,
) -> Performed:
    """Charge (or authorize) ``base.amount`` on a token, as its test behaviour says.

    ``method`` is the token's payment method when the caller read it already in this
    transaction (:func:`gate_and_method`; None: there is none), else it is read here.
    An approval or a decline leaves a charge row (declines as ``failed``, like a
    processor's failed charge object); errors leave nothing, so the key can be retried.

    Raises:
        IntegrityError: a charge with this key exists (``run_once`` then rolls back and
            answers the stored response).
    """
    if isinstance(method, Unread):
        method = conn.execute(_METHOD, {"token": request.token}).first()
    if method is None:
        return _error(base, "resource_missing", "No such payment method.")
    if method.behaviour == DETACHED:
        gone = behaviour_of(DETACHED)
        return _error(base, gone.decline_code, gone.message)
    if request.customer_ref and method.customer_ref != request.customer_ref:
        return _error(
            base, "resource_missing", "This payment method is not attached to this customer."
        )
    behaviour = behaviour_of("decline" if forced_decline else method.behaviour)
    if behaviour.status == "error":
        return _error(base, behaviour.decline_code, behaviour.message, behaviour.retryable)
    approved = behaviour.approves
    captured = approved and request.capture
    reference = new_reference("ch")
    conn.execute(
        _INSERT_CHARGE,
        {
            "reference": reference,
            "kind": "charge" if request.capture else "authorization",
            "status": ("succeeded" if request.capture else "requires_capture")
            if approved
            else "failed",
            "amount": base.amount,
            "currency": base.currency,
            "captured": captured,
            "captured_amount": base.amount if captured else 0,
            "refunded": False,
            "refunded_amount": 0,
            "payment_method_token": request.token,
            "customer_ref": request.customer_ref or method.customer_ref or "",
            "description": request.description,
            "decline_code": behaviour.decline_code,
            "metadata": dict(base.metadata),
            "idempotency_key": key,
            "created_at": utcnow(),
        },
    )
    result = replace(
        base,
        status=behaviour.status,
        reference=reference,
        decline_code=behaviour.decline_code,
        message=behaviour.message,
        captured_amount=base.amount if captured else 0,
    )
    return result_to_dict(result), True


def _error(base: GatewayResult, code: str, message: str, retryable: bool = False) -> Performed:
    error = replace(base, status="error", decline_code=code, message=message, retryable=retryable)
    return result_to_dict(error), False


def _state(conn: Connection, charge: ChargeRow) -> Row[Any]:
    return conn.execute(_STATE, {"charge_id": charge.id}).one()


def _declined(base: GatewayResult, code: str, message: str) -> Performed:
    return result_to_dict(
        replace(base, status="declined", decline_code=code, message=message)
    ), True


def perform_capture(
    conn: Connection,
    base: GatewayResult,
    *,
    charge: ChargeRow | None,
    key: str,
    forced_decline: bool,
) -> Performed:
    """Capture ``base.amount`` of the authorization ``charge``; see the gateway."""
    if charge is None:
        return _missing_charge(base)
    base = replace(base, currency=charge.currency)
    if forced_decline:
        return _declined(base, "card_declined", "The payment processor declined the capture.")
    captured = conn.execute(_CAPTURE, {"charge_id": charge.id, "want": base.amount}).first()
    if captured is None:
        state = _state(conn, charge)
        if state.status == "succeeded":
            return _declined(base, "already_captured", "This payment was already captured.")
        if state.status == "canceled":
            return _declined(base, "authorization_voided", "This authorization was voided.")
        if state.status == "failed":
            return _declined(
                base, "charge_failed", "This payment was declined; nothing to capture."
            )
        return _declined(
            base,
            "amount_too_large",
            f"The capture amount is more than the authorized amount ({state.amount}).",
        )
    return result_to_dict(
        replace(
            base,
            status="approved",
            captured_amount=captured.captured_amount,
            metadata=dict(charge.meta),
        )
    ), True


def perform_void(
    conn: Connection,
    base: GatewayResult,
    *,
    charge: ChargeRow | None,
    key: str,
    forced_decline: bool,
) -> Performed:
    """Release the uncaptured authorization ``charge``; see the gateway."""
    if charge is None:
        return _missing_charge(base)
    base = replace(base, amount=charge.amount, currency=charge.currency)
    if forced_decline:
        return _declined(base, "card_declined", "The payment processor declined the void.")
    voided = conn.execute(_VOID, {"charge_id": charge.id}).first()
    if voided is None:
        status = _state(conn, charge).status
        if status == "succeeded":
            return _declined(
                base, "already_captured", "A captured payment cannot be voided; refund it instead."
            )
        if status == "canceled":
            return _declined(base, "authorization_voided", "This authorization was already voided.")
        return _declined(base, "charge_failed", "This payment was declined; nothing to void.")
    return result_to_dict(replace(base, status="approved", metadata=dict(charge.meta))), True


def perform_refund(
    conn: Connection,
    base: GatewayResult,
    *,
    charge: ChargeRow | None,
    key: str,
    forced_decline: bool,
) -> Performed:
    """Refund ``base.amount`` of the captured ``charge``; see the gateway.

    Raises:
        IntegrityError: a refund with this key exists (``run_once`` then rolls back and
            answers the stored response).
    """
    if charge is None:
        return _missing_charge(base)
    base = replace(base, reference="", currency=charge.currency)
    if forced_decline:
        return _declined(base, "refund_declined", "The payment processor declined the refund.")
    refunded = conn.execute(_REFUND, {"charge_id": charge.id, "want": base.amount}).first()
    if refunded is None:
        state = _state(conn, charge)
        base = replace(
            base, captured_amount=state.captured_amount, refunded_amount=state.refunded_amount
        )
        if state.status != "succeeded":
            return _declined(
                base,
                "charge_not_captured",
                "Only a captured payment can be refunded; void an authorization instead.",
            )
        remaining = state.captured_amount - state.refunded_amount
        return _declined(
            base,
            "amount_too_large",
            "The refund is more than what is left to refund on this payment "
            f"({remaining} of {state.captured_amount} in minor units).",
        )
    reference = new_reference("re")
    conn.execute(
        _INSERT_REFUND,
        {
            "reference": reference,
            "charge_id": charge.id,
            "amount": base.amount,
            "currency": charge.currency,
            "status": "succeeded",
            "idempotency_key": key,
            "created_at": utcnow(),
        },
    )
    return result_to_dict(
        replace(
            base,
            status="approved",
            reference=reference,
            captured_amount=refunded.captured_amount,
            refunded_amount=refunded.refunded_amount,
        )
    ), True


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
