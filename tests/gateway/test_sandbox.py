"""The sandbox processor behaves like a card network in test mode, against a real database."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session, SQLModel

from app.clock import utcnow
from app.gateway.base import (
    BankAccountDetails,
    CardDetails,
    GatewayResult,
    PaymentGateway,
    PaymentMethodRejected,
    WebhookSignatureError,
)
from app.gateway.sandbox import (
    SIGNATURE_HEADER,
    TEST_BANK_ACCOUNTS,
    TEST_CARDS,
    IdempotencyKeyReused,
    SandboxGateway,
)

# Importing the sandbox models registers their tables before the ``engine`` fixture runs.
from app.models.sandbox import (
    SandboxCharge,
    SandboxCustomer,
    SandboxIdempotencyKey,
    SandboxPaymentMethod,
    SandboxRefund,
)

T = TypeVar("T")

FUTURE_YEAR = utcnow().year + 3
VISA = "4242 4242 4242 4242"
ROUTING = "110000000"

# The documented behaviour, written out here rather than read from TEST_CARDS, so a change
# to the table that breaks the README's promise fails this test.
CARD_OUTCOMES = [
    (VISA, "visa", "approved", "", ""),
    ("5555 5555 5555 4444", "mastercard", "approved", "", ""),
    ("3782 822463 10005", "amex", "approved", "", ""),
    ("4000 0000 0000 0002", "visa", "declined", "card_declined", "Your card was declined."),
    (
        "4000 0000 0000 9995",
        "visa",
        "declined",
        "insufficient_funds",
        "Your card was declined: insufficient funds.",
    ),
    ("4000 0000 0000 9987", "visa", "declined", "lost_card", "Your card was declined."),
    ("4000 0000 0000 0069", "visa", "declined", "expired_card", "Your card has expired."),
    (
        "4000 0000 0000 0127",
        "visa",
        "declined",
        "incorrect_cvc",
        "Your card's security code is incorrect.",
    ),
    (
        "4000 0000 0000 0119",
        "visa",
        "error",
        "processing_error",
        "An error occurred while processing your card. Try again.",
    ),
    ("4000 0000 0000 0341", "visa", "declined", "card_declined", "Your card was declined."),
]
REFUSED_ON_ATTACH = [row for row in CARD_OUTCOMES if row[2] != "approved" and "0341" not in row[0]]

BANK_OUTCOMES = [
    ("000123456789", "approved", "", ""),
    ("000111111116", "declined", "no_account", "The bank account could not be found."),
    ("000222222227", "declined", "insufficient_funds", "The bank account has insufficient funds."),
]


@pytest.fixture
def gateway(engine: Engine, db_session: Session) -> Iterator[SandboxGateway]:
    """A sandbox without latency on the test database (emptied by ``db_session``)."""
    yield SandboxGateway(engine, latency_ms=0)


def card(
    number: str = VISA, *, cvc: str | None = None, month: int = 12, year: int = 0
) -> CardDetails:
    is_amex = number.replace(" ", "").startswith(("34", "37"))
    default_cvc = "1234" if is_amex else "123"
    return CardDetails(number, month, year or FUTURE_YEAR, default_cvc if cvc is None else cvc)


def bank(account: str = "000123456789", routing: str = ROUTING) -> BankAccountDetails:
    return BankAccountDetails(routing, account, "Jenny Rosen")


def token_for(gateway: SandboxGateway, number: str = VISA) -> str:
    return gateway.tokenize_card(card(number)).token


def count(engine: Engine, model: type[SQLModel]) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def charge(gateway: SandboxGateway, token: str, key: str, amount: int = 1000) -> GatewayResult:
    return gateway.charge(amount=amount, currency="usd", token=token, idempotency_key=key)


def in_threads(n: int, call: Callable[[int], T]) -> list[T]:
    """Run ``call(i)`` in ``n`` threads released together; return results in order."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except Exception as exc:  # surfaced by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not [r for r in results if isinstance(r, Exception)], results
    return results


# -- the protocol and the documented numbers ------------------------------------------


def test_does_the_sandbox_implement_the_gateway_protocol(gateway: SandboxGateway) -> None:
    assert isinstance(gateway, PaymentGateway)
    assert gateway.name == "sandbox"


