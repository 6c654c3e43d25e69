"""The payment gateway protocol: what Portico asks of any card processor.

Every processor module (``sandbox``, ``stripe``) implements :class:`PaymentGateway`.
Amounts are integer minor units with an ISO 4217 currency code. Card numbers and CVCs
pass through ``tokenize_card`` only; every other call uses the returned token, and no
result object carries a card number.

Outcomes of money-moving calls are *values*, not exceptions: a decline is an ordinary
answer (``status="declined"`` with a plain-words reason), and a lost answer (timeout,
connection reset, HTTP 5xx) is ``status="unknown"`` so the caller settles it later with
:meth:`PaymentGateway.retrieve` instead of charging again. Exceptions are kept for
input the processor refuses before any money moves (:class:`PaymentMethodRejected`) and
for calls that cannot have had an effect (:class:`GatewayUnavailable`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Outcome = Literal["approved", "declined", "error", "unknown"]
MethodKind = Literal["card", "bank_account"]
OperationKind = Literal["charge", "authorization", "capture", "void", "refund"]


@dataclass(frozen=True, repr=False)
class CardDetails:
    """Raw card input from a form; lives only for the duration of one request."""

    number: str
    exp_month: int
    exp_year: int
    cvc: str
    name: str = ""
    postal_code: str = ""

    def __repr__(self) -> str:  # never let a card number reach a log or traceback
        return f"CardDetails(last4={self.number[-4:]!r}, exp={self.exp_month}/{self.exp_year})"


@dataclass(frozen=True, repr=False)
class BankAccountDetails:
    """Raw US bank account (ACH) input from a form."""

    routing_number: str
    account_number: str
    account_holder: str
    account_type: Literal["checking", "savings"] = "checking"

    def __repr__(self) -> str:
        return f"BankAccountDetails(last4={self.account_number[-4:]!r})"


@dataclass(frozen=True)
class TokenizedMethod:
    """What Portico may store about a payment method."""

    token: str
    kind: MethodKind
    last4: str
    brand: str = ""
    exp_month: int | None = None
    exp_year: int | None = None
    bank_name: str = ""
    fingerprint: str = ""


@dataclass(frozen=True)
class GatewayResult:
    """The processor's answer to one money-moving call.

    ``reference`` is the processor's id of the charge/authorization/refund (empty when
    the answer was lost). ``decline_code`` is a stable machine word (``card_declined``,
    ``insufficient_funds``, ``expired_card``, ``incorrect_cvc``, ``processing_error``,
    ``rate_limited`` …) and ``message`` the reason in plain words for the payer.
    ``retryable`` says whether the same call (same idempotency key) may be tried again.
    """

    status: Outcome
    operation: OperationKind
    amount: int
    currency: str
    reference: str = ""
    decline_code: str = ""
    message: str = ""
    retryable: bool = False
    captured_amount: int = 0
    refunded_amount: int = 0
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def approved(self) -> bool:
        return self.status == "approved"


@dataclass(frozen=True)
class WebhookEvent:
    """A verified processor event: id (unique per processor), type, and its object.

    ``created`` is the processor's creation time of the event (seconds since the epoch,
    0 when the payload has none): events that arrive out of order are compared by it.
    """

    id: str
    type: str
    data: Mapping[str, object]
    created: int = 0


class GatewayError(Exception):
    """Base of the exceptions a gateway raises."""


class PaymentMethodRejected(GatewayError):
    """The processor refused to tokenize or attach a payment method.

    ``code`` is a machine word (``invalid_number``, ``expired_card``, ``card_declined``
    …) and ``message`` the reason in plain words; ``field`` names the form field at
    fault when there is one (``number``, ``exp``, ``cvc``, ``routing_number`` …).
    """

    def __init__(self, code: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class GatewayUnavailable(GatewayError):
    """The call certainly had no effect (refused before reaching the processor)."""


class WebhookSignatureError(GatewayError):
    """A webhook payload whose signature does not verify, or is too old."""


@runtime_checkable
class PaymentGateway(Protocol):
    """The operations Portico needs from a processor.

    Every method that moves money takes ``idempotency_key``; calling it again with the
    same key returns the first call's result and never moves money twice.
    ``metadata`` is stored with the processor object (Portico puts its attempt id and
    purpose key there) and comes back from :meth:`retrieve`.
    """

    name: str

    def create_customer(self, *, email: str, name: str, idempotency_key: str) -> str:
        """Create a processor customer; returns its reference."""
        ...

    def tokenize_card(self, card: CardDetails) -> TokenizedMethod:
        """Turn card input into a reusable token. Raises PaymentMethodRejected."""
        ...

    def tokenize_bank_account(self, account: BankAccountDetails) -> TokenizedMethod:
        """Turn bank account input into a reusable token. Raises PaymentMethodRejected."""
        ...

    def describe_payment_method(self, token: str) -> TokenizedMethod:
        """What the processor knows of a token made by its hosted card entry.

        Raises PaymentMethodRejected (code ``unknown_token``) for a token it never issued.
        """
        ...

    def attach_payment_method(self, *, customer_ref: str, token: str) -> TokenizedMethod:
        """Attach a token to a customer for later off-session use.

        Raises PaymentMethodRejected when the processor refuses it.
        """
        ...

    def detach_payment_method(self, *, token: str) -> None:
        """Detach a token from its customer for good: it can no longer be charged or
        attached again. Repeating the call for the same token does no harm.

        Raises PaymentMethodRejected when the processor refuses (an unknown token, or
        one attached to no customer), GatewayUnavailable or GatewayError when it cannot
        be asked.
        """
        ...

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
        """Charge and capture at once."""
        ...

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
        """Place a hold for later capture or void."""
        ...

    def capture(self, *, reference: str, amount: int, idempotency_key: str) -> GatewayResult:
        """Capture all or part of an authorization."""
        ...

    def void(self, *, reference: str, idempotency_key: str) -> GatewayResult:
        """Release an uncaptured authorization."""
        ...

    def refund(self, *, reference: str, amount: int, idempotency_key: str) -> GatewayResult:
        """Refund all or part of a captured charge."""
        ...

    def retrieve(self, *, idempotency_key: str) -> GatewayResult | None:
        """The outcome of the call made with ``idempotency_key``, or None if none landed."""
        ...

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Verify and decode a webhook. Raises WebhookSignatureError."""
        ...
