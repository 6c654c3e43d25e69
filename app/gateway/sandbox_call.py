"""One sandbox money call, end to end, on one pooled connection.

A charge, authorization, capture, void or refund with no request limit and no injected
failure is one connection checkout and one transaction:

1. :func:`app.gateway.sandbox_limits.gate`: one ``SELECT`` that finds nothing active;
2. the reads of the effect (the payment method, or the charge acted on); a charge or an
   authorization reads its payment method and asks the gate in one ``SELECT``
   (:func:`app.gateway.sandbox_money.gate_and_method`), and runs the gate in full only
   when something is active;
3. the effect's writes and the idempotency row holding the final response, then one
   ``COMMIT`` (:func:`app.gateway.sandbox_ledger.run_once`).

An active request limit or injection adds its own short transactions before step 2; a
call whose key was used before rolls step 3 back and answers the stored response.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial

from sqlalchemy import Engine

from app.gateway import sandbox_ledger as ledger
from app.gateway import sandbox_limits as limits
from app.gateway import sandbox_money as money
from app.gateway.base import GatewayResult, OperationKind
from app.gateway.sandbox_ledger import IdempotencyKeyReused
from app.gateway.sandbox_money import ChargeRequest

TOO_MANY = "Too many requests. Try again in a moment."
_SERVER_ERROR = "The payment processor had an error. Try again."
_TIMEOUT = "The payment processor did not answer in time."

Perform = Callable[..., ledger.Performed]


def charge_call(
    engine: Engine,
    operation: OperationKind,
    *,
    amount: int,
    currency: str,
    token: str,
    key: str,
    customer_ref: str,
    description: str,
    metadata: Mapping[str, str] | None,
) -> GatewayResult:
    """Charge (``operation="charge"``) or authorize ``amount`` on ``token``, once per key.

    Returns the approved, declined, error or unknown result; never raises.
    """
    clean_metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
    base = GatewayResult(
        status="error",
        operation=operation,
        amount=amount,
        currency=currency.upper(),
        metadata=clean_metadata,
    )
    params = {
        "amount": amount,
        "currency": base.currency,
        "token": token,
        "customer_ref": customer_ref,
        "description": description,
        "metadata": clean_metadata,
    }
    request = ChargeRequest(
        token=token,
        customer_ref=customer_ref,
        description=description,
        capture=operation == "charge",
    )
    perform = partial(money.perform_charge, request=request)
    return money_call(engine, base, key, params, perform, check_currency=True, token=token)


def on_charge_call(
    engine: Engine,
    operation: OperationKind,
    *,
    reference: str,
    amount: int,
    key: str,
    params: Mapping[str, object],
    perform: Perform,
) -> GatewayResult:
    """Capture, void or refund (``perform``) the charge ``reference``, once per key.

    Every answer carries the charge's currency ("" for an unknown reference). Returns
    the approved, declined, error or unknown result; never raises.
    """
    base = GatewayResult(
        status="error", operation=operation, amount=amount, currency="", reference=reference
    )
    return money_call(
        engine, base, key, params, perform, on_charge=True, check_amount=operation != "void"
    )


def money_call(
    engine: Engine,
    base: GatewayResult,
    key: str,
    params: Mapping[str, object],
    perform: Perform,
    *,
    on_charge: bool = False,
    check_amount: bool = True,
    check_currency: bool = False,
    token: str | None = None,
) -> GatewayResult:
    """Run ``perform`` as the money call described by ``base``; see the module docstring.

    ``perform(conn, base, key=..., forced_decline=...)`` (plus ``charge=`` when
    ``on_charge``, and ``method=`` when ``token`` is given and nothing is active at the
    gate: the payment method and the gate are then read in one statement) returns the
    response to store. Returns the call's result: a 429 when
    the request limit refuses it, the injected failure's answer, an error for an unusable
    amount or currency or a reused key, else the (stored) response. Never raises for a
    processor outcome.
    """
    with engine.connect() as conn:
        if on_charge:
            charge = money.load_charge(conn, base.reference)
            base = replace(base, currency=charge.currency if charge is not None else "")
            perform = partial(perform, charge=charge)
        gated = True
        if token is not None:
            gated, method = money.gate_and_method(conn, base.operation, token)
            if not gated:
                perform = partial(perform, method=method)
        admitted, failure = limits.gate(conn, base.operation) if gated else (True, None)
        if not admitted or failure == "rate_limit":
            return money.failed_result(base, "rate_limited", TOO_MANY)
        if failure == "server_error":
            return money.failed_result(base, "server_error", _SERVER_ERROR)
        invalid = money.invalid_request(
            base, check_amount=check_amount, check_currency=check_currency
        )
        if invalid is not None:
            return invalid
        try:
            response = ledger.run_once(
                conn,
                key=key,
                operation=base.operation,
                fingerprint=ledger.request_fingerprint(base.operation, params),
                perform=lambda c: perform(c, base, key=key, forced_decline=failure == "decline"),
            )
        except IdempotencyKeyReused as exc:
            return money.failed_result(base, "idempotency_key_reused", str(exc), retryable=False)
    if failure == "timeout_after_charge":
        # The processor did the work; only its answer is lost on the way back.
        return money.failed_result(base, "timeout", _TIMEOUT, status="unknown")
    return ledger.result_from_dict(response)