def test_is_every_documented_card_number_tested() -> None:
    assert {c.number for c in TEST_CARDS} == {row[0] for row in CARD_OUTCOMES}
    assert {a.account_number for a in TEST_BANK_ACCOUNTS} == {row[0] for row in BANK_OUTCOMES}


@pytest.mark.parametrize(("number", "brand", "status", "code", "message"), CARD_OUTCOMES)
def test_does_each_test_card_charge_as_documented(
    gateway: SandboxGateway,
    engine: Engine,
    number: str,
    brand: str,
    status: str,
    code: str,
    message: str,
) -> None:
    method = gateway.tokenize_card(card(number))
    assert (method.kind, method.brand, method.last4) == ("card", brand, number[-4:])

    result = charge(gateway, method.token, "key-1", amount=2500)

    assert (result.status, result.decline_code, result.message) == (status, code, message)
    assert (result.operation, result.amount, result.currency) == ("charge", 2500, "USD")
    if status == "approved":
        assert result.reference.startswith("ch_sbx_")
        assert result.captured_amount == 2500
    if status == "error":
        assert result.retryable
        assert gateway.list_charges() == []
    else:
        assert [c.reference for c in gateway.list_charges()] == [result.reference]


@pytest.mark.parametrize(("number", "brand", "status", "code", "message"), REFUSED_ON_ATTACH)
def test_does_attach_refuse_a_declining_card_with_its_reason(
    gateway: SandboxGateway, number: str, brand: str, status: str, code: str, message: str
) -> None:
    customer = gateway.create_customer(email="a@example.com", name="A", idempotency_key="c1")
    token = token_for(gateway, number)

    with pytest.raises(PaymentMethodRejected) as refused:
        gateway.attach_payment_method(customer_ref=customer, token=token)

    assert (refused.value.code, refused.value.message) == (code, message)


def test_does_the_0341_card_attach_and_then_decline_when_charged(gateway: SandboxGateway) -> None:
    customer = gateway.create_customer(email="a@example.com", name="A", idempotency_key="c1")
    token = token_for(gateway, "4000 0000 0000 0341")

    saved = gateway.attach_payment_method(customer_ref=customer, token=token)
    result = gateway.charge(
        amount=500, currency="USD", token=token, idempotency_key="k", customer_ref=customer
    )

    assert saved.last4 == "0341"
    assert (result.status, result.message) == ("declined", "Your card was declined.")


def test_can_an_approving_card_be_saved_and_charged_off_session(gateway: SandboxGateway) -> None:
    customer = gateway.create_customer(email="a@example.com", name="A", idempotency_key="c1")
    token = token_for(gateway)

    saved = gateway.attach_payment_method(customer_ref=customer, token=token)
    again = gateway.attach_payment_method(customer_ref=customer, token=token)
    result = gateway.charge(
        amount=700, currency="USD", token=token, idempotency_key="k", customer_ref=customer
    )

    assert customer.startswith("cus_sbx_")
    assert saved == again
    assert (saved.brand, saved.last4, saved.exp_month, saved.exp_year) == (
        "visa",
        "4242",
        12,
        FUTURE_YEAR,
    )
    assert result.approved
    assert gateway.list_charges()[0].customer_ref == customer


def test_is_a_card_saved_on_one_customer_refused_for_another(gateway: SandboxGateway) -> None:
    first = gateway.create_customer(email="a@example.com", name="A", idempotency_key="c1")
    second = gateway.create_customer(email="b@example.com", name="B", idempotency_key="c2")
    token = token_for(gateway)
    gateway.attach_payment_method(customer_ref=first, token=token)

    with pytest.raises(PaymentMethodRejected):
        gateway.attach_payment_method(customer_ref=second, token=token)
    result = gateway.charge(
        amount=700, currency="USD", token=token, idempotency_key="k", customer_ref=second
    )

    assert result.status == "error"
    assert gateway.list_charges() == []


