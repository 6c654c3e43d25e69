"""``POST /webhooks/<gateway>`` over HTTP: signatures checked on the raw body, an event
stored once and applied once, with the sandbox and with Stripe (its local fake)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session

from app.clock import utcnow
from app.gateway.base import CardDetails
from app.gateway.sandbox import SandboxGateway
from app.gateway.stripe import StripeGateway
from app.models import CustomerAccount, Invoice, InvoiceStatus, Payment, PaymentStatus
from app.models import ProcessorEvent as Row
from app.services import pay_links
from app.services.card_testing import DeclineLimit
from tests.fakes.stripe_api import FakeStripe, sign_webhook
from tests.services.billing_helpers import make_partner, partner_admin
from tests.services.invoice_helpers import Shop, fresh, issue, make_shop, token
from tests.services.payer_helpers import ADDRESS, NOW, sandbox
from tests.services.webhook_helpers import (
    charge_object,
    count,
    event,
    events,
    lost_payment,
    payload,
    processor_charge,
    receipts,
)

THREADS = 10
STRIPE_SECRET = "whsec_portico_webhooks"


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    with app.app_context(), Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def shop(app: Flask, db: Session) -> Shop:
    return make_shop(app, db)


@pytest.fixture
def lost(app: Flask, db: Session, shop: Shop) -> Payment:
    """A $100.00 invoice payment the sandbox charged but whose answer was lost."""
    return lost_payment(app, db, shop, issue(app, db, shop), 10000)


@pytest.fixture
def succeeded(app: Flask, lost: Payment) -> bytes:
    """The processor's ``charge.succeeded`` about ``lost``, in the sandbox's format."""
    return payload(event("charge.succeeded", charge_object(processor_charge(app, lost))))


def post(app: Flask, body: bytes, headers: dict[str, str], gateway: str = "sandbox"):  # noqa: ANN201
    headers = {"Content-Type": "application/json", **headers}
    return app.test_client().post(f"/webhooks/{gateway}", data=body, headers=headers)


def _now() -> int:
    return int(utcnow().timestamp())


BAD_SIGNATURES: dict[str, Callable[[SandboxGateway, bytes], tuple[bytes, dict[str, str]]]] = {
    "wrong-secret": lambda g, body: (
        body,
        SandboxGateway(g.engine, webhook_secret="whsec_someone_else").sign_webhook(body),
    ),
    "old-timestamp": lambda g, body: (body, g.sign_webhook(body, timestamp=_now() - 301)),
    "future-timestamp": lambda g, body: (body, g.sign_webhook(body, timestamp=_now() + 301)),
    "altered-body": lambda g, body: (body.replace(b"10000", b"1"), g.sign_webhook(body)),
    "missing-header": lambda g, body: (body, {}),
    "malformed-header": lambda g, body: (body, {"Sandbox-Signature": "t=soon,v1=nope"}),
}


@pytest.mark.parametrize("case", BAD_SIGNATURES)
def test_is_a_badly_signed_event_refused_and_not_stored(
    app: Flask, db: Session, lost: Payment, succeeded: bytes, case: str
) -> None:
    body, headers = BAD_SIGNATURES[case](sandbox(app), succeeded)

    response = post(app, body, headers)

    assert response.status_code == 400
    assert response.get_json() == {"error": "The signature does not verify."}
    assert count(db, Row) == 0
    assert fresh(db, Payment, lost.id).status == PaymentStatus.UNKNOWN


def test_is_a_signed_event_applied_and_answered_200(
    app: Flask, db: Session, lost: Payment, succeeded: bytes
) -> None:
    response = post(app, succeeded, sandbox(app).sign_webhook(succeeded))

    assert response.status_code == 200
    assert response.get_json() == {"received": True, "outcome": "applied", "duplicate": False}
    assert fresh(db, Payment, lost.id).status == PaymentStatus.APPROVED
    assert fresh(db, Invoice, lost.invoice_id).status == InvoiceStatus.PAID
    assert receipts(db, lost) == 1


def test_is_the_same_event_posted_ten_times_at_once_stored_and_applied_once(
    app: Flask, db: Session, lost: Payment, succeeded: bytes
) -> None:
    headers = sandbox(app).sign_webhook(succeeded)
    start = threading.Barrier(THREADS)
    answers: list[tuple[int, dict]] = []

    def deliver() -> None:
        client = app.test_client()  # its own client; each request its own session
        start.wait()
        response = client.post(
            "/webhooks/sandbox",
            data=succeeded,
            headers={"Content-Type": "application/json", **headers},
        )
        answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=deliver) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [status for status, _ in answers] == [200] * THREADS
    assert sorted(body["duplicate"] for _, body in answers) == [False] + [True] * (THREADS - 1)
    [row] = events(db)
    assert row.outcome == "applied"
    assert fresh(db, Payment, lost.id).status == PaymentStatus.APPROVED
    assert fresh(db, Invoice, lost.invoice_id).amount_paid == 10000
    assert receipts(db, lost) == 1


def test_is_a_repeated_delivery_answered_200_without_a_second_effect(
    app: Flask, db: Session, lost: Payment, succeeded: bytes
) -> None:
    first = post(app, succeeded, sandbox(app).sign_webhook(succeeded))
    again = post(app, succeeded, sandbox(app).sign_webhook(succeeded))

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.get_json()["duplicate"] is True
    assert (count(db, Row), receipts(db, lost)) == (1, 1)


def test_is_only_the_configured_gateways_route_there_and_only_for_posts(
    app: Flask, db: Session, succeeded: bytes
) -> None:
    headers = sandbox(app).sign_webhook(succeeded)

    assert post(app, succeeded, headers, gateway="stripe").status_code == 404
    assert post(app, succeeded, headers, gateway="paypal").status_code == 404
    assert app.test_client().get("/webhooks/sandbox").status_code == 405
    assert count(db, Row) == 0


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json at all", id="not-json"),
        pytest.param(b'["an", "array"]', id="not-an-object"),
        pytest.param(b'{"id": 7, "type": "charge.succeeded", "data": {}}', id="id-not-a-string"),
        pytest.param(
            json.dumps({"id": "e" * 256, "type": "charge.succeeded", "data": {}}).encode(),
            id="id-too-long",
        ),
        pytest.param(
            json.dumps({"id": "evt_\u0000", "type": "charge.succeeded", "data": {}}).encode(),
            id="id-with-nul",
        ),
    ],
)
def test_is_a_signed_body_that_is_no_usable_event_refused_and_not_stored(
    app: Flask, db: Session, body: bytes
) -> None:
    response = post(app, body, sandbox(app).sign_webhook(body))

    assert response.status_code == 400
    assert "error" in response.get_json()
    assert count(db, Row) == 0


def test_is_a_payload_too_large_to_be_an_event_refused_unread(app: Flask, db: Session) -> None:
    body = b'{"id": "evt_big", "type": "charge.succeeded", "data": {"pad": "' + b"x" * 300_000
    body += b'"}}'

    response = post(app, body, sandbox(app).sign_webhook(body))

    assert response.status_code == 413
    assert count(db, Row) == 0


@pytest.mark.parametrize(
    "obj",
    [
        {"id": 7, "metadata": ["attempt_id", "1"], "amount": "100", "currency": 5},
        {"id": "ch_x", "metadata": {"attempt_id": "999999", "purpose_key": "<script>"}},
        {"payment_intent": {"id": "pi_expanded"}, "amount_refunded": -5, "refunds": "all"},
        {"id": "ch_\u0000\n", "metadata": {"idempotency_key": "portico:" + "k" * 5000}},
    ],
    ids=["wrong-types", "unknown-attempt", "odd-shapes", "control-characters"],
)
@pytest.mark.parametrize("type_", ["charge.succeeded", "charge.failed", "charge.refunded"])
def test_is_a_signed_event_with_a_hostile_object_stored_without_effect(
    app: Flask, db: Session, lost: Payment, type_: str, obj: dict
) -> None:
    body = payload(event(type_, obj))

    response = post(app, body, sandbox(app).sign_webhook(body))

    assert response.status_code == 200
    assert response.get_json()["outcome"] == "unknown_object"
    assert fresh(db, Payment, lost.id).status == PaymentStatus.UNKNOWN


# -- Stripe ------------------------------------------------------------------------------


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripe]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a CI proxy must not see local traffic
    with FakeStripe() as server:
        yield server


@pytest.fixture
def stripe_app(app: Flask, engine: Engine, settings, fake: FakeStripe) -> Flask:  # noqa: ANN001
    """The app with PAYMENT_GATEWAY=stripe against the local Stripe API (``app`` empties
    the database afterwards)."""
    from app import create_app

    stripe_settings = replace(
        settings,
        payment_gateway="stripe",
        stripe_secret_key=fake.api_key,
        stripe_webhook_secret=STRIPE_SECRET,
        stripe_api_base=fake.url,
    )
    flask_app = create_app(config={"TESTING": True}, settings=stripe_settings)
    resources = flask_app.extensions["portico"]
    resources.engine.dispose()
    resources.engine = engine
    return flask_app


def lost_stripe_payment(stripe_app: Flask, db: Session, fake: FakeStripe) -> Payment:
    """An invoice paid by card through Stripe whose answer never came back."""
    gateway = stripe_app.extensions["portico"].gateway
    assert isinstance(gateway, StripeGateway)
    partner = make_partner(db, "stripe-harbor")
    account = CustomerAccount(
        partner_id=partner.id,  # type: ignore[arg-type]
        name="Casey Stripe",
        email="casey@customers.example",
        currency=partner.currency,
    )
    db.add(account)
    db.commit()
    shop = Shop(partner, partner_admin(db, partner), account, None)  # type: ignore[arg-type]
    invoice = issue(stripe_app, db, shop)
    method = gateway.tokenize_card(CardDetails("4242424242424242", 12, utcnow().year + 2, "123"))
    form = token(stripe_app, f"paylink:{invoice.id}")
    fake.fail_next("process_then_drop", path="/v1/payment_intents")
    outcome = pay_links.pay_invoice(
        db, gateway, view=pay_links.LinkView(None, invoice, partner, account, "payable"),
        form=form, amount=10000, method=method, payer_email=account.email,
        client_address=ADDRESS, now=NOW, limit=DeclineLimit(),
    )  # fmt: skip
    assert outcome.status == PaymentStatus.UNKNOWN
    return fresh(db, Payment, outcome.attempt_id)


def stripe_event(fake: FakeStripe, event_id: str = "evt_stripe_1") -> bytes:
    """``payment_intent.succeeded`` as Stripe sends it: the intent under data.object."""
    [intent] = fake.intents.values()
    assert intent["status"] == "succeeded"
    body = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": _now(),
        "type": "payment_intent.succeeded",
        "data": {"object": {k: v for k, v in intent.items() if not k.startswith("_")}},
    }
    return json.dumps(body).encode()


def test_does_a_stripe_signed_event_settle_the_payment_through_the_stripe_adapter(
    stripe_app: Flask, db: Session, fake: FakeStripe
) -> None:
    attempt = lost_stripe_payment(stripe_app, db, fake)
    body = stripe_event(fake)

    response = post(
        stripe_app, body, {"Stripe-Signature": sign_webhook(body, STRIPE_SECRET)}, "stripe"
    )

    assert response.status_code == 200
    assert response.get_json()["outcome"] == "applied"
    settled = fresh(db, Payment, attempt.id)
    [intent_id] = fake.intents
    assert (settled.status, settled.gateway_reference) == (PaymentStatus.APPROVED, intent_id)
    assert fresh(db, Invoice, attempt.invoice_id).status == InvoiceStatus.PAID
    assert receipts(db, attempt) == 1
    assert [(row.gateway, row.event_id) for row in events(db)] == [("stripe", "evt_stripe_1")]


@pytest.mark.parametrize(
    "make_header",
    [
        pytest.param(lambda body: sign_webhook(body, "whsec_wrong"), id="wrong-secret"),
        pytest.param(lambda body: sign_webhook(body, STRIPE_SECRET, _now() - 301), id="old"),
        pytest.param(lambda body: sign_webhook(body, STRIPE_SECRET, _now() + 301), id="future"),
        pytest.param(lambda body: sign_webhook(body + b" ", STRIPE_SECRET), id="altered-body"),
    ],
)
def test_is_a_badly_signed_stripe_event_refused_and_not_stored(
    stripe_app: Flask, db: Session, fake: FakeStripe, make_header: Callable[[bytes], str]
) -> None:
    attempt = lost_stripe_payment(stripe_app, db, fake)
    body = stripe_event(fake)

    response = post(stripe_app, body, {"Stripe-Signature": make_header(body)}, "stripe")

    assert response.status_code == 400
    assert count(db, Row) == 0
    assert fresh(db, Payment, attempt.id).status == PaymentStatus.UNKNOWN
