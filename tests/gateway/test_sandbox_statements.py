"""The sandbox's money calls stay cheap: one checkout, one transaction, few statements.

The billing run makes one sandbox call per charge, so the database round trips of a call
bound its throughput. These tests count them with SQLAlchemy's events and fail when the
normal case (no request limit, no injected failure) grows back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session

from app.clock import utcnow
from app.gateway.base import CardDetails, GatewayResult
from app.gateway.sandbox import SandboxGateway

# The fast path of a charge: one SELECT of the payment method that also asks the gate
# (nothing injected, no limit), INSERT charge, INSERT idempotency key; then COMMIT.
CHARGE_STATEMENTS = 3


@pytest.fixture
def gateway(engine: Engine, db_session: Session) -> SandboxGateway:
    return SandboxGateway(engine, latency_ms=0)


@pytest.fixture
def token(gateway: SandboxGateway) -> str:
    card = CardDetails("4242424242424242", 12, utcnow().year + 3, "123")
    return gateway.tokenize_card(card).token


@pytest.fixture
def meter(engine: Engine) -> Iterator[Counter[str]]:
    """Statements, commits and pool checkouts on ``engine`` while a test runs."""
    counts: Counter[str] = Counter()

    def statement(*_args: object) -> None:
        counts["statements"] += 1

    def commit(*_args: object) -> None:
        counts["commits"] += 1

    def checkout(*_args: object) -> None:
        counts["checkouts"] += 1

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    event.listen(engine.pool, "checkout", checkout)
    yield counts
    event.remove(engine, "before_cursor_execute", statement)
    event.remove(engine, "commit", commit)
    event.remove(engine.pool, "checkout", checkout)


def per_call(meter: Counter[str], calls: int, make: Callable[[int], GatewayResult]) -> Counter:
    before = Counter(meter)
    results = [make(i) for i in range(calls)]
    assert all(r.approved for r in results), results
    spent = meter - before
    return Counter({name: spent[name] / calls for name in ("statements", "commits", "checkouts")})


def test_is_an_approved_charge_one_checkout_one_commit_and_few_statements(
    gateway: SandboxGateway, token: str, meter: Counter[str]
) -> None:
    def charge(i: int) -> GatewayResult:
        return gateway.charge(amount=500, currency="USD", token=token, idempotency_key=f"k{i}")

    cost = per_call(meter, 5, charge)

    assert cost["statements"] <= CHARGE_STATEMENTS, cost
    assert (cost["commits"], cost["checkouts"]) == (1, 1), cost


def test_are_authorize_capture_void_and_refund_as_cheap(
    gateway: SandboxGateway, token: str, meter: Counter[str]
) -> None:
    auths: list[GatewayResult] = []

    def authorize(i: int) -> GatewayResult:
        auths.append(
            gateway.authorize(amount=900, currency="USD", token=token, idempotency_key=f"a{i}")
        )
        return auths[-1]

    authorized = per_call(meter, 4, authorize)
    captured = per_call(
        meter,
        2,
        lambda i: gateway.capture(
            reference=auths[i].reference, amount=900, idempotency_key=f"c{i}"
        ),
    )
    voided = per_call(
        meter, 2, lambda i: gateway.void(reference=auths[2 + i].reference, idempotency_key=f"v{i}")
    )
    refunded = per_call(
        meter,
        2,
        lambda i: gateway.refund(reference=auths[0].reference, amount=100, idempotency_key=f"r{i}"),
    )

    # Capture and void: SELECT charge, gate SELECT, UPDATE … RETURNING, INSERT key.
    # A refund also inserts its refund row.
    assert authorized["statements"] <= CHARGE_STATEMENTS, authorized
    assert captured["statements"] <= 4 and voided["statements"] <= 4, (captured, voided)
    assert refunded["statements"] <= 5, refunded
    for cost in (authorized, captured, voided, refunded):
        assert (cost["commits"], cost["checkouts"]) == (1, 1), cost


def test_does_retrieve_take_one_statement(
    gateway: SandboxGateway, token: str, meter: Counter[str]
) -> None:
    gateway.charge(amount=500, currency="USD", token=token, idempotency_key="k")
    before = Counter(meter)

    assert gateway.retrieve(idempotency_key="k") is not None
    assert (meter - before)["statements"] == 1


def test_does_an_injection_for_another_operation_keep_the_fast_path(
    gateway: SandboxGateway, token: str, meter: Counter[str]
) -> None:
    gateway.inject("server_error", operation="refund")
    gateway.inject("decline", times=2, operation="charge")
    declined = [
        gateway.charge(amount=500, currency="USD", token=token, idempotency_key=f"d{i}")
        for i in range(2)
    ]

    def charge(i: int) -> GatewayResult:
        return gateway.charge(amount=500, currency="USD", token=token, idempotency_key=f"k{i}")

    cost = per_call(meter, 3, charge)

    assert [d.status for d in declined] == ["declined", "declined"]
    assert cost["statements"] <= CHARGE_STATEMENTS, cost
    assert (cost["commits"], cost["checkouts"]) == (1, 1), cost


def test_does_asking_again_for_a_customer_only_read(
    gateway: SandboxGateway, meter: Counter[str]
) -> None:
    first = gateway.create_customer(email="a@example.com", name="A", idempotency_key="c")
    before = Counter(meter)

    again = gateway.create_customer(email="a@example.com", name="A", idempotency_key="c")

    spent = meter - before
    assert again == first
    assert (spent["statements"], spent["commits"]) == (1, 0), spent