@pytest.mark.parametrize(
    ("details", "code", "field"),
    [
        (card("4242 4242 4242 4241"), "invalid_number", "number"),
        (card("4242 4242"), "invalid_number", "number"),
        (card("4242 4242 abcd 4242"), "invalid_number", "number"),
        (card("4111 1111 1111 1111"), "card_declined", "number"),
        (card(year=utcnow().year - 1), "expired_card", "exp"),
        (card(month=13), "invalid_expiry_month", "exp"),
        (card(cvc="12"), "invalid_cvc", "cvc"),
        (card(cvc="12a"), "invalid_cvc", "cvc"),
        (card(cvc="1234"), "invalid_cvc", "cvc"),
        (card("3782 822463 10005", cvc="123"), "invalid_cvc", "cvc"),
    ],
    ids=lambda v: v if isinstance(v, str) else repr(v),
)
def test_is_bad_card_input_refused_on_the_right_field(
    gateway: SandboxGateway, engine: Engine, details: CardDetails, code: str, field: str
) -> None:
    with pytest.raises(PaymentMethodRejected) as refused:
        gateway.tokenize_card(details)

    assert (refused.value.code, refused.value.field) == (code, field)
    assert refused.value.message
    assert count(engine, SandboxPaymentMethod) == 0


def test_does_a_bad_card_number_say_so_in_plain_words(gateway: SandboxGateway) -> None:
    with pytest.raises(PaymentMethodRejected) as refused:
        gateway.tokenize_card(card("4242 4242 4242 4241"))

    assert refused.value.message == "Your card number is incorrect."


def test_does_the_same_card_keep_its_fingerprint_under_new_tokens(gateway: SandboxGateway) -> None:
    first = gateway.tokenize_card(card(VISA))
    second = gateway.tokenize_card(card("4242424242424242"))
    other = gateway.tokenize_card(card("5555 5555 5555 4444"))

    assert first.token != second.token
    assert first.fingerprint == second.fingerprint != other.fingerprint


@pytest.mark.parametrize(("account", "status", "code", "message"), BANK_OUTCOMES)
def test_does_each_test_bank_account_charge_as_documented(
    gateway: SandboxGateway, account: str, status: str, code: str, message: str
) -> None:
    method = gateway.tokenize_bank_account(bank(account))

    result = charge(gateway, method.token, "key-1")

    assert (method.kind, method.last4, method.bank_name) == (
        "bank_account",
        account[-4:],
        "STRIPE TEST BANK",
    )
    assert (result.status, result.decline_code, result.message) == (status, code, message)


def test_does_attach_refuse_a_bank_account_that_does_not_exist(gateway: SandboxGateway) -> None:
    customer = gateway.create_customer(email="a@example.com", name="A", idempotency_key="c1")
    token = gateway.tokenize_bank_account(bank("000111111116")).token

    with pytest.raises(PaymentMethodRejected) as refused:
        gateway.attach_payment_method(customer_ref=customer, token=token)

    assert (refused.value.code, refused.value.message) == (
        "no_account",
        "The bank account could not be found.",
    )


@pytest.mark.parametrize(
    ("routing", "account", "field"),
    [
        ("110000001", "000123456789", "routing_number"),  # fails the ABA checksum
        ("11000000", "000123456789", "routing_number"),
        ("011000015", "000123456789", "routing_number"),  # valid, but not a test number
        (ROUTING, "12", "account_number"),
        (ROUTING, "000999999999", "account_number"),
    ],
)
def test_is_bad_bank_input_refused_on_the_right_field(
    gateway: SandboxGateway, routing: str, account: str, field: str
) -> None:
    with pytest.raises(PaymentMethodRejected) as refused:
        gateway.tokenize_bank_account(bank(account, routing))

    assert refused.value.field == field


# -- capture, void, refund ----------------------------------------------------------


def authorize(gateway: SandboxGateway, amount: int = 1000, key: str = "auth") -> GatewayResult:
    token = token_for(gateway)
    return gateway.authorize(amount=amount, currency="USD", token=token, idempotency_key=key)


def test_does_an_authorization_hold_without_capturing(gateway: SandboxGateway) -> None:
    result = authorize(gateway)

    assert (result.status, result.operation, result.captured_amount) == (
        "approved",
        "authorization",
        0,
    )
    assert gateway.list_charges()[0].status == "requires_capture"


def test_can_an_authorization_be_captured_partially_and_only_once(
    gateway: SandboxGateway,
) -> None:
    auth = authorize(gateway, 1000)

    first = gateway.capture(reference=auth.reference, amount=600, idempotency_key="cap-1")
    second = gateway.capture(reference=auth.reference, amount=400, idempotency_key="cap-2")

    assert (first.status, first.captured_amount, first.reference) == (
        "approved",
        600,
        auth.reference,
    )
    assert (second.status, second.decline_code) == ("declined", "already_captured")
    [row] = gateway.list_charges()
    assert (row.status, row.captured_amount) == ("succeeded", 600)


