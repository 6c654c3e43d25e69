"""The operator's audit trail page: operators only, newest first, 50 a page, filters by
partner, action, actor, subject and dates (plain GET form, or its block with htmx)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, select
from werkzeug.security import generate_password_hash

from app.models import CustomerAccount, Partner, Role, User
from app.services import refunds
from app.services.audit_log import add_event
from tests.services.invoice_helpers import issue, make_shop, pay_by_card, token
from tests.web.helpers import sign_in

PASSWORD = "a-long-test-password"
OPERATOR = "ops@platform.example"
ADMIN_A = "admin@alpha.example"
CUSTOMER_A = "member@alpha.example"
DAY_ONE = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
_ACTION = re.compile(r"<td><code>([^<]+)</code></td>")


@cache
def _password_hash() -> str:
    return generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    """A session on the app's database; the ``app`` fixture empties it afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def tenants(app: Flask, db: Session) -> tuple[Partner, Partner]:
    """Partners Alpha and Beta, an operator, Alpha's admin and one of Alpha's customers."""
    alpha = Partner(name="Alpha Rowing", slug="alpha", country="US")
    beta = Partner(name="Beta Chess", slug="beta", country="US")
    db.add_all([alpha, beta])
    db.flush()
    account = CustomerAccount(partner_id=alpha.id, name="Member", email=CUSTOMER_A, currency="USD")  # type: ignore[arg-type]
    db.add(account)
    db.flush()
    hashed = _password_hash()
    db.add_all(
        [
            User(email=OPERATOR, password_hash=hashed, role=Role.OPERATOR),
            User(email=ADMIN_A, password_hash=hashed, role=Role.PARTNER_ADMIN, partner_id=alpha.id),
            User(
                email=CUSTOMER_A,
                password_hash=hashed,
                role=Role.CUSTOMER,
                partner_id=alpha.id,
                customer_account_id=account.id,
            ),
        ]
    )
    db.commit()
    return alpha, beta


def _event(
    db: Session, partner: Partner | None, action: str, *, at: datetime, label: str, **detail: object
) -> None:
    subject = action.partition(".")[0]
    add_event(
        db,
        action=action,
        subject_type=subject,
        subject_id=1,
        partner_id=partner.id if partner else None,
        actor_label=label,
        detail=detail,
        at=at,
    )
    db.commit()


def _actions(body: str) -> list[str]:
    return _ACTION.findall(body)


@pytest.fixture
def history(db: Session, tenants: tuple[Partner, Partner]) -> None:
    """Five events over three days: Alpha's, Beta's and the platform's."""
    alpha, beta = tenants
    _event(db, alpha, "user.invited", at=DAY_ONE, label="admin@alpha.example", canary="ALPHA-1")
    _event(
        db,
        alpha,
        "payment.refunded",
        at=DAY_ONE + timedelta(days=1),
        label="admin@alpha.example",
        canary="ALPHA-2",
    )
    _event(
        db,
        beta,
        "payment.refunded",
        at=DAY_ONE + timedelta(days=1, hours=1),
        label="boss@beta.example",
        canary="BETA-1",
    )
    _event(
        db,
        beta,
        "widget.deactivated",
        at=DAY_ONE + timedelta(days=2),
        label="boss@beta.example",
        canary="BETA-2",
    )
    _event(
        db,
        None,
        "billing_run.started",
        at=DAY_ONE + timedelta(days=2, hours=1),
        label="billing run",
        canary="PLATFORM-1",
    )


def _operator(client: FlaskClient) -> FlaskClient:
    sign_in(client, OPERATOR, PASSWORD)
    return client


def test_does_an_anonymous_visitor_go_to_the_sign_in_page(client: FlaskClient, tenants) -> None:  # noqa: ANN001
    response = client.get("/operator/audit")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("email", [ADMIN_A, CUSTOMER_A])
def test_can_a_partner_admin_or_a_customer_open_the_audit_trail(
    client: FlaskClient, history: None, email: str
) -> None:
    sign_in(client, email, PASSWORD)
    response = client.get("/operator/audit?partner=1")
    assert response.status_code == 404
    assert "ALPHA-1" not in response.get_data(as_text=True)


def test_does_the_operator_see_every_event_newest_first_with_a_link_in_the_menu(
    client: FlaskClient, history: None
) -> None:
    body = _operator(client).get("/operator/audit").get_data(as_text=True)
    assert _actions(body) == [
        "billing_run.started",
        "widget.deactivated",
        "payment.refunded",
        "payment.refunded",
        "user.invited",
    ]
    assert 'href="/operator/audit" aria-current="page">Audit trail</a>' in body
    for label in ("Partner", "Action", "Actor", "Subject", "From", "To"):
        assert f">{label}</label>" in body


def test_does_the_partner_filter_keep_another_partners_events_out(
    client: FlaskClient, history: None, tenants: tuple[Partner, Partner]
) -> None:
    alpha, beta = tenants
    client = _operator(client)

    body = client.get(f"/operator/audit?partner={alpha.id}").get_data(as_text=True)
    assert "ALPHA-1" in body and "ALPHA-2" in body
    assert "BETA" not in body and "PLATFORM-1" not in body

    body = client.get(f"/operator/audit?partner={beta.id}").get_data(as_text=True)
    assert "ALPHA" not in body and _actions(body) == ["widget.deactivated", "payment.refunded"]


