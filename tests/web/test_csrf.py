"""CSRF: every form post carries the session's token, in the form or in ``X-CSRFToken``."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session
from werkzeug.security import generate_password_hash

from app.models import Partner, Role, User
from tests.web.helpers import csrf_token, sign_in

EMAIL = "admin@tenant.example"
PASSWORD = "a-long-test-password"


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    """A session on the app's database; the ``app`` fixture empties it afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


@cache
def _password_hash() -> str:
    # A real werkzeug hash, with few rounds so each check is fast (the demo users' hashes
    # come from hash_password, and the sign-in tests use those).
    return generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")


@pytest.fixture(autouse=True)
def partner_admin(app: Flask, db: Session) -> None:
    partner = Partner(name="Tenant", slug="tenant", country="US")
    db.add(partner)
    db.flush()
    db.add(
        User(
            email=EMAIL,
            password_hash=_password_hash(),
            role=Role.PARTNER_ADMIN,
            partner_id=partner.id,
        )
    )
    db.commit()


def _is_signed_in(client: FlaskClient) -> bool:
    with client.session_transaction() as session:
        signed_in = bool(session.get("_user_id"))
    assert signed_in == (client.get("/partner/").status_code == 200)
    return signed_in


def test_is_a_sign_in_without_a_token_refused(client: FlaskClient) -> None:
    client.get("/login")  # a browser would have loaded the form first

    response = client.post("/login", data={"email": EMAIL, "password": PASSWORD})

    assert response.status_code == 400
    assert not _is_signed_in(client)


def test_is_a_sign_in_with_a_wrong_token_refused(client: FlaskClient) -> None:
    token = csrf_token(client, "/login")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")

    response = client.post(
        "/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": forged}
    )

    assert response.status_code == 400
    assert not _is_signed_in(client)


def test_is_a_token_of_another_session_refused(app: Flask, client: FlaskClient) -> None:
    someone_elses = csrf_token(app.test_client(), "/login")
    client.get("/login")

    response = client.post(
        "/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": someone_elses}
    )

    assert response.status_code == 400
    assert not _is_signed_in(client)


def test_is_a_sign_out_without_a_token_refused(client: FlaskClient) -> None:
    assert sign_in(client, EMAIL, PASSWORD).status_code == 303

    response = client.post("/logout")

    assert response.status_code == 400
    assert _is_signed_in(client)


def test_is_a_token_in_the_x_csrftoken_header_accepted(client: FlaskClient) -> None:
    token = csrf_token(client, "/login")
    htmx = {"HX-Request": "true", "X-CSRFToken": token}

    response = client.post("/login", data={"email": EMAIL, "password": PASSWORD}, headers=htmx)

    assert response.status_code == 303
    assert _is_signed_in(client)

    token = csrf_token(client, "/partner/")  # a new token: the session was renewed
    response = client.post("/logout", headers={"HX-Request": "true", "X-CSRFToken": token})

    assert response.status_code == 303
    assert not _is_signed_in(client)