def test_is_a_capture_above_the_authorized_amount_declined(gateway: SandboxGateway) -> None:
    auth = authorize(gateway, 1000)

    too_much = gateway.capture(reference=auth.reference, amount=1001, idempotency_key="cap-1")
    full = gateway.capture(reference=auth.reference, amount=1000, idempotency_key="cap-2")

    assert (too_much.status, too_much.decline_code) == ("declined", "amount_too_large")
    assert (full.status, full.captured_amount) == ("approved", 1000)


def test_can_only_an_uncaptured_authorization_be_voided(gateway: SandboxGateway) -> None:
    auth = authorize(gateway, 1000)
    paid = charge(gateway, token_for(gateway), "paid")

    voided = gateway.void(reference=auth.reference, idempotency_key="void-1")
    again = gateway.void(reference=auth.reference, idempotency_key="void-2")
    capture_after = gateway.capture(reference=auth.reference, amount=10, idempotency_key="cap")
    void_paid = gateway.void(reference=paid.reference, idempotency_key="void-3")

    assert (voided.status, voided.operation, voided.amount) == ("approved", "void", 1000)
    assert again.status == capture_after.status == void_paid.status == "declined"
    assert "refund" in void_paid.message
    statuses = {c.reference: c.status for c in gateway.list_charges()}
    assert statuses == {auth.reference: "canceled", paid.reference: "succeeded"}


def test_can_a_payment_be_refunded_in_parts_but_never_beyond_what_was_captured(
    gateway: SandboxGateway, engine: Engine
) -> None:
    paid = charge(gateway, token_for(gateway), "paid", amount=1000)

    part = gateway.refund(reference=paid.reference, amount=400, idempotency_key="r1")
    too_much = gateway.refund(reference=paid.reference, amount=700, idempotency_key="r2")
    rest = gateway.refund(reference=paid.reference, amount=600, idempotency_key="r3")
    one_more = gateway.refund(reference=paid.reference, amount=1, idempotency_key="r4")

    assert (part.status, part.refunded_amount) == ("approved", 400)
    assert part.reference.startswith("re_sbx_")
    assert (too_much.status, too_much.decline_code) == ("declined", "amount_too_large")
    assert "600 of 1000" in too_much.message
    assert (rest.status, rest.refunded_amount) == ("approved", 1000)
    assert one_more.status == "declined"
    assert count(engine, SandboxRefund) == 2
    assert gateway.list_charges()[0].refunded_amount == 1000


def test_does_a_refund_stop_at_the_partially_captured_amount(gateway: SandboxGateway) -> None:
    auth = authorize(gateway, 1000)
    gateway.capture(reference=auth.reference, amount=500, idempotency_key="cap")

    beyond = gateway.refund(reference=auth.reference, amount=501, idempotency_key="r1")
    within = gateway.refund(reference=auth.reference, amount=500, idempotency_key="r2")

    assert beyond.status == "declined"
    assert within.approved


def test_is_a_refund_of_an_uncaptured_authorization_declined(gateway: SandboxGateway) -> None:
    auth = authorize(gateway, 1000)

    result = gateway.refund(reference=auth.reference, amount=100, idempotency_key="r1")

    assert (result.status, result.decline_code) == ("declined", "charge_not_captured")


def test_is_an_unknown_reference_an_error_that_moves_nothing(
    gateway: SandboxGateway, engine: Engine
) -> None:
    for result in (
        gateway.capture(reference="ch_sbx_nope", amount=100, idempotency_key="a"),
        gateway.void(reference="ch_sbx_nope", idempotency_key="b"),
        gateway.refund(reference="ch_sbx_nope", amount=100, idempotency_key="c"),
    ):
        assert (result.status, result.decline_code) == ("error", "resource_missing")
    assert count(engine, SandboxIdempotencyKey) == 0


@pytest.mark.parametrize(("amount", "currency"), [(0, "USD"), (-5, "USD"), (100, "US")])
def test_is_a_bad_amount_or_currency_refused_without_moving_money(
    gateway: SandboxGateway, amount: int, currency: str
) -> None:
    token = token_for(gateway)

    result = gateway.charge(amount=amount, currency=currency, token=token, idempotency_key="k")

    assert (result.status, result.retryable) == ("error", False)
    assert gateway.list_charges() == []