@pytest.mark.parametrize(
    ("query", "canaries"),
    [
        ("action=payment.refunded", ["BETA-1", "ALPHA-2"]),
        ("action=payment.", ["BETA-1", "ALPHA-2"]),
        ("actor=BOSS@beta", ["BETA-2", "BETA-1"]),
        ("actor=billing+run", ["PLATFORM-1"]),
        ("subject_type=widget", ["BETA-2"]),
        ("since=2026-03-02&until=2026-03-02", ["BETA-1", "ALPHA-2"]),
        ("since=2026-03-03", ["PLATFORM-1", "BETA-2"]),
        ("until=2026-03-01", ["ALPHA-1"]),
        ("action=payment.refunded&actor=alpha", ["ALPHA-2"]),
        ("action=user.invited&partner={beta}", []),
    ],
)
def test_do_the_filters_narrow_the_list(
    client: FlaskClient,
    history: None,
    tenants: tuple[Partner, Partner],
    query: str,
    canaries: list[str],
) -> None:
    url = "/operator/audit?" + query.format(beta=tenants[1].id)
    body = _operator(client).get(url).get_data(as_text=True)
    assert re.findall(r"canary: ([A-Z]+-\d)", body) == canaries
    if not canaries:
        assert "No events match." in body


def test_does_the_actor_filter_match_a_users_email_when_the_label_is_a_name(
    client: FlaskClient, db: Session, tenants: tuple[Partner, Partner]
) -> None:
    admin = db.exec(select(User).where(User.email == ADMIN_A)).one()
    add_event(
        db,
        action="invoice.issued",
        subject_type="invoice",
        subject_id=7,
        partner_id=tenants[0].id,
        actor_user_id=admin.id,
        actor_label="Ada Admin",
    )
    db.commit()
    body = _operator(client).get("/operator/audit?actor=admin@alpha").get_data(as_text=True)
    assert _actions(body) == ["invoice.issued"]
    assert "Ada Admin (admin@alpha.example)" in body


def test_are_events_shown_fifty_a_page_with_older_and_newer_links(
    client: FlaskClient, db: Session, tenants: tuple[Partner, Partner]
) -> None:
    for n in range(53):
        _event(
            db,
            tenants[0],
            "user.invited",
            at=DAY_ONE + timedelta(minutes=n),
            label=f"n{n}",
            canary=f"N-{n}",
        )
    client = _operator(client)

    first = client.get(f"/operator/audit?partner={tenants[0].id}").get_data(as_text=True)
    assert len(_actions(first)) == 50 and "canary: N-52" in first and "N-2<" not in first
    older = re.search(r'href="([^"]+)">Older</a>', first)
    assert older and f"partner={tenants[0].id}" in older.group(1)

    second = client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert re.findall(r"canary: (N-\d+)", second) == ["N-2", "N-1", "N-0"]
    assert ">Newer</a>" in second and ">Older</a>" not in second


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "since"),
        ("since=2026-03-05&until=2026-03-01", "until"),
        ("partner=x", "partner"),
        ("partner=%C2%B2", "partner"),  # "²" passes str.isdigit, int() refuses it
        ("partner=" + "9" * 5000, "partner"),
    ],
)
def test_does_a_bad_filter_answer_422_naming_the_field(
    client: FlaskClient, history: None, query: str, field: str
) -> None:
    response = _operator(client).get(f"/operator/audit?{query}")
    assert response.status_code == 422
    assert f'id="{field}-error"' in response.get_data(as_text=True)


def test_does_an_htmx_filter_get_only_the_results(client: FlaskClient, history: None) -> None:
    response = _operator(client).get(
        "/operator/audit?subject_type=widget", headers={"HX-Request": "true"}
    )
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="audit-results">') and "<form" not in body
    assert _actions(body) == ["widget.deactivated"]
    assert "HX-Request" in response.headers.get("Vary", "")


def test_does_the_trail_show_no_card_number_after_a_card_payment_and_its_refund(
    app: Flask, client: FlaskClient, db: Session, tenants: tuple[Partner, Partner]
) -> None:
    with app.app_context():
        shop = make_shop(app, db, "gamma")
        invoice = issue(app, db, shop)
        paid = pay_by_card(app, db, shop, invoice, 2500)
        refunds.refund_payment(
            db,
            app.extensions["portico"].gateway,
            shop.admin,
            paid.id,  # type: ignore[arg-type]
            refunds.RefundForm(amount="5.00", note="customer read 4242 4242 4242 4242 to us"),
            token=token(app, f"refund:{paid.id}"),
            now=datetime.now(UTC),
        )

    body = (
        _operator(client).get(f"/operator/audit?partner={shop.partner.id}").get_data(as_text=True)
    )
    assert _actions(body) == ["payment.refunded", "invoice.paid_by_payer", "invoice.issued"]
    assert "•••• 4242" in body
    assert "4242424242424242" not in body and "4242 4242 4242 4242" not in body
    assert not re.search(r"\d{12,}", body)
