"""The Stripe adapter against a local server that speaks the Stripe API (no network).

The real ``stripe`` library makes real HTTP requests to ``tests/fakes/stripe_api.py``;
tests check both what the adapter answers and what the "processor" saw.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from app.gateway.base import (
    BankAccountDetails,
    CardDetails,
    GatewayError,
    GatewayUnavailable,
    PaymentGateway,
    PaymentMethodRejected,
    WebhookSignatureError,
)
from app.gateway.stripe import StripeGateway
from tests.fakes.stripe_api import FakeStripe, sign_webhook

WEBHOOK_SECRET = "whsec_portico_test"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def card(
    number: str = "4242424242424242", exp_month: int = 12, exp_year: int = 2040, cvc: str = "123"
) -> CardDetails:
    return CardDetails(number, exp_month, exp_year, cvc, name="Ada Lovelace", postal_code="94103")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripe]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a CI proxy must not see local traffic
    with FakeStripe() as server:
        yield server


@pytest.fixture
def gateway(fake: FakeStripe) -> StripeGateway:
    return StripeGateway(
        fake.api_key, webhook_secret=WEBHOOK_SECRET, api_base=fake.url, timeout_seconds=5
    )


def saved_card(gateway: StripeGateway, number: str = "4242424242424242") -> tuple[str, str]:
    """A customer with an attached card: (customer_ref, token)."""
    customer = gateway.create_customer(
        email="ada@example.com", name="Ada Lovelace", idempotency_key=f"cust:{number}"
    )
    token = gateway.tokenize_card(card(number)).token
    gateway.attach_payment_method(customer_ref=customer, token=token)
    return customer, token


def charge(gateway: StripeGateway, key: str, amount: int = 2500, **kwargs: str):  # noqa: ANN201
    if "token" not in kwargs:
        kwargs["customer_ref"], kwargs["token"] = saved_card(gateway)
    return gateway.charge(amount=amount, currency="USD", idempotency_key=key, **kwargs)


# --- customers and payment methods ------------------------------------------------------


def test_is_the_adapter_a_payment_gateway_named_stripe(gateway: StripeGateway) -> None:
    assert isinstance(gateway, PaymentGateway)
    assert gateway.name == "stripe"


def test_does_create_customer_send_our_key_and_return_a_customer_id(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    ref = gateway.create_customer(email="ada@example.com", name="Ada", idempotency_key="acct:7")

    assert ref.startswith("cus_")
    (post,) = fake.posts("/v1/customers")
    assert post.idempotency_key == "acct:7"
    assert post.params == {"email": "ada@example.com", "name": "Ada"}


def test_does_tokenize_and_attach_return_only_what_portico_may_store(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer = gateway.create_customer(email="a@example.com", name="A", idempotency_key="acct:1")

    method = gateway.tokenize_card(card())
    attached = gateway.attach_payment_method(customer_ref=customer, token=method.token)

    assert method.token.startswith("pm_") and attached.token == method.token
    assert (method.kind, method.brand, method.last4) == ("card", "visa", "4242")
    assert (method.exp_month, method.exp_year) == (12, 2040) and method.fingerprint
    assert "4242424242424242" not in repr(method) + repr(attached)
    assert fake.payment_methods[method.token]["customer"] == customer
    (attach,) = fake.posts(f"/v1/payment_methods/{method.token}/attach")
    assert attach.idempotency_key == f"attach:{customer}:{method.token}"


@pytest.mark.parametrize(
    ("details", "code", "field"),
    [
        (card("4242424242424241"), "invalid_number", "number"),
        (card(exp_year=2020), "invalid_expiry_year", "exp"),
        (card(exp_month=13), "invalid_expiry_month", "exp"),
        (card(cvc="12"), "invalid_cvc", "cvc"),
    ],
)
def test_are_bad_card_details_rejected_naming_the_field(
    gateway: StripeGateway, details: CardDetails, code: str, field: str
) -> None:
    with pytest.raises(PaymentMethodRejected) as caught:
        gateway.tokenize_card(details)

    assert (caught.value.code, caught.value.field) == (code, field)
    assert caught.value.message and details.number not in str(caught.value)


def test_does_attaching_a_card_that_declines_raise_payment_method_rejected(
    gateway: StripeGateway,
) -> None:
    customer = gateway.create_customer(email="a@example.com", name="A", idempotency_key="acct:1")
    token = gateway.tokenize_card(card("4000000000009995")).token

    with pytest.raises(PaymentMethodRejected) as caught:
        gateway.attach_payment_method(customer_ref=customer, token=token)

    assert caught.value.code == "insufficient_funds"
    assert caught.value.message == "Your card was declined: insufficient funds."


def test_does_a_bank_account_tokenize_and_a_bad_routing_number_name_its_field(
    gateway: StripeGateway,
) -> None:
    good = BankAccountDetails("110000000", "000123456789", "Ada Lovelace")
    bad = BankAccountDetails("999999999", "000123456789", "Ada Lovelace")

    method = gateway.tokenize_bank_account(good)
    with pytest.raises(PaymentMethodRejected) as caught:
        gateway.tokenize_bank_account(bad)

    assert (method.kind, method.last4, method.bank_name) == (
        "bank_account",
        "6789",
        "STRIPE TEST BANK",
    )
    assert caught.value.field == "routing_number"


def test_is_raw_card_entry_refused_with_a_live_key(fake: FakeStripe) -> None:
    live = StripeGateway("sk_live_portico", api_base=fake.url)

    with pytest.raises(GatewayUnavailable):
        live.tokenize_card(card())

    assert fake.requests == []


# --- moving money ---------------------------------------------------------------------


def test_does_an_off_session_charge_send_what_we_asked_under_our_keys(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer, token = saved_card(gateway)

    result = gateway.charge(
        amount=2500,
        currency="USD",
        token=token,
        customer_ref=customer,
        idempotency_key="sub:3:2025-01-31",
        description="Monthly plan",
        metadata={"attempt_id": "41"},
    )

    assert result.approved and result.operation == "charge"
    assert (result.amount, result.currency, result.captured_amount) == (2500, "USD", 2500)
    assert result.reference in fake.intents
    (post,) = fake.posts("/v1/payment_intents")
    assert post.idempotency_key == "sub:3:2025-01-31"
    assert post.params["amount"] == "2500" and post.params["currency"] == "usd"
    assert post.params["customer"] == customer and post.params["payment_method"] == token
    assert post.params["off_session"] == "true" and post.params["confirm"] == "true"
    assert post.params["metadata"] == {"attempt_id": "41", "idempotency_key": "sub:3:2025-01-31"}
    assert result.metadata["attempt_id"] == "41"
    # Every POST carried a key of ours (never one the library made up), none was refused.
    keys = [p.idempotency_key or "" for p in fake.posts()]
    assert len(keys) == 4 and all(keys) and not any(UUID.search(k) for k in keys)
    assert keys[0] == "cust:4242424242424242" and keys[1].startswith("tokenize:")
    assert keys[2] == f"attach:{customer}:{token}" and keys[3] == "sub:3:2025-01-31"
    assert fake.violations == []


def test_does_authorize_then_a_partial_capture_take_only_that_amount(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer, token = saved_card(gateway)

    hold = gateway.authorize(
        amount=5000, currency="USD", token=token, customer_ref=customer, idempotency_key="o:1:auth"
    )
    captured = gateway.capture(reference=hold.reference, amount=3000, idempotency_key="o:1:cap")

    assert hold.approved and hold.operation == "authorization" and hold.captured_amount == 0
    assert fake.posts("/v1/payment_intents")[0].params["capture_method"] == "manual"
    assert captured.approved and captured.operation == "capture"
    assert (captured.amount, captured.captured_amount) == (3000, 3000)
    (post,) = fake.posts(f"/v1/payment_intents/{hold.reference}/capture")
    assert post.params == {"amount_to_capture": "3000"} and post.idempotency_key == "o:1:cap"
    assert fake.intents[hold.reference]["amount_received"] == 3000


def test_does_void_release_an_authorization(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer, token = saved_card(gateway)
    hold = gateway.authorize(
        amount=5000, currency="USD", token=token, customer_ref=customer, idempotency_key="o:2:auth"
    )

    voided = gateway.void(reference=hold.reference, idempotency_key="o:2:void")

    assert voided.approved and voided.operation == "void"
    assert fake.intents[hold.reference]["status"] == "canceled"
    assert (
        fake.posts(f"/v1/payment_intents/{hold.reference}/cancel")[0].idempotency_key == "o:2:void"
    )


def test_can_a_charge_be_refunded_in_part_then_in_full_and_no_further(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    paid = charge(gateway, "inv:9:1")

    part = gateway.refund(reference=paid.reference, amount=1000, idempotency_key="inv:9:r1")
    rest = gateway.refund(reference=paid.reference, amount=1500, idempotency_key="inv:9:r2")
    more = gateway.refund(reference=paid.reference, amount=1, idempotency_key="inv:9:r3")

    assert part.approved and part.refunded_amount == 1000 and part.reference.startswith("re_")
    assert rest.approved and rest.refunded_amount == 1500 and rest.currency == "USD"
    assert more.status == "error" and more.decline_code == "charge_already_refunded"
    assert [p.params["amount"] for p in fake.posts("/v1/refunds")] == ["1000", "1500", "1"]
    assert fake.posts("/v1/refunds")[0].params["payment_intent"] == paid.reference


def test_is_a_refund_above_the_captured_amount_an_error(gateway: StripeGateway) -> None:
    paid = charge(gateway, "inv:9:1")

    result = gateway.refund(reference=paid.reference, amount=2501, idempotency_key="inv:9:r1")

    assert result.status == "error" and result.decline_code == "amount_too_large"


@pytest.mark.parametrize(
    ("number", "code", "message"),
    [
        ("4000000000009995", "insufficient_funds", "Your card was declined: insufficient funds."),
        ("4000000000000002", "card_declined", "Your card was declined."),
        ("4000000000000069", "expired_card", "Your card was declined: the card has expired."),
    ],
)
def test_is_a_declined_card_a_declined_result_with_a_plain_reason(
    gateway: StripeGateway, number: str, code: str, message: str
) -> None:
    token = gateway.tokenize_card(card(number)).token

    result = gateway.charge(amount=900, currency="USD", token=token, idempotency_key="form:n1")

    assert (result.status, result.decline_code, result.message) == ("declined", code, message)
    assert result.reference.startswith("pi_") and not result.retryable


def test_does_a_card_that_attaches_decline_when_charged_off_session(
    gateway: StripeGateway,
) -> None:
    customer, token = saved_card(gateway, "4000000000000341")

    result = charge(gateway, "sub:1:2025-02-01", token=token, customer_ref=customer)

    assert result.status == "declined" and result.decline_code == "card_declined"


def test_is_a_card_needing_authentication_declined_with_a_reason(gateway: StripeGateway) -> None:
    customer, token = saved_card(gateway, "4000002760003184")
    on_session_token = gateway.tokenize_card(card("4000002760003184")).token

    off = charge(gateway, "sub:2:2025-02-01", token=token, customer_ref=customer)
    on = charge(gateway, "form:n2", token=on_session_token)

    for result in (off, on):
        assert result.status == "declined"
        assert result.decline_code == "authentication_required"
        assert "confirm this payment" in result.message


def test_is_a_bank_debit_unknown_while_it_processes(gateway: StripeGateway) -> None:
    customer = gateway.create_customer(email="a@example.com", name="A", idempotency_key="acct:1")
    account = BankAccountDetails("110000000", "000123456789", "Ada Lovelace")
    token = gateway.tokenize_bank_account(account).token
    gateway.attach_payment_method(customer_ref=customer, token=token)

    result = charge(gateway, "inv:4:1", token=token, customer_ref=customer)

    assert result.status == "unknown" and result.reference.startswith("pi_")
    assert result.message == "The bank payment is processing."


def test_is_a_payment_method_of_another_customer_refused(gateway: StripeGateway) -> None:
    _, token = saved_card(gateway)
    other = gateway.create_customer(email="b@example.com", name="B", idempotency_key="acct:2")

    result = charge(gateway, "inv:5:1", token=token, customer_ref=other)

    assert result.status == "error" and not result.approved


@pytest.mark.parametrize(("amount", "currency"), [(0, "USD"), (-5, "USD"), (100, "XXX")])
def test_are_a_bad_amount_or_currency_errors_not_charges(
    gateway: StripeGateway, fake: FakeStripe, amount: int, currency: str
) -> None:
    customer, token = saved_card(gateway)

    result = gateway.charge(
        amount=amount, currency=currency, token=token, customer_ref=customer, idempotency_key="k"
    )

    assert result.status == "error" and fake.intents == {}


def test_does_reusing_a_key_with_other_parameters_come_back_as_an_error(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer, token = saved_card(gateway)
    first = charge(gateway, "inv:6:1", amount=100, token=token, customer_ref=customer)

    second = charge(gateway, "inv:6:1", amount=200, token=token, customer_ref=customer)

    assert first.approved
    assert second.status == "error" and second.decline_code == "idempotency_error"
    assert len(fake.intents) == 1


def test_is_a_wrong_api_key_raised_as_unavailable(fake: FakeStripe) -> None:
    wrong = StripeGateway("sk_test_wrong", api_base=fake.url)

    with pytest.raises(GatewayUnavailable):
        wrong.charge(amount=100, currency="USD", token="pm_x", idempotency_key="k")


# --- lost answers -----------------------------------------------------------------------


def test_is_a_rate_limit_a_retryable_error_and_does_the_retry_go_through(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer, token = saved_card(gateway)
    fake.fail_next("429", path="/v1/payment_intents")

    limited = charge(gateway, "inv:7:1", token=token, customer_ref=customer)
    retried = charge(gateway, "inv:7:1", token=token, customer_ref=customer)

    assert (limited.status, limited.decline_code, limited.retryable) == (
        "error",
        "rate_limited",
        True,
    )
    assert retried.approved and len(fake.intents) == 1


def test_is_a_dropped_connection_unknown_with_nothing_charged(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer, token = saved_card(gateway)
    fake.fail_next("drop", path="/v1/payment_intents")

    result = charge(gateway, "inv:8:1", token=token, customer_ref=customer)

    assert result.status == "unknown" and result.retryable and result.reference == ""
    assert fake.intents == {}
    assert gateway.retrieve(idempotency_key="inv:8:1") is None


def test_is_a_server_error_unknown(gateway: StripeGateway, fake: FakeStripe) -> None:
    customer, token = saved_card(gateway)
    fake.fail_next("500", path="/v1/payment_intents")

    result = charge(gateway, "inv:8:2", token=token, customer_ref=customer)

    assert result.status == "unknown" and not result.retryable


def test_is_a_timeout_unknown_and_found_by_retrieve_once_stripe_acted(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer, token = saved_card(gateway)
    impatient = StripeGateway(fake.api_key, api_base=fake.url, timeout_seconds=0.5)
    fake.fail_next("slow", path="/v1/payment_intents", delay=1.2)

    result = charge(impatient, "sub:5:2025-03-01", token=token, customer_ref=customer)
    deadline = time.monotonic() + 10
    while not fake.intents and time.monotonic() < deadline:
        time.sleep(0.05)
    found = gateway.retrieve(idempotency_key="sub:5:2025-03-01")

    assert result.status == "unknown" and result.retryable
    assert found is not None and found.approved and found.reference in fake.intents


def test_after_a_processed_then_dropped_charge_does_retrieve_find_it_and_a_retry_not_repeat_it(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer, token = saved_card(gateway)
    fake.fail_next("process_then_drop", path="/v1/payment_intents")

    lost = charge(gateway, "sub:6:2025-03-01", token=token, customer_ref=customer)
    found = gateway.retrieve(idempotency_key="sub:6:2025-03-01")
    retried = charge(gateway, "sub:6:2025-03-01", token=token, customer_ref=customer)

    (intent_id,) = fake.intents
    assert lost.status == "unknown" and lost.reference == ""
    assert found is not None and found.approved and found.operation == "charge"
    assert (found.reference, found.amount, found.currency) == (intent_id, 2500, "USD")
    assert found.metadata["idempotency_key"] == "sub:6:2025-03-01"
    assert retried.approved and retried.reference == intent_id
    assert len(fake.intents) == 1


def test_does_retrieve_find_an_authorization_and_a_refund_whose_answers_were_lost(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer, token = saved_card(gateway)
    fake.fail_next("process_then_drop", path="/v1/payment_intents")
    gateway.authorize(
        amount=700, currency="USD", token=token, customer_ref=customer, idempotency_key="o:3:auth"
    )
    paid = charge(gateway, "inv:10:1", token=token, customer_ref=customer)
    fake.fail_next("process_then_drop", path="/v1/refunds")
    lost = gateway.refund(reference=paid.reference, amount=500, idempotency_key="inv:10:r1")

    hold = gateway.retrieve(idempotency_key="o:3:auth")
    refund = gateway.retrieve(idempotency_key="inv:10:r1")

    assert hold is not None and hold.approved and hold.operation == "authorization"
    assert lost.status == "unknown"
    assert refund is not None and refund.approved and refund.operation == "refund"
    assert refund.refunded_amount == 500 and refund.reference in fake.refunds


def test_is_a_customer_whose_answer_was_lost_the_same_customer_on_retry(
    gateway: StripeGateway, fake: FakeStripe
) -> None:
    fake.fail_next("process_then_drop", path="/v1/customers")

    with pytest.raises(GatewayError) as caught:
        gateway.create_customer(email="a@example.com", name="A", idempotency_key="acct:5")
    ref = gateway.create_customer(email="a@example.com", name="A", idempotency_key="acct:5")

    assert not isinstance(caught.value, GatewayUnavailable)
    assert list(fake.customers) == [ref]


def test_does_the_fake_refuse_a_post_without_an_idempotency_key(fake: FakeStripe) -> None:
    request = urllib.request.Request(
        f"{fake.url}/v1/customers",
        data=b"email=a%40example.com",
        headers={"Authorization": f"Bearer {fake.api_key}"},
        method="POST",
    )

    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)

    assert caught.value.code == 400
    assert fake.violations == ["POST /v1/customers without Idempotency-Key"]
    assert fake.customers == {}


# --- webhooks -------------------------------------------------------------------------

EVENT = json.dumps(
    {
        "id": "evt_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_1", "object": "payment_intent", "amount": 2500}},
    }
).encode()


def test_is_a_correctly_signed_webhook_accepted(gateway: StripeGateway) -> None:
    headers = {"Stripe-Signature": sign_webhook(EVENT, WEBHOOK_SECRET)}

    event = gateway.parse_webhook(EVENT, headers)

    assert (event.id, event.type) == ("evt_1", "payment_intent.succeeded")
    assert event.data["id"] == "pi_1" and event.data["amount"] == 2500


@pytest.mark.parametrize(
    "headers",
    [
        {"Stripe-Signature": sign_webhook(EVENT, "whsec_someone_else")},
        {"stripe-signature": sign_webhook(EVENT, WEBHOOK_SECRET, int(time.time()) - 600)},
        {"Stripe-Signature": sign_webhook(EVENT.replace(b"2500", b"9999"), WEBHOOK_SECRET)},
        {"Stripe-Signature": "t=garbage"},
        {},
    ],
    ids=["wrong-secret", "stale", "tampered", "malformed", "missing"],
)
def test_is_a_badly_signed_or_stale_webhook_refused(
    gateway: StripeGateway, headers: dict[str, str]
) -> None:
    with pytest.raises(WebhookSignatureError):
        gateway.parse_webhook(EVENT, headers)


def test_is_every_webhook_refused_without_a_configured_secret(fake: FakeStripe) -> None:
    unconfigured = StripeGateway(fake.api_key, api_base=fake.url)

    with pytest.raises(WebhookSignatureError):
        unconfigured.parse_webhook(EVENT, {"Stripe-Signature": sign_webhook(EVENT, "")})