# -- idempotency --------------------------------------------------------------------


def test_does_the_same_key_twice_move_money_once(gateway: SandboxGateway) -> None:
    token = token_for(gateway)

    first = charge(gateway, token, "same")
    second = charge(gateway, token, "same")

    assert first.approved
    assert first == second
    assert len(gateway.list_charges()) == 1


def test_is_a_key_reused_with_a_different_amount_refused(gateway: SandboxGateway) -> None:
    token = token_for(gateway)
    first = charge(gateway, token, "same", amount=1000)

    reused = charge(gateway, token, "same", amount=2000)

    assert (reused.status, reused.decline_code) == ("error", "idempotency_key_reused")
    assert not reused.retryable
    assert [c.amount for c in gateway.list_charges()] == [1000]
    assert gateway.retrieve(idempotency_key="same") == first


def test_is_a_repeated_refund_applied_once(gateway: SandboxGateway, engine: Engine) -> None:
    paid = charge(gateway, token_for(gateway), "paid")

    first = gateway.refund(reference=paid.reference, amount=300, idempotency_key="r")
    second = gateway.refund(reference=paid.reference, amount=300, idempotency_key="r")

    assert first == second
    assert gateway.list_charges()[0].refunded_amount == 300
    assert count(engine, SandboxRefund) == 1


def test_does_a_declined_charge_replay_its_decline(gateway: SandboxGateway) -> None:
    token = token_for(gateway, "4000 0000 0000 0002")

    first = charge(gateway, token, "k")
    second = charge(gateway, token, "k")

    assert first.status == "declined"
    assert first == second
    assert len(gateway.list_charges()) == 1


def test_does_retrieve_return_the_outcome_with_its_metadata(gateway: SandboxGateway) -> None:
    token = token_for(gateway)
    first = gateway.charge(
        amount=1000,
        currency="USD",
        token=token,
        idempotency_key="k",
        metadata={"attempt_id": "42", "purpose": "inv:7:1"},
    )

    found = gateway.retrieve(idempotency_key="k")

    assert found == first
    assert found is not None and found.metadata == {"attempt_id": "42", "purpose": "inv:7:1"}
    assert gateway.list_charges()[0].metadata == {"attempt_id": "42", "purpose": "inv:7:1"}
    assert gateway.retrieve(idempotency_key="never-used") is None


def test_is_create_customer_idempotent_by_key(gateway: SandboxGateway) -> None:
    first = gateway.create_customer(email="a@example.com", name="A", idempotency_key="c1")
    again = gateway.create_customer(email="a@example.com", name="A", idempotency_key="c1")

    with pytest.raises(IdempotencyKeyReused):
        gateway.create_customer(email="b@example.com", name="B", idempotency_key="c1")
    assert first == again
    assert gateway.retrieve(idempotency_key="c1") is None


def test_do_concurrent_charges_with_one_key_charge_once(
    gateway: SandboxGateway, engine: Engine
) -> None:
    token = token_for(gateway)

    results = in_threads(8, lambda _: charge(gateway, token, "shared-key"))

    assert {r.status for r in results} == {"approved"}
    assert len({r.reference for r in results}) == 1
    assert count(engine, SandboxCharge) == 1
    assert count(engine, SandboxIdempotencyKey) == 1


def test_do_concurrent_refunds_never_exceed_the_captured_amount(gateway: SandboxGateway) -> None:
    paid = charge(gateway, token_for(gateway), "paid", amount=1000)

    results = in_threads(
        6,
        lambda i: gateway.refund(reference=paid.reference, amount=400, idempotency_key=f"r{i}"),
    )

    assert sorted(r.status for r in results) == ["approved"] * 2 + ["declined"] * 4
    assert gateway.list_charges()[0].refunded_amount == 800


def test_do_concurrent_customer_creations_with_one_key_create_one_customer(
    gateway: SandboxGateway, engine: Engine
) -> None:
    refs = in_threads(
        6, lambda _: gateway.create_customer(email="a@example.com", name="A", idempotency_key="c")
    )

    assert len(set(refs)) == 1
    assert count(engine, SandboxCustomer) == 1


# -- failure injection --------------------------------------------------------------


