"""A local HTTP server that speaks the part of the Stripe API Portico uses.

It sits at the process boundary for tests of ``app.gateway.stripe``: the real
``stripe`` client library talks HTTP to it, exactly as it would to api.stripe.com.
Form-encoded bodies (``metadata[key]=v``), Stripe-shaped JSON objects and errors,
bearer-key checks, idempotency keys honoured like Stripe (same key and parameters →
the stored response; other parameters → 400 ``idempotency_error``), and Stripe's test
card numbers. Every request is recorded; a POST without ``Idempotency-Key`` is refused
and recorded as a violation. Faults can be queued: drop the connection, answer 500 or
429, process and then drop, or answer late.

    with FakeStripe() as fake:
        gateway = StripeGateway(fake.api_key, api_base=fake.url)
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

FaultMode = Literal["drop", "500", "429", "process_then_drop", "slow"]

# number -> (brand, behaviour); behaviours follow Stripe's documented test cards.
TEST_CARDS: dict[str, tuple[str, str]] = {
    "4242424242424242": ("visa", "approve"),
    "5555555555554444": ("mastercard", "approve"),
    "378282246310005": ("amex", "approve"),
    "4000000000000002": ("visa", "generic_decline"),
    "4000000000009995": ("visa", "insufficient_funds"),
    "4000000000000069": ("visa", "expired_card"),
    "4000000000000127": ("visa", "incorrect_cvc"),
    "4000000000000341": ("visa", "decline_after_attach"),
    "4000002760003184": ("visa", "authentication_required"),
}
TEST_ROUTING_NUMBERS = {"110000000": "STRIPE TEST BANK"}
CURRENCIES = {"usd", "eur", "gbp", "cad", "aud", "chf", "jpy", "bhd", "sek", "nok", "dkk"}
DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
}


_USED_UP = (
    "This PaymentMethod was previously used without being attached to a Customer or was "
    "detached from a Customer, and may not be used again."
)


class StripeFault(Exception):
    """An error answer: HTTP status and Stripe's ``error`` object."""

    def __init__(self, status: int, type_: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error = {"type": type_, "message": message, **extra}


def invalid(message: str, param: str = "", code: str = "") -> StripeFault:
    extra = {k: v for k, v in (("param", param), ("code", code)) if v}
    return StripeFault(400, "invalid_request_error", message, **extra)


@dataclass
class RecordedRequest:
    """One request as the fake saw it (params decoded and nested)."""

    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None


@dataclass
class _Fault:
    mode: FaultMode
    path: str
    delay: float


@dataclass
class FakeStripe:
    """The fake server and its state; use as a context manager (start/stop)."""

    api_key: str = "sk_test_portico_fake"
    requests: list[RecordedRequest] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._idempotent: dict[str, tuple[str, dict[str, Any], int, dict[str, Any]]] = {}
        self._faults: list[_Fault] = []
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle -----------------------------------------------------------------
    def start(self) -> FakeStripe:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- test controls ---------------------------------------------------------------
    def fail_next(self, mode: FaultMode, *, path: str = "", delay: float = 0.0) -> None:
        """Make the next request whose path contains ``path`` fail.

        ``drop`` closes the connection unprocessed; ``500``/``429`` answer an error
        unprocessed; ``process_then_drop`` processes (and stores the idempotent answer)
        and closes without answering; ``slow`` waits ``delay`` seconds, then processes.
        """
        with self._lock:
            self._faults.append(_Fault(mode, path, delay))

    def posts(self, path_prefix: str = "") -> list[RecordedRequest]:
        """Recorded POSTs, optionally only those under ``path_prefix``."""
        return [r for r in self.requests if r.method == "POST" and r.path.startswith(path_prefix)]

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path in path:
                    self._faults.remove(fault)
                    return fault
        return None

    # --- request handling ------------------------------------------------------------
    def handle(
        self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """Answer one authenticated request, honouring idempotency keys on POST."""
        if headers.get("authorization") != f"Bearer {self.api_key}":
            raise StripeFault(401, "invalid_request_error", "Invalid API Key provided.")
        if method != "POST":
            with self._lock:
                return 200, self._route(method, path, params)
        key = headers.get("idempotency-key")
        if not key:
            self.violations.append(f"POST {path} without Idempotency-Key")
            raise invalid("Every POST must carry an Idempotency-Key header.")
        with self._lock:
            stored = self._idempotent.get(key)
            if stored is not None:
                if stored[:2] != (path, params):
                    raise StripeFault(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with.",
                    )
                return stored[2], stored[3]
            try:
                status, body = 200, self._route(method, path, params)
            except StripeFault as fault:
                if fault.status != 402:  # Stripe keeps only answers of endpoints that ran
                    raise
                status, body = fault.status, {"error": fault.error}
            self._idempotent[key] = (path, params, status, body)
            return status, body

    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        routes = [
            ("POST", r"/v1/customers", self._create_customer),
            ("POST", r"/v1/payment_methods", self._create_payment_method),
            ("POST", r"/v1/payment_methods/(pm_\w+)/attach", self._attach),
            ("POST", r"/v1/payment_methods/(pm_\w+)/detach", self._detach),
            ("GET", r"/v1/payment_intents/search", self._search_intents),
            ("POST", r"/v1/payment_intents", self._create_intent),
            ("GET", r"/v1/payment_intents/(pi_\w+)", self._get_intent),
            ("POST", r"/v1/payment_intents/(pi_\w+)/capture", self._capture),
            ("POST", r"/v1/payment_intents/(pi_\w+)/cancel", self._cancel),
            ("POST", r"/v1/refunds", self._create_refund),
            ("GET", r"/v1/refunds", self._list_refunds),
        ]
        for verb, pattern, action in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                return action(params, *match.groups())
        raise StripeFault(404, "invalid_request_error", f"Unrecognized request URL ({path}).")

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"

    def _create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = {"id": self._id("cus"), "object": "customer", "email": params.get("email")}
        customer.update(name=params.get("name"), metadata=params.get("metadata", {}))
        self.customers[customer["id"]] = customer
        return customer

    def _create_payment_method(self, params: dict[str, Any]) -> dict[str, Any]:
        kind = params.get("type")
        billing = params.get("billing_details", {})
        method: dict[str, Any] = {"id": self._id("pm"), "object": "payment_method", "type": kind}
        method.update(customer=None, billing_details=billing, livemode=False, _used=False)
        if kind == "card":
            method["card"] = _card(params.get("card", {}))
        elif kind == "us_bank_account":
            if not billing.get("name"):
                raise invalid(
                    "Missing required param: billing_details[name].", "billing_details[name]"
                )
            method["us_bank_account"] = _bank_account(params.get("us_bank_account", {}))
        else:
            raise invalid(f"Invalid payment method type: {kind}", "type")
        self.payment_methods[method["id"]] = method
        return _public(method)

    def _attach(self, params: dict[str, Any], pm_id: str) -> dict[str, Any]:
        method = self._method(pm_id, "payment_method")
        customer = params.get("customer", "")
        if customer not in self.customers:
            raise invalid(f"No such customer: '{customer}'", "customer", "resource_missing")
        if method["customer"] not in (None, customer):
            raise invalid("The payment method is attached to another customer.", "payment_method")
        if method["_used"]:
            raise invalid(_USED_UP)
        behaviour = method.get("card", {}).get("_behaviour", "approve")
        if behaviour in ("generic_decline", "insufficient_funds", "expired_card", "incorrect_cvc"):
            raise _card_error(behaviour)
        method["customer"] = customer
        return _public(method)

    def _detach(self, params: dict[str, Any], pm_id: str) -> dict[str, Any]:
        method = self._method(pm_id, "payment_method")
        if method["customer"] is None:
            raise invalid(
                "The payment method you provided is not attached to a customer so "
                "detachment is impossible."
            )
        # Like Stripe: a detached PaymentMethod can never be used or attached again.
        method.update(customer=None, _used=True)
        return _public(method)

    def _create_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        amount = _positive_int(params.get("amount"), "amount")
        currency = str(params.get("currency", "")).lower()
        if currency not in CURRENCIES:
            raise invalid(f"Invalid currency: {currency}.", "currency")
        method = self._method(params.get("payment_method", ""), "payment_method")
        customer = params.get("customer")
        if customer is not None and customer not in self.customers:
            raise invalid(f"No such customer: '{customer}'", "customer", "resource_missing")
        if method["customer"] != customer and (method["customer"] or customer):
            raise invalid(
                f"The PaymentMethod {method['id']} does not belong to the Customer {customer}.",
                "payment_method",
            )
        if method["_used"]:
            raise invalid(_USED_UP)
        off_session = params.get("off_session") == "true"
        if off_session and params.get("confirm") != "true":
            raise invalid("off_session can only be used with confirm=true.", "off_session")
        intent: dict[str, Any] = {"id": self._id("pi"), "object": "payment_intent"}
        intent.update(
            amount=amount,
            currency=currency,
            customer=customer,
            payment_method=method["id"],
            capture_method=params.get("capture_method", "automatic"),
            description=params.get("description"),
            metadata=params.get("metadata", {}),
            status="requires_confirmation",
            amount_capturable=0,
            amount_received=0,
            last_payment_error=None,
            latest_charge=None,
            cancellation_reason=None,
            created=next(self._ids),
            livemode=False,
        )
        self.intents[intent["id"]] = intent
        if method["customer"] is None:
            method["_used"] = True
        if params.get("confirm") == "true":
            self._confirm(intent, method, off_session)
        return dict(intent)

    def _confirm(self, intent: dict[str, Any], method: dict[str, Any], off_session: bool) -> None:
        if method["type"] == "us_bank_account":
            intent["status"] = "processing"  # ACH debits settle days later
            return
        behaviour = method["card"]["_behaviour"]
        if behaviour == "authentication_required" and not off_session:
            intent["status"] = "requires_action"
            return
        if behaviour != "approve":
            fault = _card_error(
                "generic_decline" if behaviour == "decline_after_attach" else behaviour
            )
            intent.update(status="requires_payment_method", last_payment_error=dict(fault.error))
            fault.error["payment_intent"] = dict(intent)
            raise fault
        intent["latest_charge"] = self._id("ch")
        if intent["capture_method"] == "manual":
            intent.update(status="requires_capture", amount_capturable=intent["amount"])
        else:
            intent.update(status="succeeded", amount_received=intent["amount"])

    def _get_intent(self, params: dict[str, Any], pi_id: str) -> dict[str, Any]:
        return dict(self._intent(pi_id))

    def _search_intents(self, params: dict[str, Any]) -> dict[str, Any]:
        query = str(params.get("query", ""))
        clauses = re.findall(r"metadata\['((?:[^'\\]|\\.)*)'\]:'((?:[^'\\]|\\.)*)'", query)
        if not clauses:
            raise invalid("This fake only searches metadata['key']:'value' clauses.", "query")
        wanted = {_unescape(k): _unescape(v) for k, v in clauses}
        found = [
            dict(i)
            for i in sorted(self.intents.values(), key=lambda i: -i["created"])
            if all(i["metadata"].get(k) == v for k, v in wanted.items())
        ]
        limit = int(params.get("limit", 10))
        return {
            "object": "search_result",
            "url": "/v1/payment_intents/search",
            "data": found[:limit],
            "has_more": len(found) > limit,
            "next_page": None,
        }

    def _capture(self, params: dict[str, Any], pi_id: str) -> dict[str, Any]:
        intent = self._intent(pi_id)
        if intent["status"] != "requires_capture":
            raise invalid(
                f"This PaymentIntent could not be captured because it has a status of "
                f"{intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        amount = _positive_int(
            params.get("amount_to_capture", intent["amount_capturable"]), "amount_to_capture"
        )
        if amount > intent["amount_capturable"]:
            raise invalid(
                "amount_to_capture is greater than the amount capturable.", "amount_to_capture"
            )
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        return dict(intent)

    def _cancel(self, params: dict[str, Any], pi_id: str) -> dict[str, Any]:
        intent = self._intent(pi_id)
        if intent["status"] in ("succeeded", "canceled"):
            raise invalid(
                "You cannot cancel this PaymentIntent because it has a status of "
                f"{intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        reason = params.get("cancellation_reason")
        intent.update(status="canceled", amount_capturable=0, cancellation_reason=reason)
        return dict(intent)

    def _create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        intent = self._intent(params.get("payment_intent", ""))
        if intent["status"] != "succeeded":
            raise invalid("This PaymentIntent has no captured charge to refund.", "payment_intent")
        refunded = sum(
            r["amount"] for r in self.refunds.values() if r["payment_intent"] == intent["id"]
        )
        left = intent["amount_received"] - refunded
        if left <= 0:
            raise invalid("Charge has already been refunded.", code="charge_already_refunded")
        amount = _positive_int(params.get("amount", left), "amount")
        if amount > left:
            raise invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount ({left}).",
                "amount",
                "amount_too_large",
            )
        refund = {"id": self._id("re"), "object": "refund", "amount": amount}
        refund.update(
            currency=intent["currency"],
            payment_intent=intent["id"],
            charge=intent["latest_charge"],
            status="succeeded",
            failure_reason=None,
            metadata=params.get("metadata", {}),
            created=next(self._ids),
        )
        self.refunds[refund["id"]] = refund
        return dict(refund)

    def _list_refunds(self, params: dict[str, Any]) -> dict[str, Any]:
        refunds = sorted(self.refunds.values(), key=lambda r: -r["created"])
        if after := params.get("starting_after"):
            ids = [r["id"] for r in refunds]
            refunds = refunds[ids.index(after) + 1 :] if after in ids else []
        limit = min(int(params.get("limit", 10)), 100)
        page = [dict(r) for r in refunds[:limit]]
        return {
            "object": "list",
            "url": "/v1/refunds",
            "data": page,
            "has_more": len(refunds) > limit,
        }

    def _method(self, pm_id: str, param: str) -> dict[str, Any]:
        if pm_id not in self.payment_methods:
            raise invalid(f"No such PaymentMethod: '{pm_id}'", param, "resource_missing")
        return self.payment_methods[pm_id]

    def _intent(self, pi_id: str) -> dict[str, Any]:
        if pi_id not in self.intents:
            raise StripeFault(
                404,
                "invalid_request_error",
                f"No such payment_intent: '{pi_id}'",
                code="resource_missing",
            )
        return self.intents[pi_id]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeStripe

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        params = parse_form(body if method == "POST" else url.query)
        headers = {k.lower(): v for k, v in self.headers.items()}
        key = headers.get("idempotency-key")
        self.fake.requests.append(RecordedRequest(method, url.path, params, key))
        fault = self.fake._take_fault(url.path)
        if fault and fault.mode == "drop":
            return self._drop()
        if fault and fault.mode in ("500", "429"):
            status, kind = (
                (500, "api_error") if fault.mode == "500" else (429, "invalid_request_error")
            )
            message = "Internal error." if fault.mode == "500" else "Too many requests."
            code = {"code": "rate_limit"} if fault.mode == "429" else {}
            return self._send(status, {"error": {"type": kind, "message": message, **code}})
        if fault and fault.mode == "slow":
            time.sleep(fault.delay)
        try:
            status, answer = self.fake.handle(method, url.path, params, headers)
        except StripeFault as err:
            status, answer = err.status, {"error": err.error}
        if fault and fault.mode == "process_then_drop":
            return self._drop()
        self._send(status, answer)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", f"req_fake{time.monotonic_ns()}")
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout): Stripe would have acted anyway
            return

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


# --- Stripe conventions -----------------------------------------------------------------


def parse_form(body: str) -> dict[str, Any]:
    """Decode Stripe's form encoding (``a[b][c]=v``) into nested dicts of strings."""
    result: dict[str, Any] = {}
    for name, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", name)
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


def sign_webhook(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header value: ``t=…,v1=HMAC_SHA256(secret, "t.payload")``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


def _luhn_ok(number: str) -> bool:
    digits = [int(d) for d in reversed(number)]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


def _card(card: dict[str, Any]) -> dict[str, Any]:
    number = str(card.get("number", ""))
    if not number.isdigit() or not 12 <= len(number) <= 19 or not _luhn_ok(number):
        raise _card_error("invalid_number", "card[number]", "Your card number is invalid.")
    month, year = card.get("exp_month", ""), card.get("exp_year", "")
    if not month.isdigit() or not 1 <= int(month) <= 12:
        raise _card_error(
            "invalid_expiry_month", "card[exp_month]", "Your card's expiration month is invalid."
        )
    now = datetime.now(UTC)
    if not year.isdigit() or (int(year), int(month)) < (now.year, now.month):
        raise _card_error(
            "invalid_expiry_year", "card[exp_year]", "Your card's expiration year is invalid."
        )
    cvc = str(card.get("cvc", ""))
    if not cvc.isdigit() or len(cvc) not in (3, 4):
        raise _card_error("invalid_cvc", "card[cvc]", "Your card's security code is invalid.")
    if number not in TEST_CARDS:
        raise _card_error(
            "card_declined", "", "Your request was in test mode, but used a non test card."
        )
    brand, behaviour = TEST_CARDS[number]
    fingerprint = hashlib.sha256(number.encode()).hexdigest()[:16]
    return {
        "brand": brand,
        "last4": number[-4:],
        "exp_month": int(month),
        "exp_year": int(year),
        "fingerprint": fingerprint,
        "_behaviour": behaviour,
    }


def _bank_account(account: dict[str, Any]) -> dict[str, Any]:
    routing = str(account.get("routing_number", ""))
    if routing not in TEST_ROUTING_NUMBERS:
        raise invalid(
            "Invalid routing number.", "us_bank_account[routing_number]", "routing_number_invalid"
        )
    number = str(account.get("account_number", ""))
    if not number.isdigit() or not 4 <= len(number) <= 17:
        raise invalid(
            "Invalid account number.", "us_bank_account[account_number]", "account_number_invalid"
        )
    return {
        "bank_name": TEST_ROUTING_NUMBERS[routing],
        "last4": number[-4:],
        "routing_number": routing,
        "account_type": account.get("account_type", "checking"),
        "fingerprint": hashlib.sha256(f"{routing}/{number}".encode()).hexdigest()[:16],
    }


def _card_error(code: str, param: str = "", message: str = "") -> StripeFault:
    """A 402 card error; declines carry ``code=card_declined`` plus a ``decline_code``."""
    extra: dict[str, Any] = {"param": param} if param else {}
    if code in ("generic_decline", "insufficient_funds", "authentication_required"):
        extra.update(code="card_declined" if code != "authentication_required" else code)
        extra["decline_code"] = code
    else:
        extra["code"] = code
    text = message or DECLINE_MESSAGES.get(code, "Your card was declined.")
    return StripeFault(402, "card_error", text, **extra)


def _positive_int(value: Any, param: str) -> int:
    if (isinstance(value, int) or (isinstance(value, str) and value.isdigit())) and int(value) > 0:
        return int(value)
    raise invalid(f"Invalid positive integer for {param}.", param, "parameter_invalid_integer")


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without the fake's private ``_…`` fields, nested ones included."""
    return {
        k: _public(v) if isinstance(v, dict) else v for k, v in obj.items() if not k.startswith("_")
    }


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)
