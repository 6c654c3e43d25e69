"""Detaching a saved payment method: afterwards nobody can charge or attach it again.

Both processors: the sandbox (against the real test database) and the Stripe adapter
against the local Stripe-API server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from app.clock import utcnow
from app.gateway.base import CardDetails, GatewayError, PaymentMethodRejected
from app.gateway.sandbox import SandboxGateway
from app.gateway.stripe import StripeGateway
from tests.fakes.stripe_api import FakeStripe

VISA = "4242424242424242"


def _card(number: str = VISA) -> CardDetails:
    return CardDetails(number, 12, utcnow().year + 3, "123", name="Ada Lovelace")


@pytest.fixture
def sandbox(engine: Engine, db_session: Session) -> Iterator[SandboxGateway]:
    """A sandbox on the test database (emptied by ``db_session``)."""
    yield SandboxGateway(engine, latency_ms=0)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripe]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with FakeStripe() as server:
        yield server


@pytest.fixture
def stripe_gateway(fake: FakeStripe) -> StripeGateway:
    return StripeGateway(fake.api_key, api_base=fake.url, timeout_seconds=5)


def _saved(gateway: SandboxGateway | StripeGateway, key: str) -> tuple[str, str]:
    customer = gateway.create_customer(email="ada@example.com", name="Ada", idempotency_key=key)
    token = gateway.tokenize_card(_card()).token
    gateway.attach_payment_method(customer_ref=customer, token=token)
    return customer, token


# -- the sandbox -----------------------------------------------------------------------


def test_can_a_detached_sandbox_card_still_be_charged(sandbox: SandboxGateway) -> None:
    customer, token = _saved(sandbox, "cust:detach")
    before = sandbox.charge(
        amount=1000, currency="USD", token=token, customer_ref=customer, idempotency_key="k1"
    )
    assert before.approved

    sandbox.detach_payment_method(token=token)

    off_session = sandbox.charge(
        amount=1000, currency="USD", token=token, customer_ref=customer, idempotency_key="k2"
    )
    bare = sandbox.charge(amount=1000, currency="USD", token=token, idempotency_key="k3")
    assert off_session.status == "error" and not off_session.approved
    assert (bare.status, bare.decline_code) == ("error", "payment_method_unavailable")
    assert [c.idempotency_key for c in sandbox.list_charges()] == ["k1"]  # nothing moved


def test_can_a_detached_sandbox_card_be_attached_or_described_again(
    sandbox: SandboxGateway,
) -> None:
    customer, token = _saved(sandbox, "cust:reattach")
    sandbox.detach_payment_method(token=token)

    with pytest.raises(PaymentMethodRejected) as attach:
        sandbox.attach_payment_method(customer_ref=customer, token=token)
    with pytest.raises(PaymentMethodRejected) as describe:
        sandbox.describe_payment_method(token)

    assert attach.value.code == "payment_method_unavailable"
    assert describe.value.code == "unknown_token"


def test_is_detaching_twice_harmless_and_an_unknown_token_refused(
    sandbox: SandboxGateway,
) -> None:
    _, token = _saved(sandbox, "cust:twice")

    sandbox.detach_payment_method(token=token)
    sandbox.detach_payment_method(token=token)

    with pytest.raises(PaymentMethodRejected) as unknown:
        sandbox.detach_payment_method(token="pm_sbx_never_issued")
    assert unknown.value.code == "resource_missing"


def test_does_detaching_one_card_leave_the_customers_other_cards_alone(
    sandbox: SandboxGateway,
) -> None:
    customer, gone = _saved(sandbox, "cust:two-cards")
    kept = sandbox.tokenize_card(_card("5555555555554444")).token
    sandbox.attach_payment_method(customer_ref=customer, token=kept)

    sandbox.detach_payment_method(token=gone)

    result = sandbox.charge(
        amount=500, currency="USD", token=kept, customer_ref=customer, idempotency_key="kept"
    )
    assert result.approved


# -- the Stripe adapter ------------------------------------------------------------------


def test_does_the_stripe_adapter_post_detach_with_an_idempotency_key(
    stripe_gateway: StripeGateway, fake: FakeStripe
) -> None:
    customer, token = _saved(stripe_gateway, "cust:stripe-detach")

    stripe_gateway.detach_payment_method(token=token)

    (detach,) = fake.posts(f"/v1/payment_methods/{token}/detach")
    assert detach.idempotency_key == f"detach:{token}"
    assert fake.payment_methods[token]["customer"] is None
    assert not fake.violations
    charged = stripe_gateway.charge(
        amount=1000, currency="USD", token=token, customer_ref=customer, idempotency_key="after"
    )
    assert charged.status == "error" and not charged.approved
    other = stripe_gateway.create_customer(email="b@example.com", name="B", idempotency_key="b")
    with pytest.raises(GatewayError):  # Stripe refuses it (a 400 naming no field)
        stripe_gateway.attach_payment_method(customer_ref=other, token=token)


def test_does_the_stripe_adapter_repeat_a_detach_harmlessly(
    stripe_gateway: StripeGateway, fake: FakeStripe
) -> None:
    _, token = _saved(stripe_gateway, "cust:stripe-twice")

    stripe_gateway.detach_payment_method(token=token)
    stripe_gateway.detach_payment_method(token=token)  # same key: Stripe replays the answer

    assert fake.payment_methods[token]["customer"] is None


def test_is_detaching_an_unknown_stripe_method_refused(stripe_gateway: StripeGateway) -> None:
    with pytest.raises(PaymentMethodRejected) as caught:
        stripe_gateway.detach_payment_method(token="pm_never_made")

    assert caught.value.code == "resource_missing"
