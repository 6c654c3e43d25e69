"""Signing in and out: where each role lands, refusals, lockout, session renewal, ``next``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from functools import cache
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from werkzeug.security import generate_password_hash

from app.domain.money import format_money
from app.models import CustomerAccount, Invoice, Partner, Role, Subscription, User
from tests.web.helpers import csrf_token, sign_in

PASSWORD = "a-long-test-password"
INVALID = "Invalid email or password."
LOCKED = "Too many failed sign-in attempts"
OPEN_STATUSES = ("created", "overdue")


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    """A session on the app's database; the ``app`` fixture empties it afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


# -- the demo roles land on their pages -------------------------------------------------


def _rows(page: str) -> list[str]:
    """The table rows of a page, as HTML snippets."""
    return page.split("<tr>")[1:]


def _row_of(page: str, name: str) -> str:
    matches = [row for row in _rows(page) if name in row]
    assert len(matches) == 1, f"{name!r} is in {len(matches)} rows"
    return matches[0]


def _day(value: date | None) -> str:
    return "—" if value is None else value.strftime("%b %-d, %Y")


def _expected_row(session: Session, account: CustomerAccount) -> tuple[str, str, str]:
    """(status, balance due, next charge date) as the list should show them."""
    invoices = session.exec(select(Invoice).where(Invoice.customer_account_id == account.id)).all()
    balance = sum(i.total - i.amount_paid for i in invoices if i.status in OPEN_STATUSES)
    dates = [
        s.next_charge_date
        for s in session.exec(
            select(Subscription).where(Subscription.customer_account_id == account.id)
        ).all()
        if s.status == "recurring" and s.next_charge_date is not None
    ]
    return account.status, format_money(balance, account.currency), _day(min(dates, default=None))


def _accounts(session: Session, slug: str, *, of_partner: bool = True) -> list[CustomerAccount]:
    partner = session.exec(select(Partner).where(Partner.slug == slug)).one()
    same = CustomerAccount.partner_id == partner.id
    return list(session.exec(select(CustomerAccount).where(same if of_partner else ~same)).all())


def test_does_the_operator_land_on_the_list_of_both_partners(
    client: FlaskClient, demo: Flask
) -> None:
    response = sign_in(client, "operator@example.com")
    assert response.status_code == 303
    assert response.headers["Location"] == "/operator/"

    page = client.get("/operator/").get_data(as_text=True)
    assert "Harbor Community Network" in page
    assert "Rheinland Vereine GmbH" in page


@pytest.mark.parametrize(
    ("email", "slug"),
    [
        ("admin@us-partner.example", "us-partner"),
        ("sales@us-partner.example", "us-partner"),
        ("admin@de-partner.example", "de-partner"),
    ],
)
def test_does_a_partner_user_land_on_their_own_customers_with_their_figures(
    client: FlaskClient, demo: Flask, db: Session, email: str, slug: str
) -> None:
    response = sign_in(client, email)
    assert response.status_code == 303
    assert response.headers["Location"] == "/partner/"

    page = client.get("/partner/").get_data(as_text=True)
    own = _accounts(db, slug)
    assert len(own) >= 2
    for account in own:
        row = _row_of(page, account.name)
        status, balance, next_date = _expected_row(db, account)
        assert f">{status}</span>" in row, row
        assert balance in row, (account.name, balance, row)
        assert next_date in row, (account.name, next_date, row)
    for foreign in _accounts(db, slug, of_partner=False):
        assert foreign.name not in page
        assert foreign.email not in page


def test_does_a_partner_list_show_a_known_balance_and_next_charge_date(
    client: FlaskClient, demo: Flask
) -> None:
    """A figure checked by hand: Jordan owes the $40 workshop and the $90 hall rental."""
    sign_in(client, "admin@us-partner.example")

    row = _row_of(client.get("/partner/").get_data(as_text=True), "Jordan Rivera")

    assert "$130.00" in row
    assert "—" not in row  # three recurring schedules: a next charge date is shown


