"""The sandbox processor: a stateful card network in test mode, kept in the database.

``SandboxGateway`` implements :class:`app.gateway.base.PaymentGateway` with the test card
and bank numbers of :mod:`app.gateway.sandbox_cards` (``TEST_CARDS``,
``TEST_BANK_ACCOUNTS``). It plays a *separate* system: each call checks out its own
connection from the engine and commits before returning, so callers must not hold a
transaction open around it (and never need to). Its state survives restarts and is
shared by every process on the same database, which is what lets a test inject a failure
into a server running in another process. A money call normally costs one connection
checkout and one transaction (see :mod:`app.gateway.sandbox_call`).

Failure injection (:meth:`SandboxGateway.inject`) simulates what real networks do:

- ``decline``: the next call declines with "Your card was declined.";
- ``timeout_after_charge``: the money moves but the answer is lost (``unknown``);
  :meth:`~SandboxGateway.retrieve` or a retry with the same key returns the approval;
- ``server_error``: an HTTP 500 before anything happened (``error``, retryable);
- ``rate_limit``: an HTTP 429 (``error``, ``rate_limited``, retryable), nothing moved.

:meth:`SandboxGateway.set_request_limit` makes every money call above N per second get
that 429, across processes, as a processor's rate limit does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Literal, get_args

from sqlalchemy import Engine

from app.clock import utcnow
from app.gateway import sandbox_call as call
from app.gateway import sandbox_ledger as ledger
from app.gateway import sandbox_limits as limits
from app.gateway import sandbox_money as money
from app.gateway import sandbox_webhooks as webhooks
from app.gateway.base import (
    BankAccountDetails,
    CardDetails,
    GatewayResult,
    OperationKind,
    TokenizedMethod,
    WebhookEvent,
)
from app.gateway.sandbox_cards import (
    TEST_BANK_ACCOUNTS,
    TEST_CARDS,
    TestBankAccount,
    TestCard,
    check_bank_account,
    check_card,
)
from app.gateway.sandbox_ledger import IdempotencyKeyReused, SandboxChargeRecord
from app.gateway.sandbox_webhooks import SIGNATURE_HEADER

Failure = Literal["decline", "timeout_after_charge", "server_error", "rate_limit"]

LATENCY_ENV = "SANDBOX_LATENCY_MS"

# Method names are accepted for the operation too ("authorize" for "authorization").
_OPERATIONS: Mapping[str, str] = {
    **{op: op for op in get_args(OperationKind)},
    "authorize": "authorization",
    "*": "*",
}

__all__ = [
    "LATENCY_ENV",
    "SIGNATURE_HEADER",
    "TEST_BANK_ACCOUNTS",
    "TEST_CARDS",
    "Failure",
    "IdempotencyKeyReused",
    "SandboxChargeRecord",
    "SandboxGateway",
    "TestBankAccount",
    "TestCard",
]


class SandboxGateway:
    """A persistent test processor on ``engine``; see the module docstring."""

    name = "sandbox"

    def __init__(
        self,
        engine: Engine,
        *,
        latency_ms: int | None = None,
        webhook_secret: str = "whsec_sandbox",
    ) -> None:
        """Build a sandbox on ``engine`` (whose ``sandbox_*`` tables must exist).

        ``latency_ms`` is slept at the start of every processor call; when None it is
        read from the ``SANDBOX_LATENCY_MS`` environment variable (default 0).

        Raises:
            ValueError: a negative or non-integer latency.
        """
        if latency_ms is None:
            latency_ms = int(os.environ.get(LATENCY_ENV, "") or 0)
        if latency_ms < 0:
            raise ValueError("latency_ms must be zero or more")
        self.engine = engine
        self.latency_ms = latency_ms
        self._webhook_secret = webhook_secret.encode()

    # -- customers and payment methods -------------------------------------------------

    def create_customer(self, *, email: str, name: str, idempotency_key: str) -> str:
        """Create a sandbox customer and return its reference (``cus_sbx_…``).

        The same key returns the same customer.

        Raises:
            IdempotencyKeyReused: the key was used before with another email or name.
        """
        self._pause()
        params = {"email": email, "name": name}
        with self.engine.connect() as conn:
            response = ledger.run_once(
                conn,
                key=idempotency_key,
                operation="create_customer",
                fingerprint=ledger.request_fingerprint("create_customer", params),
                perform=lambda c: ledger.perform_create_customer(
                    c, key=idempotency_key, email=email, name=name
                ),
                # Asking again for a customer is common and must only read (the reconciler
                # does it inside its own transaction).
                look_first=True,
            )
        return str(response["reference"])

    def tokenize_card(self, card: CardDetails) -> TokenizedMethod:
        """Check card input and return a token (``pm_sbx_…``) with brand, last 4, expiry.

        Declining test cards tokenize fine; they decline when attached or charged.

        Raises:
            PaymentMethodRejected: ``invalid_number`` (field ``number``), ``card_declined``
                for a number that is not a test card (field ``number``), ``expired_card``
                or an invalid expiry (field ``exp``), ``invalid_cvc`` (field ``cvc``).
        """
        self._pause()
        return ledger.store_payment_method(self.engine, check_card(card, today=utcnow().date()))

    def tokenize_bank_account(self, account: BankAccountDetails) -> TokenizedMethod:
        """Check bank account input and return a token with last 4 and bank name.

        Raises:
            PaymentMethodRejected: ``invalid_routing_number`` (field ``routing_number``)
                or ``invalid_account_number`` (field ``account_number``).
        """
        self._pause()
        return ledger.store_payment_method(self.engine, check_bank_account(account))

    def describe_payment_method(self, token: str) -> TokenizedMethod:
        """Brand, last 4 and expiry of a sandbox token (from hosted card entry).

        Raises PaymentMethodRejected for a token the sandbox never issued.
        """
        return ledger.describe_payment_method(self.engine, token)

    def attach_payment_method(self, *, customer_ref: str, token: str) -> TokenizedMethod:
        """Save a token on a customer for later off-session charges.

        Raises:
            PaymentMethodRejected: a declining test card or account (with its plain
                reason; 4000 0000 0000 0341 attaches), an unknown customer or token, or
                a token already attached to another customer.
        """
        self._pause()
        return ledger.attach_payment_method(self.engine, customer_ref=customer_ref, token=token)

    def detach_payment_method(self, *, token: str) -> None:
        """Detach a token from its customer; it then can no longer be charged (an
        ``error``, ``payment_method_unavailable``), attached or described. Detaching it
        again does nothing.

        Raises:
            PaymentMethodRejected: ``resource_missing`` for a token the sandbox never issued.
        """
        self._pause()
        ledger.detach_payment_method(self.engine, token)

    # -- money ---------------------------------------------------------------------------

    def charge(
        self,
        *,
        amount: int,
        currency: str,
        token: str,
        idempotency_key: str,
        customer_ref: str = "",
        description: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> GatewayResult:
        """Charge and capture ``amount`` minor units on ``token``, once per key.

        Returns an approved, declined (with the test card's reason), error or unknown
        result; never raises for a decline.
        """
        self._pause()
        return call.charge_call(
            self.engine,
            "charge",
            amount=amount,
            currency=currency,
            token=token,
            key=idempotency_key,
            customer_ref=customer_ref,
            description=description,
            metadata=metadata,
        )

    def authorize(
        self,
        *,
        amount: int,
        currency: str,
        token: str,
        idempotency_key: str,
        customer_ref: str = "",
        description: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> GatewayResult:
        """Hold ``amount`` on ``token`` for a later capture or void, once per key.

        Returns a result like :meth:`charge` with ``operation="authorization"``.
        """
        self._pause()
        return call.charge_call(
            self.engine,
            "authorization",
            amount=amount,
            currency=currency,
            token=token,
            key=idempotency_key,
            customer_ref=customer_ref,
            description=description,
            metadata=metadata,
        )

    def capture(self, *, reference: str, amount: int, idempotency_key: str) -> GatewayResult:
        """Capture ``amount`` (all or part) of an open authorization, once per key.

        Declines when the authorization was already captured or voided, or when
        ``amount`` is more than was authorized; the rest of a partial capture is released.
        """
        self._pause()
        return call.on_charge_call(
            self.engine,
            "capture",
            reference=reference,
            amount=amount,
            key=idempotency_key,
            params={"reference": reference, "amount": amount},
            perform=money.perform_capture,
        )

    def void(self, *, reference: str, idempotency_key: str) -> GatewayResult:
        """Release an uncaptured authorization, once per key.

        Declines for a captured payment (refund it instead) or an already voided one.
        """
        self._pause()
        return call.on_charge_call(
            self.engine,
            "void",
            reference=reference,
            amount=0,
            key=idempotency_key,
            params={"reference": reference},
            perform=money.perform_void,
        )

    def refund(self, *, reference: str, amount: int, idempotency_key: str) -> GatewayResult:
        """Refund ``amount`` (all or part) of a captured payment, once per key.

        Declines, with a message saying how much is left, when ``amount`` is more than
        the captured amount minus earlier refunds. An approved result's reference is
        the refund's (``re_sbx_…``).
        """
        self._pause()
        return call.on_charge_call(
            self.engine,
            "refund",
            reference=reference,
            amount=amount,
            key=idempotency_key,
            params={"reference": reference, "amount": amount},
            perform=money.perform_refund,
        )

    def retrieve(self, *, idempotency_key: str) -> GatewayResult | None:
        """The stored outcome of the money call made with ``idempotency_key``.

        Returns None when no call with that key landed (including calls that failed
        with a retryable error, which leave no trace).
        """
        self._pause()
        stored = ledger.stored_response(self.engine, idempotency_key)
        if stored is None or stored[0] not in get_args(OperationKind):
            return None
        return ledger.result_from_dict(stored[1])

    def list_charges(self) -> list[SandboxChargeRecord]:
        """Every sandbox charge and authorization (declined ones included), oldest first."""
        return ledger.list_charges(self.engine)

    # -- failure injection ---------------------------------------------------------------

    def inject(self, failure: Failure, *, times: int = 1, operation: str = "charge") -> None:
        """Make the next ``times`` calls of ``operation`` suffer ``failure``.

        ``operation`` is ``charge``, ``authorize``, ``capture``, ``void``, ``refund`` or
        ``*`` (any of them). The injection is stored in the database, so it reaches
        every process using it; each call consumes one use.

        Raises:
            ValueError: an unknown failure or operation, or ``times`` below 1.
        """
        if failure not in get_args(Failure):
            raise ValueError(f"unknown failure {failure!r}")
        if operation not in _OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        limits.add_injection(
            self.engine, failure=failure, operation=_OPERATIONS[operation], times=times
        )

    def clear_injections(self) -> None:
        """Forget every injected failure, used or not (and lift the request limit)."""
        limits.clear_injections(self.engine)

    def set_request_limit(self, per_second: int | None) -> None:
        """Answer 429 (``rate_limited``, retryable, nothing moved) to money calls above
        ``per_second`` in a wall-clock second, in every process; None lifts the limit."""
        limits.set_request_limit(self.engine, per_second)

    # -- webhooks ------------------------------------------------------------------------

    def sign_webhook(self, payload: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """Headers that make :meth:`parse_webhook` accept ``payload`` (signed now by default)."""
        stamp = int(utcnow().timestamp()) if timestamp is None else timestamp
        return webhooks.sign(self._webhook_secret, payload, timestamp=stamp)

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify the ``Sandbox-Signature`` header and decode the event.

        The header is ``t=<unix time>,v1=<hex HMAC-SHA256 of "t." + payload>``, signed
        with the constructor's ``webhook_secret``, and the timestamp must be within 300
        seconds of now. The payload is a JSON object with ``id``, ``type`` and ``data``.

        Raises:
            WebhookSignatureError: missing or malformed header, no matching signature,
                a timestamp outside the tolerance, or a payload that is not an event.
        """
        return webhooks.verify(self._webhook_secret, payload, headers, now=utcnow().timestamp())

    # -- internals -----------------------------------------------------------------------

    def _pause(self) -> None:
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