def test_does_a_timeout_after_charge_move_money_once_and_settle_by_retrieve(
    gateway: SandboxGateway,
) -> None:
    token = token_for(gateway)
    gateway.inject("timeout_after_charge")

    lost = charge(gateway, token, "k")
    found = gateway.retrieve(idempotency_key="k")
    retried = charge(gateway, token, "k")

    assert (lost.status, lost.reference, lost.retryable) == ("unknown", "", True)
    assert found is not None and found.approved
    assert retried == found
    [row] = gateway.list_charges()
    assert (row.reference, row.status) == (found.reference, "succeeded")


@pytest.mark.parametrize(
    ("failure", "code", "message"),
    [
        ("server_error", "server_error", "The payment processor had an error. Try again."),
        ("rate_limit", "rate_limited", "Too many requests. Try again in a moment."),
    ],
)
def test_does_a_server_error_or_rate_limit_move_nothing_and_allow_a_retry(
    gateway: SandboxGateway, engine: Engine, failure: Any, code: str, message: str
) -> None:
    token = token_for(gateway)
    gateway.inject(failure)

    failed = charge(gateway, token, "k")
    nothing = gateway.retrieve(idempotency_key="k")
    retried = charge(gateway, token, "k")

    assert (failed.status, failed.decline_code, failed.message) == ("error", code, message)
    assert failed.retryable
    assert nothing is None
    assert retried.approved
    assert count(engine, SandboxCharge) == 1


def test_does_an_injected_decline_decline_once(gateway: SandboxGateway) -> None:
    token = token_for(gateway)
    gateway.inject("decline")

    declined = charge(gateway, token, "k1")
    approved = charge(gateway, token, "k2")

    assert (declined.status, declined.message) == ("declined", "Your card was declined.")
    assert approved.approved


def test_does_an_injection_last_for_its_number_of_calls(gateway: SandboxGateway) -> None:
    token = token_for(gateway)
    gateway.inject("rate_limit", times=2)

    results = [charge(gateway, token, f"k{i}") for i in range(3)]

    assert [r.status for r in results] == ["error", "error", "approved"]


def test_does_an_injection_reach_another_process_through_the_database(
    gateway: SandboxGateway, engine: Engine
) -> None:
    other_process = SandboxGateway(engine, latency_ms=0)
    gateway.inject("server_error")

    result = charge(other_process, token_for(other_process), "k")

    assert result.decline_code == "server_error"


def test_does_an_injection_hit_only_its_operation(gateway: SandboxGateway) -> None:
    gateway.inject("rate_limit", operation="refund")
    paid = charge(gateway, token_for(gateway), "paid")

    refund = gateway.refund(reference=paid.reference, amount=100, idempotency_key="r")

    assert paid.approved
    assert refund.decline_code == "rate_limited"
    assert gateway.list_charges()[0].refunded_amount == 0


def test_do_cleared_injections_stop_failing(gateway: SandboxGateway) -> None:
    gateway.inject("decline", times=5, operation="*")
    gateway.clear_injections()

    assert charge(gateway, token_for(gateway), "k").approved


