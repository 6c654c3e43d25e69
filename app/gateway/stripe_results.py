"""Stripe answers and errors turned into Portico's gateway results and exceptions.

Part of the Stripe adapter (``app/gateway/stripe.py``), kept apart so each module fits
in one read.
"""

from __future__ import annotations

from typing import Any

import stripe

from app.gateway.base import (
    GatewayError,
    GatewayResult,
    GatewayUnavailable,
    OperationKind,
    PaymentMethodRejected,
    TokenizedMethod,
)

# Plain words for the payer. Lost/stolen/fraud codes are left out on purpose: Stripe
# advises showing those payers the generic decline.
_REASONS = {
    "insufficient_funds": "insufficient funds",
    "expired_card": "the card has expired",
    "incorrect_cvc": "the security code (CVC) is incorrect",
    "invalid_cvc": "the security code (CVC) is incorrect",
    "incorrect_number": "the card number is incorrect",
    "invalid_number": "the card number is incorrect",
    "invalid_expiry_month": "the expiration date is invalid",
    "invalid_expiry_year": "the expiration date is invalid",
    "processing_error": "the card could not be processed, please try again",
    "card_velocity_exceeded": "the card's limit has been reached",
    "authentication_required": "your bank asks you to confirm this payment; "
    "please pay while present or use another card",
}
_TURNED_AWAY = stripe.AuthenticationError | stripe.PermissionError | stripe.RateLimitError
_FIELDS = {"exp_month": "exp", "exp_year": "exp", "account_holder_type": "account_type"}


def _decline(code: str) -> tuple[str, str]:
    """Stripe's decline code, normalized, and the reason in plain words for the payer."""
    code = "card_declined" if code == "generic_decline" else code
    reason = _REASONS.get(code)
    return code, f"Your card was declined: {reason}." if reason else "Your card was declined."


def _declined(code: str, **base: Any) -> GatewayResult:
    code, message = _decline(code)
    return GatewayResult(status="declined", decline_code=code, message=message, **base)


def _intent_result(intent: dict[str, Any], operation: OperationKind) -> GatewayResult:
    status = intent["status"]
    base: dict[str, Any] = {
        "operation": operation,
        "amount": intent["amount"],
        "currency": str(intent["currency"]).upper(),
        "reference": intent["id"],
        "captured_amount": intent.get("amount_received") or 0,
        "metadata": dict(intent.get("metadata") or {}),
    }
    if operation == "capture":
        base["amount"] = base["captured_amount"]
    if status in ("succeeded", "requires_capture") or (
        operation == "void" and status == "canceled"
    ):
        return GatewayResult(status="approved", **base)
    if status == "processing":  # bank debits settle days later; a webhook or retrieve tells
        return GatewayResult(
            status="unknown", message="The bank payment is processing.", retryable=False, **base
        )
    if status == "canceled":
        return GatewayResult(
            status="declined", decline_code="canceled", message="The payment was canceled.", **base
        )
    if status == "requires_action":  # off-session nobody can pass 3-D Secure
        return _declined("authentication_required", **base)
    error = intent.get("last_payment_error") or {}
    return _declined(error.get("decline_code") or error.get("code") or "card_declined", **base)


def _refund_result(refund: dict[str, Any]) -> GatewayResult:
    outcomes = {"succeeded": "approved", "pending": "approved", "requires_action": "unknown"}
    outcome = outcomes.get(refund["status"], "declined")
    return GatewayResult(
        status=outcome,
        operation="refund",
        amount=refund["amount"],
        currency=str(refund["currency"]).upper(),
        reference=refund["id"],
        refunded_amount=refund["amount"] if outcome == "approved" else 0,
        decline_code=(refund.get("failure_reason") or "failed") if outcome == "declined" else "",
        message="The refund failed." if outcome == "declined" else "",
        metadata=dict(refund.get("metadata") or {}),
    )


def _failure(
    err: stripe.StripeError, operation: OperationKind, amount: int, currency: str
) -> GatewayResult:
    """Map a Stripe exception raised by a money-moving call to a result."""
    base: dict[str, Any] = {"operation": operation, "amount": amount, "currency": currency}
    error = _error_body(err)
    if isinstance(err, stripe.CardError):
        intent = error.get("payment_intent") or {}
        return _declined(
            error.get("decline_code") or err.code or "card_declined",
            reference=intent.get("id", ""),
            metadata=dict(intent.get("metadata") or {}),
            **base,
        )
    if isinstance(err, stripe.RateLimitError):
        busy = "The payment processor is busy; please try again in a moment."
        return GatewayResult(
            status="error", decline_code="rate_limited", message=busy, retryable=True, **base
        )
    if isinstance(err, stripe.AuthenticationError | stripe.PermissionError):
        raise GatewayUnavailable(f"Stripe refused the API key: {err.user_message}") from err
    if isinstance(err, stripe.InvalidRequestError | stripe.IdempotencyError):
        return GatewayResult(
            status="error",
            decline_code=err.code or error.get("type") or "invalid_request",
            message=f"The payment processor refused the request: {err.user_message}",
            **base,
        )
    # Connection reset, timeout, 5xx, unreadable answer: Stripe may have acted.
    return GatewayResult(
        status="unknown",
        message="No answer from the payment processor; the outcome will be checked.",
        # A retry with the same key is safe; after a 5xx Stripe would replay the 5xx.
        retryable=isinstance(err, stripe.APIConnectionError),
        **base,
    )


def _error_body(err: stripe.StripeError) -> dict[str, Any]:
    error = err.json_body.get("error") if isinstance(err.json_body, dict) else None
    return error if isinstance(error, dict) else {}


def _rejection(err: stripe.StripeError) -> PaymentMethodRejected | None:
    """A refusal of the payment method itself, or None when the fault is elsewhere."""
    error = _error_body(err)
    param = error.get("param") or ""
    if not isinstance(err, stripe.CardError) and not (
        isinstance(err, stripe.InvalidRequestError) and param
    ):
        return None
    name = param.rstrip("]").rsplit("[", 1)[-1]
    if error.get("decline_code") or err.code == "card_declined":
        code, message = _decline(error.get("decline_code") or "card_declined")
    else:  # a typing mistake, not a decline
        code, reason = err.code or "invalid_request", _REASONS.get(err.code or "")
        message = reason[0].upper() + reason[1:] + "." if reason else str(err.user_message)
    return PaymentMethodRejected(code, message, _FIELDS.get(name, name))


def _setup_failure(err: stripe.StripeError) -> GatewayError:
    # A 4xx is a refusal with no effect; anything else may have reached Stripe.
    if isinstance(err, stripe.InvalidRequestError | stripe.IdempotencyError | _TURNED_AWAY):
        return GatewayUnavailable(f"Stripe refused the call: {err.user_message}")
    return GatewayError(f"Stripe's answer was lost: {err.user_message}")


def _tokenized(method: dict[str, Any]) -> TokenizedMethod:
    details = method.get(method["type"]) or {}  # the "card" or "us_bank_account" hash
    return TokenizedMethod(
        token=method["id"],
        kind="card" if method["type"] == "card" else "bank_account",
        last4=details.get("last4") or "",
        brand=details.get("brand") or "",
        exp_month=details.get("exp_month"),
        exp_year=details.get("exp_year"),
        bank_name=details.get("bank_name") or "",
        fingerprint=details.get("fingerprint") or "",
    )
