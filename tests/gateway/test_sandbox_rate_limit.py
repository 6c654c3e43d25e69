"""The sandbox's request limit: 429 above N money calls per second, seen by every process."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine

from app.clock import utcnow
from app.extensions import build_engine
from app.gateway.base import CardDetails, GatewayResult
from app.gateway.sandbox import SandboxGateway


@pytest.fixture
def gateway(engine: Engine, db_session) -> SandboxGateway:  # noqa: ANN001  (db_session empties)
    return SandboxGateway(engine)


def _token(gateway: SandboxGateway) -> str:
    card = CardDetails(number="4242424242424242", exp_month=12, exp_year=utcnow().year + 3,
                       cvc="123")  # fmt: skip
    return gateway.tokenize_card(card).token


def _charge(gateway: SandboxGateway, token: str, key: str) -> GatewayResult:
    return gateway.charge(amount=500, currency="USD", token=token, idempotency_key=key)


def _start_of_a_second() -> float:
    """Sleep until just after a wall-clock second begins; returns that second."""
    now = time.time()
    time.sleep(1.02 - now % 1)
    return float(int(time.time()))


def test_are_money_calls_above_the_limit_answered_429_with_nothing_moved(gateway) -> None:
    token = _token(gateway)
    gateway.set_request_limit(3)
    _start_of_a_second()
    results = [_charge(gateway, token, f"k{i}") for i in range(4)]

    assert [r.status for r in results] == ["approved"] * 3 + ["error"]
    refused = results[3]
    assert (refused.decline_code, refused.retryable, refused.reference) == (
        "rate_limited", True, "",
    )  # fmt: skip
    assert "Too many requests" in refused.message
    assert [c.idempotency_key for c in gateway.list_charges()] == ["k0", "k1", "k2"]
    assert gateway.retrieve(idempotency_key="k3") is None

    _start_of_a_second()  # a new window: the same key goes through, once
    assert _charge(gateway, token, "k3").approved
    assert len(gateway.list_charges()) == 4


def test_do_other_gateways_on_the_database_see_the_limit_and_share_the_count(
    gateway, database_url
) -> None:
    token = _token(gateway)
    gateway.set_request_limit(2)
    other_engine = build_engine(database_url)  # what another process would open
    try:
        other = SandboxGateway(other_engine)
        _start_of_a_second()
        first = _charge(gateway, token, "a")
        second = _charge(other, token, "b")
        third = _charge(other, token, "c")
    finally:
        other_engine.dispose()
    assert (first.status, second.status, third.decline_code) == (
        "approved", "approved", "rate_limited",
    )  # fmt: skip


def test_does_lifting_the_limit_let_every_call_through(gateway) -> None:
    token = _token(gateway)
    gateway.set_request_limit(1)
    gateway.set_request_limit(None)
    _start_of_a_second()
    assert all(_charge(gateway, token, f"n{i}").approved for i in range(5))


def test_does_a_refused_call_leave_injected_failures_for_the_next_admitted_one(gateway) -> None:
    token = _token(gateway)
    gateway.set_request_limit(1)
    _start_of_a_second()
    assert _charge(gateway, token, "first").approved
    gateway.inject("decline")
    assert _charge(gateway, token, "refused").decline_code == "rate_limited"
    _start_of_a_second()
    assert _charge(gateway, token, "declined").status == "declined"


def test_does_the_limit_hold_for_concurrent_callers(gateway) -> None:
    token = _token(gateway)
    gateway.set_request_limit(6)
    results: list[GatewayResult] = []
    lock = threading.Lock()

    def calls(n: int) -> None:
        for i in range(5):
            result = _charge(gateway, token, f"t{n}-{i}")
            with lock:
                results.append(result)

    began = _start_of_a_second()
    threads = [threading.Thread(target=calls, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    windows = int(time.time()) - int(began) + 1
    approved = sum(r.approved for r in results)
    assert len(results) == 20
    assert 6 <= approved <= 6 * windows
    assert approved + sum(r.decline_code == "rate_limited" for r in results) == 20
    assert len(gateway.list_charges()) == approved


def test_is_a_limit_below_one_refused(gateway) -> None:
    with pytest.raises(ValueError):
        gateway.set_request_limit(0)