@pytest.mark.parametrize(
    ("failure", "kwargs"),
    [("meltdown", {}), ("decline", {"operation": "teleport"}), ("decline", {"times": 0})],
)
def test_is_a_nonsense_injection_refused(
    gateway: SandboxGateway, failure: Any, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        gateway.inject(failure, **kwargs)


# -- latency ------------------------------------------------------------------------


def test_does_every_call_wait_the_configured_latency(engine: Engine, db_session: Session) -> None:
    slow = SandboxGateway(engine, latency_ms=60)

    started = time.monotonic()
    slow.retrieve(idempotency_key="k")

    assert time.monotonic() - started >= 0.06


def test_is_the_latency_read_from_the_environment_when_not_given(
    engine: Engine, db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_LATENCY_MS", "40")

    from_env = SandboxGateway(engine)
    explicit = SandboxGateway(engine, latency_ms=0)
    started = time.monotonic()
    from_env.retrieve(idempotency_key="k")

    assert (from_env.latency_ms, explicit.latency_ms) == (40, 0)
    assert time.monotonic() - started >= 0.04


# -- webhooks -----------------------------------------------------------------------


EVENT = json.dumps({"id": "evt_1", "type": "charge.refunded", "data": {"id": "ch_sbx_1"}}).encode()


def test_is_a_correctly_signed_webhook_accepted(gateway: SandboxGateway) -> None:
    event = gateway.parse_webhook(EVENT, gateway.sign_webhook(EVENT))

    assert (event.id, event.type, event.data) == ("evt_1", "charge.refunded", {"id": "ch_sbx_1"})


def test_is_the_signature_header_name_case_insensitive(gateway: SandboxGateway) -> None:
    headers = {k.lower(): v for k, v in gateway.sign_webhook(EVENT).items()}

    assert gateway.parse_webhook(EVENT, headers).id == "evt_1"


def test_is_a_webhook_signed_within_the_tolerance_accepted(gateway: SandboxGateway) -> None:
    headers = gateway.sign_webhook(EVENT, timestamp=int(utcnow().timestamp()) - 290)

    assert gateway.parse_webhook(EVENT, headers).id == "evt_1"


@pytest.mark.parametrize(
    "make_headers",
    [
        pytest.param(lambda g: {}, id="missing"),
        pytest.param(lambda g: {SIGNATURE_HEADER: "garbage"}, id="malformed"),
        pytest.param(
            lambda g: {SIGNATURE_HEADER: g.sign_webhook(EVENT)[SIGNATURE_HEADER][:-2] + "00"},
            id="wrong-signature",
        ),
        pytest.param(
            lambda g: SandboxGateway(g.engine, webhook_secret="whsec_other").sign_webhook(EVENT),
            id="other-secret",
        ),
        pytest.param(lambda g: g.sign_webhook(b'{"id": "evt_2"}'), id="other-payload"),
        pytest.param(
            lambda g: g.sign_webhook(EVENT, timestamp=int(utcnow().timestamp()) - 301),
            id="stale",
        ),
        pytest.param(
            lambda g: g.sign_webhook(EVENT, timestamp=int(utcnow().timestamp()) + 301),
            id="future",
        ),
    ],
)
def test_is_a_badly_signed_or_stale_webhook_refused(
    gateway: SandboxGateway, make_headers: Callable[[SandboxGateway], dict[str, str]]
) -> None:
    with pytest.raises(WebhookSignatureError):
        gateway.parse_webhook(EVENT, make_headers(gateway))


def test_is_a_signed_payload_that_is_not_an_event_refused(gateway: SandboxGateway) -> None:
    payload = b'["not", "an", "event"]'

    with pytest.raises(WebhookSignatureError):
        gateway.parse_webhook(payload, gateway.sign_webhook(payload))


# -- card data ----------------------------------------------------------------------


def test_does_no_sandbox_table_hold_a_card_number_or_cvc(
    gateway: SandboxGateway, engine: Engine
) -> None:
    cvc = "987"
    method = gateway.tokenize_card(CardDetails(VISA, 12, FUTURE_YEAR, cvc, "Jenny Rosen", "94107"))
    bank_method = gateway.tokenize_bank_account(bank("000123456789"))
    customer = gateway.create_customer(email="j@example.com", name="J", idempotency_key="c")
    gateway.attach_payment_method(customer_ref=customer, token=method.token)
    paid = charge(gateway, method.token, "k1")
    gateway.refund(reference=paid.reference, amount=100, idempotency_key="r1")
    charge(gateway, bank_method.token, "k2")
    gateway.authorize(amount=50, currency="USD", token=method.token, idempotency_key="k3")

    tables = [t for t in SQLModel.metadata.sorted_tables if t.name.startswith("sandbox_")]
    values: list[str] = []
    with engine.connect() as conn:
        for table in tables:
            assert not [c for c in table.columns if "cvc" in c.name or "cvv" in c.name]
            for row in conn.execute(table.select()):
                values.extend(json.dumps(v, default=str) for v in row)

    assert len(tables) == 6
    assert any(v == '"4242"' for v in values)  # the rows really were scanned
    for secret in ("4242424242424242", VISA, "000123456789"):
        assert not [v for v in values if secret in v]
    assert not [v for v in values if v.strip('"') == cvc]


def test_is_a_key_reused_by_a_call_that_would_error_still_refused(
    gateway: SandboxGateway, engine: Engine
) -> None:
    paid = charge(gateway, token_for(gateway), "k")

    missing = gateway.capture(reference="ch_sbx_nope", amount=100, idempotency_key="k")
    unknown_token = charge(gateway, "pm_sbx_nope", "k")

    assert missing.decline_code == unknown_token.decline_code == "idempotency_key_reused"
    assert gateway.retrieve(idempotency_key="k") == paid
    assert count(engine, SandboxIdempotencyKey) == 1
