"""Stripe as Portico's processor: ``stripe.StripeClient`` and the PaymentIntents API.

With ``stripe_results.py`` beside it, the only code that imports ``stripe``. Its own
client (no global ``stripe.api_key``), Portico's idempotency key on every POST; a
decline is a result, a lost answer is ``status="unknown"`` to be settled by
:meth:`StripeGateway.retrieve`.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping
from typing import Any

import stripe

from app.clock import utcnow
from app.gateway.base import (
    BankAccountDetails,
    CardDetails,
    GatewayResult,
    GatewayUnavailable,
    OperationKind,
    PaymentMethodRejected,
    TokenizedMethod,
    WebhookEvent,
    WebhookSignatureError,
)
from app.gateway.stripe_results import (
    _failure,
    _intent_result,
    _refund_result,
    _rejection,
    _setup_failure,
    _tokenized,
)


class StripeGateway:
    """:class:`app.gateway.base.PaymentGateway` on Stripe (PaymentIntents, Refunds)."""

    name = "stripe"

    def __init__(
        self,
        api_key: str,
        *,
        webhook_secret: str = "",
        api_base: str | None = None,
        timeout_seconds: float = 20,
        allow_raw_card_data: bool = False,
    ) -> None:
        """A client for one Stripe account; ``api_base`` points it at another server.

        ``tokenize_card`` is refused with a live key unless ``allow_raw_card_data``
        (docs/decisions/0002-stripe-tokenization.md). Raises ValueError without a key.
        """
        if not api_key:
            raise ValueError("StripeGateway needs a secret API key (STRIPE_SECRET_KEY)")
        self._webhook_secret = webhook_secret
        self._raw_cards_ok = allow_raw_card_data or not api_key.startswith(("sk_live", "rk_live"))
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            # One call is one request: a lost answer goes back as "unknown" and the
            # reconciler settles it, instead of a web request sleeping through retries.
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout_seconds),
        )

    def create_customer(self, *, email: str, name: str, idempotency_key: str) -> str:
        """Create a Stripe Customer and return its id (``cus_…``).

        Raises GatewayUnavailable when Stripe refused the call (key, rate limit, bad
        input), else GatewayError when the answer was lost (retry with the same key).
        """
        try:
            customer = self._client.v1.customers.create(
                params={"email": email, "name": name}, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as err:
            raise _setup_failure(err) from err
        return str(customer.id)

    def tokenize_card(self, card: CardDetails) -> TokenizedMethod:
        """Create a card PaymentMethod from raw card input (test mode / local API only).

        Raises PaymentMethodRejected (bad number, expiry, CVC…), GatewayUnavailable
        (live key without ``allow_raw_card_data``, or refused call) or GatewayError.
        """
        if not self._raw_cards_ok:
            raise GatewayUnavailable("raw card numbers are not sent to Stripe in live mode")
        postal = {"postal_code": card.postal_code} if card.postal_code else None
        billing = {"name": card.name or None, "address": postal}
        # The card dict stays inline so no local variable of ours holds the number.
        return self._create_method(
            {
                "type": "card",
                "card": {
                    "number": card.number,
                    "exp_month": card.exp_month,
                    "exp_year": card.exp_year,
                    "cvc": card.cvc,
                },
                "billing_details": billing,
            }
        )

    def tokenize_bank_account(self, account: BankAccountDetails) -> TokenizedMethod:
        """Create a ``us_bank_account`` PaymentMethod from routing and account numbers.

        Raises PaymentMethodRejected (bad routing number…), GatewayUnavailable, GatewayError.
        """
        return self._create_method(
            {
                "type": "us_bank_account",
                "us_bank_account": {
                    "routing_number": account.routing_number,
                    "account_number": account.account_number,
                    "account_holder_type": "individual",
                    "account_type": account.account_type,
                },
                "billing_details": {"name": account.account_holder},
            }
        )

    def describe_payment_method(self, token: str) -> TokenizedMethod:
        """Retrieve a PaymentMethod made client-side (Payment Element) by its id.

        Raises PaymentMethodRejected when Stripe does not know it, GatewayUnavailable or
        GatewayError when Stripe cannot be asked.
        """
        try:
            method = self._client.v1.payment_methods.retrieve(token)
        except stripe.InvalidRequestError as err:
            raise PaymentMethodRejected(
                "unknown_token", "This payment method could not be found. Enter it again.", "number"
            ) from err
        except stripe.StripeError as err:
            raise _setup_failure(err) from err
        return _tokenized(method.to_dict())

    def attach_payment_method(self, *, customer_ref: str, token: str) -> TokenizedMethod:
        """Attach a PaymentMethod to a Customer so it can be charged off-session.

        Raises PaymentMethodRejected when Stripe declines the card on attach,
        GatewayUnavailable or GatewayError.
        """
        try:
            method = self._client.v1.payment_methods.attach(
                token,
                params={"customer": customer_ref},
                options={"idempotency_key": f"attach:{customer_ref}:{token}"},
            )
        except stripe.StripeError as err:
            raise _rejection(err) or _setup_failure(err) from err
        return _tokenized(method.to_dict())

    def detach_payment_method(self, *, token: str) -> None:
        """Detach a PaymentMethod from its Customer (``POST …/detach``); Stripe then
        refuses to charge or attach it again. A repeat within 24 hours replays the first
        answer (same idempotency key).

        Raises PaymentMethodRejected when Stripe refuses it (unknown, or attached to no
        customer), GatewayUnavailable or GatewayError.
        """
        try:
            self._client.v1.payment_methods.detach(
                token, options={"idempotency_key": f"detach:{token}"}
            )
        except stripe.InvalidRequestError as err:
            raise PaymentMethodRejected(
                err.code or "invalid_request", str(err.user_message or "Stripe refused it.")
            ) from err
        except stripe.StripeError as err:
            raise _setup_failure(err) from err

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
        """Create and confirm a PaymentIntent that captures at once.

        With ``customer_ref`` the payment is off-session (the token must be attached
        to that customer). Returns approved/declined/error/unknown; raises
        GatewayUnavailable only for a key Stripe refuses.
        """
        args = (amount, currency, token, idempotency_key, customer_ref, description, metadata)
        return self._create_intent("charge", *args)

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
        """Like :meth:`charge` with ``capture_method="manual"``: a hold to capture or void."""
        args = (amount, currency, token, idempotency_key, customer_ref, description, metadata)
        return self._create_intent("authorization", *args)

    def capture(self, *, reference: str, amount: int, idempotency_key: str) -> GatewayResult:
        """Capture ``amount`` of an authorized PaymentIntent; the rest is released."""
        try:
            intent = self._client.v1.payment_intents.capture(
                reference,
                params={"amount_to_capture": amount},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as err:
            return _failure(err, "capture", amount, "")
        return _intent_result(intent.to_dict(), "capture")

    def void(self, *, reference: str, idempotency_key: str) -> GatewayResult:
        """Cancel an uncaptured PaymentIntent, releasing the hold."""
        try:
            intent = self._client.v1.payment_intents.cancel(
                reference, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as err:
            return _failure(err, "void", 0, "")
        return _intent_result(intent.to_dict(), "void")

    def refund(self, *, reference: str, amount: int, idempotency_key: str) -> GatewayResult:
        """Refund ``amount`` of a captured PaymentIntent; the key is kept in metadata."""
        try:
            refund = self._client.v1.refunds.create(
                params={
                    "payment_intent": reference,
                    "amount": amount,
                    "metadata": {"idempotency_key": idempotency_key},
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as err:
            return _failure(err, "refund", amount, "")
        return _refund_result(refund.to_dict())

    def retrieve(self, *, idempotency_key: str) -> GatewayResult | None:
        """The outcome of the charge, authorization or refund made with ``idempotency_key``.

        PaymentIntents are found by ``metadata['idempotency_key']`` (Stripe Search lags
        writes by up to a minute), refunds among the latest 300. Captures and voids are
        not found: retry them with the same key (Stripe's states make a repeat harmless).
        None means "not found yet". Raises GatewayUnavailable when Stripe can't be asked.
        """
        escaped = idempotency_key.replace("\\", "\\\\").replace("'", "\\'")
        try:
            found = self._client.v1.payment_intents.search(
                params={"query": f"metadata['idempotency_key']:'{escaped}'", "limit": 1}
            )
            if found.data:
                intent = found.data[0].to_dict()
                kind = "authorization" if intent.get("capture_method") == "manual" else "charge"
                return _intent_result(intent, kind)
            refunds = self._client.v1.refunds.list(params={"limit": 100}).auto_paging_iter()
            for item in itertools.islice(refunds, 300):  # refunds have no search
                refund = item.to_dict()
                if (refund.get("metadata") or {}).get("idempotency_key") == idempotency_key:
                    return _refund_result(refund)
        except stripe.StripeError as err:
            raise GatewayUnavailable(f"could not ask Stripe: {err.user_message}") from err
        return None

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify the ``Stripe-Signature`` header (HMAC-SHA256, 5-minute tolerance).

        Returns the event, ``data`` being its object as plain dicts. Raises
        WebhookSignatureError for a missing, wrong or stale signature, a timestamp more
        than the tolerance in the future, or no secret.
        """
        if not self._webhook_secret:
            raise WebhookSignatureError("no Stripe webhook secret is configured")
        signature = next((v for k, v in headers.items() if k.lower() == "stripe-signature"), None)
        try:
            event = self._client.construct_event(payload, signature, self._webhook_secret)
        except (stripe.SignatureVerificationError, ValueError) as err:
            raise WebhookSignatureError(str(err)) from None
        # stripe-python refuses only old timestamps; a future one is as suspect (ADR 0018).
        parts = [part.strip() for part in (signature or "").split(",")]
        stamps = [part[2:] for part in parts if part.startswith("t=")]
        tolerance = stripe.Webhook.DEFAULT_TOLERANCE
        latest = utcnow().timestamp() + tolerance
        if any(int(t) > latest for t in stamps if t.isdigit()):
            raise WebhookSignatureError("The signature's timestamp is in the future.")
        body = event.to_dict()
        created = body.get("created")
        return WebhookEvent(
            id=body["id"],
            type=body["type"],
            data=body["data"]["object"],
            created=created if isinstance(created, int) else 0,
        )

    def _create_method(self, params: dict[str, Any]) -> TokenizedMethod:
        # Nothing of ours identifies a tokenization, so the key is fresh: it still makes
        # the POST safe to repeat, and a stray PaymentMethod moves no money.
        try:
            method = self._client.v1.payment_methods.create(
                params=params, options={"idempotency_key": f"tokenize:{uuid.uuid4().hex}"}
            )
        except stripe.StripeError as err:
            # No cause chained: the request behind it carried card data.
            raise _rejection(err) or _setup_failure(err) from None
        return _tokenized(method.to_dict())

    def _create_intent(
        self,
        operation: OperationKind,
        amount: int,
        currency: str,
        token: str,
        idempotency_key: str,
        customer_ref: str,
        description: str,
        metadata: Mapping[str, str] | None,
    ) -> GatewayResult:
        manual, off_session = operation == "authorization", bool(customer_ref)
        params: dict[str, Any] = {  # None values are left out of the request
            "amount": amount,
            "currency": currency.lower(),
            "payment_method": token,
            "confirm": True,
            # No redirect-based methods: a server-side confirm has no return_url.
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            # The key in metadata is how retrieve() finds a charge whose answer was lost.
            "metadata": {**(metadata or {}), "idempotency_key": idempotency_key},
            "capture_method": "manual" if manual else None,
            "customer": customer_ref or None,
            "off_session": True if off_session else None,
            "description": description or None,
        }
        try:
            intent = self._client.v1.payment_intents.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as err:
            return _failure(err, operation, amount, currency.upper())
        return _intent_result(intent.to_dict(), operation)