def test_does_a_customer_land_on_their_own_account_only(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    response = sign_in(client, "customer@example.com")
    assert response.status_code == 303
    assert response.headers["Location"] == "/portal/"

    page = client.get("/portal/").get_data(as_text=True)
    own = db.exec(
        select(CustomerAccount).where(CustomerAccount.email == "customer@example.com")
    ).one()
    assert own.name in page
    for sub in db.exec(
        select(Subscription).where(Subscription.customer_account_id == own.id)
    ).all():
        assert sub.description in page
    own_invoices = db.exec(select(Invoice).where(Invoice.customer_account_id == own.id)).all()
    assert own_invoices
    for invoice in own_invoices:
        assert invoice.number in page
    others = db.exec(select(CustomerAccount).where(CustomerAccount.id != own.id)).all()
    for other in others:
        assert other.name not in page
    for invoice in db.exec(select(Invoice).where(col(Invoice.customer_account_id) != own.id)).all():
        assert invoice.number not in page
    for sub in db.exec(
        select(Subscription).where(col(Subscription.customer_account_id) != own.id)
    ).all():
        assert sub.description not in page


# -- refusals and lockout (minimal rows) --------------------------------------------------


@cache
def _password_hash() -> str:
    # A real werkzeug hash, with few rounds so each check is fast (the demo users' hashes
    # come from hash_password, and the sign-in tests use those).
    return generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")


@pytest.fixture
def member(app: Flask, db: Session) -> CustomerAccount:
    """A partner with one admin (admin@tenant.example) and one customer account."""
    partner = Partner(name="Tenant", slug="tenant", country="US")
    db.add(partner)
    db.flush()
    account = CustomerAccount(
        partner_id=partner.id, name="Casey Customer", email="casey@example.com", currency="USD"
    )
    db.add(account)
    db.add(
        User(
            email="admin@tenant.example",
            password_hash=_password_hash(),
            role=Role.PARTNER_ADMIN,
            partner_id=partner.id,
        )
    )
    db.commit()
    return account


def _signed_in_user_id(client: FlaskClient) -> str | None:
    with client.session_transaction() as session:
        return session.get("_user_id")


@pytest.mark.usefixtures("member")
def test_does_a_wrong_password_get_refused_without_a_session(client: FlaskClient) -> None:
    response = sign_in(client, "admin@tenant.example", "not-the-password")

    assert response.status_code == 401
    assert INVALID in response.get_data(as_text=True)
    assert _signed_in_user_id(client) is None
    assert client.get("/partner/").status_code == 302


@pytest.mark.usefixtures("member")
def test_does_an_unknown_email_get_the_same_message(client: FlaskClient) -> None:
    wrong_password = sign_in(client, "admin@tenant.example", "not-the-password")
    unknown = sign_in(client, "nobody@tenant.example", PASSWORD)

    assert unknown.status_code == wrong_password.status_code == 401
    assert INVALID in unknown.get_data(as_text=True)
    assert _signed_in_user_id(client) is None


@pytest.mark.usefixtures("member")
def test_is_the_right_password_refused_after_five_failures(client: FlaskClient) -> None:
    for _ in range(5):
        assert sign_in(client, "admin@tenant.example", "not-the-password").status_code in (
            401,
            429,
        )

    response = sign_in(client, "admin@tenant.example", PASSWORD)

    assert response.status_code == 429
    assert LOCKED in response.get_data(as_text=True)
    assert _signed_in_user_id(client) is None
    assert client.get("/partner/").status_code == 302


@pytest.mark.usefixtures("member")
def test_does_signing_in_renew_the_session(client: FlaskClient) -> None:
    csrf_token(client, "/login")  # the anonymous session exists now
    with client.session_transaction() as session:
        session["planted"] = "set before sign-in"
    before = client.get_cookie("session")
    assert before is not None

    assert sign_in(client, "admin@tenant.example", PASSWORD).status_code == 303

    after = client.get_cookie("session")
    assert after is not None and after.value != before.value
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session.get("_user_id")


@pytest.mark.usefixtures("member")
def test_is_the_csrf_token_from_before_sign_in_refused_after_it(client: FlaskClient) -> None:
    anonymous_token = csrf_token(client, "/login")
    sign_in(client, "admin@tenant.example", PASSWORD)

    response = client.post("/logout", headers={"X-CSRFToken": anonymous_token})

    assert response.status_code == 400
    assert _signed_in_user_id(client) is not None


@pytest.mark.usefixtures("member")
def test_does_signing_out_need_a_post_with_a_csrf_token(client: FlaskClient) -> None:
    sign_in(client, "admin@tenant.example", PASSWORD)

    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert client.get("/partner/").status_code == 200  # still signed in

    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/partner/")})

    assert response.status_code == 303
    assert response.headers["Location"] == "/login"
    assert _signed_in_user_id(client) is None
    assert client.get("/partner/").status_code == 302


def test_does_next_take_a_signed_in_user_to_a_local_page(
    client: FlaskClient, member: CustomerAccount
) -> None:
    target = f"/partner/customers/{member.id}"
    token = csrf_token(client, "/login")
    response = client.post(
        "/login",
        query_string={"next": target},
        data={"email": "admin@tenant.example", "password": PASSWORD, "csrf_token": token},
    )

    assert response.status_code == 303
    assert response.headers["Location"] == target


@pytest.mark.usefixtures("member")
@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "///evil.example/",
        "/\\evil.example/",
        "\\\\evil.example/",
        "/\t/evil.example/",
        "javascript:alert(1)",
        "evil.example",
    ],
)
def test_is_next_refused_when_it_leaves_the_site(client: FlaskClient, target: str) -> None:
    token = csrf_token(client, "/login")
    response = client.post(
        "/login",
        query_string={"next": target},
        data={"email": "admin@tenant.example", "password": PASSWORD, "csrf_token": token},
    )

    assert response.status_code == 303
    location = response.headers["Location"]
    # Browsers read "\" as "/" and drop tabs and newlines before resolving a redirect.
    as_browser = location.replace("\\", "/").replace("\t", "").replace("\n", "")
    parts = urlsplit(as_browser)
    assert not parts.scheme and not parts.netloc, location
    assert as_browser.startswith("/") and not as_browser.startswith("//"), location
