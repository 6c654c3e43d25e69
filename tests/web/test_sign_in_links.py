"""Emailed sign-in links and password reset, through the pages a customer uses."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from app.models import OutboxMessage, SignInToken, User
from tests.web.helpers import DEMO_PASSWORD, csrf_token, sign_in

JORDAN = "customer@example.com"
NEW_PASSWORD = "a brand new long password"
SIGN_IN_SENT = "If an account exists for that address, we&#39;ve emailed a sign-in link."
RESET_SENT = "If an account exists for that address, we&#39;ve emailed a link to choose"
_CSRF = re.compile(r'(name="csrf_token"[^>]*value=|name="csrf-token" content=)"[^"]+"')


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    """A session on the demo database; the ``app`` fixture empties it afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _link(db: Session, kind: str, to: str = JORDAN) -> str:
    """The path of the link in the latest ``kind`` email to ``to`` (as the person clicks it)."""
    db.expire_all()
    message = db.exec(
        select(OutboxMessage)
        .where(OutboxMessage.kind == kind, OutboxMessage.to_address == to)
        .order_by(col(OutboxMessage.id).desc())
    ).first()
    assert message is not None, f"no {kind} email to {to}"
    match = re.search(r"http://localhost(/\S+)", message.text_body)
    assert match, message.text_body
    return match.group(1)


def _count(db: Session, kind: str) -> int:
    db.expire_all()
    return len(db.exec(select(OutboxMessage).where(OutboxMessage.kind == kind)).all())


def _ask(client: FlaskClient, path: str, email: str, **extra: str):  # noqa: ANN202
    token = csrf_token(client, path)
    return client.post(path, data={"email": email, "csrf_token": token, **extra})


def _signed_in_as(client: FlaskClient) -> str | None:
    with client.session_transaction() as session:
        user_id = session.get("_user_id")
    return user_id


def _without_csrf(page: str) -> str:
    return _CSRF.sub("", page)


def _expire_all_links(db: Session) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    db.execute(update(SignInToken).values(expires_at=past))
    db.commit()


# -- the sign-in page -----------------------------------------------------------------------


def test_does_the_sign_in_page_offer_a_link_and_a_reset(client: FlaskClient, db: Session) -> None:
    page = client.get("/login").get_data(as_text=True)

    assert 'href="/login/link">Email me a sign-in link</a>' in page
    assert 'href="/password/forgot">Forgot your password?</a>' in page


# -- signing in with an emailed link ----------------------------------------------------------


def test_does_a_customer_sign_in_with_an_emailed_link(client: FlaskClient, db: Session) -> None:
    form = client.get("/login/link").get_data(as_text=True)
    assert '<label for="email">Email</label>' in form

    response = _ask(client, "/login/link", JORDAN)
    assert response.status_code == 200
    assert SIGN_IN_SENT in response.get_data(as_text=True)
    link = _link(db, "sign_in_link")
    assert link.startswith("/login/link/")

    opened = client.get(link)  # what a mail scanner would do, too
    assert opened.status_code == 200
    assert opened.headers["Referrer-Policy"] == "no-referrer"
    page = opened.get_data(as_text=True)
    assert f"Sign in as {JORDAN}" in page
    assert '<button type="submit" class="primary">Sign in</button>' in page
    assert _signed_in_as(client) is None
    assert client.get("/portal/").status_code == 302  # the GET signed nobody in

    used = client.post(link, data={"csrf_token": csrf_token(client, link)})
    assert used.status_code == 303
    assert used.headers["Location"] == "/portal/"
    assert client.get("/portal/").status_code == 200
    jordan = db.exec(select(User).where(User.email == JORDAN)).one()
    assert _signed_in_as(client) == str(jordan.id)


def test_is_a_used_link_refused_with_410(client: FlaskClient, db: Session) -> None:
    _ask(client, "/login/link", JORDAN)
    link = _link(db, "sign_in_link")
    assert client.post(link, data={"csrf_token": csrf_token(client, link)}).status_code == 303
    client.post("/logout", data={"csrf_token": csrf_token(client, "/login/link")})

    again = client.get(link)

    assert again.status_code == 410
    assert again.headers["Referrer-Policy"] == "no-referrer"
    page = again.get_data(as_text=True)
    assert "already been used" in page
    assert 'href="/login/link">Email me a new sign-in link</a>' in page
    posted = client.post(link, data={"csrf_token": csrf_token(client, "/login")})
    assert posted.status_code == 410
    assert _signed_in_as(client) is None


def test_is_an_expired_link_refused_with_410(client: FlaskClient, db: Session) -> None:
    _ask(client, "/login/link", JORDAN)
    link = _link(db, "sign_in_link")
    token = csrf_token(client, link)
    _expire_all_links(db)

    assert "has expired" in client.get(link).get_data(as_text=True)
    response = client.post(link, data={"csrf_token": token})

    assert response.status_code == 410
    assert _signed_in_as(client) is None


@pytest.mark.parametrize("path", ["/login/link/not-a-token", "/password/reset/not-a-token"])
def test_is_an_unknown_link_not_found(client: FlaskClient, db: Session, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "This link can't be used" in response.get_data(as_text=True)
    assert client.post(path, data={"csrf_token": csrf_token(client)}).status_code == 404


def test_does_the_link_sign_in_renew_the_session(client: FlaskClient, db: Session) -> None:
    _ask(client, "/login/link", JORDAN)
    link = _link(db, "sign_in_link")
    token = csrf_token(client, link)
    with client.session_transaction() as session:
        session["planted"] = "set before sign-in"

    assert client.post(link, data={"csrf_token": token}).status_code == 303

    with client.session_transaction() as session:
        assert "planted" not in session


def test_does_a_partner_user_land_on_their_own_pages(client: FlaskClient, db: Session) -> None:
    _ask(client, "/login/link", "admin@us-partner.example")
    link = _link(db, "sign_in_link", to="admin@us-partner.example")

    response = client.post(link, data={"csrf_token": csrf_token(client, link)})

    assert response.headers["Location"] == "/partner/"


# -- neutral answers and limits ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"), [("/login/link", "sign_in_link"), ("/password/forgot", "password_reset")]
)
def test_does_an_unknown_email_get_the_same_answer(
    client: FlaskClient, db: Session, path: str, kind: str
) -> None:
    known = _ask(client, path, JORDAN)
    unknown = _ask(client, path, "nobody@example.com")

    assert known.status_code == unknown.status_code == 200
    known_page = _without_csrf(known.get_data(as_text=True)).replace(JORDAN, "…")
    unknown_page = _without_csrf(unknown.get_data(as_text=True)).replace("nobody@example.com", "…")
    assert known_page == unknown_page
    assert _count(db, kind) == 1


def test_can_the_link_form_flood_a_mailbox(client: FlaskClient, db: Session) -> None:
    answers = [_ask(client, "/login/link", JORDAN) for _ in range(5)]

    assert {a.status_code for a in answers} == {200}
    assert all(SIGN_IN_SENT in a.get_data(as_text=True) for a in answers)
    assert _count(db, "sign_in_link") == 3


@pytest.mark.parametrize("path", ["/login/link", "/password/forgot"])
@pytest.mark.parametrize(
    ("email", "message"),
    [("  ", "Enter your email."), ("jordan at example", "Enter a valid email.")],
)
def test_is_a_missing_or_malformed_email_asked_for_again(
    client: FlaskClient, db: Session, path: str, email: str, message: str
) -> None:
    response = _ask(client, path, email)

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'aria-invalid="true" aria-describedby="email-error"' in page
    assert f'<p class="error" id="email-error">{message}</p>' in page
    assert f'value="{email.strip()}"' in page  # the value is kept


# -- CSRF -------------------------------------------------------------------------------------


def test_do_the_request_forms_need_a_csrf_token(client: FlaskClient, db: Session) -> None:
    client.get("/login")

    assert client.post("/login/link", data={"email": JORDAN}).status_code == 400
    assert client.post("/password/forgot", data={"email": JORDAN}).status_code == 400
    assert _count(db, "sign_in_link") == _count(db, "password_reset") == 0


def test_does_using_a_link_need_a_csrf_token(client: FlaskClient, db: Session) -> None:
    _ask(client, "/login/link", JORDAN)
    _ask(client, "/password/forgot", JORDAN)
    sign_in_link, reset_link = _link(db, "sign_in_link"), _link(db, "password_reset")

    assert client.post(sign_in_link).status_code == 400
    refused = client.post(reset_link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert refused.status_code == 400

    assert _signed_in_as(client) is None
    assert client.get(sign_in_link).status_code == 200  # neither link was spent
    assert client.get(reset_link).status_code == 200


# -- resetting a forgotten password -----------------------------------------------------------


def test_does_a_customer_reset_a_forgotten_password(client: FlaskClient, db: Session) -> None:
    form = client.get("/password/forgot").get_data(as_text=True)
    assert '<label for="email">Email</label>' in form
    answer = _ask(client, "/password/forgot", JORDAN)
    assert answer.status_code == 200
    assert RESET_SENT in answer.get_data(as_text=True)
    link = _link(db, "password_reset")
    assert link.startswith("/password/reset/")

    opened = client.get(link)
    assert opened.status_code == 200
    assert opened.headers["Referrer-Policy"] == "no-referrer"
    page = opened.get_data(as_text=True)
    assert '<label for="password">New password</label>' in page
    assert '<label for="confirm">Confirm password</label>' in page
    assert _signed_in_as(client) is None

    token = csrf_token(client, link)
    done = client.post(
        link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD, "csrf_token": token}
    )
    assert done.status_code == 303
    assert done.headers["Location"] == "/portal/"
    assert "Your password was changed" in client.get("/portal/").get_data(as_text=True)

    client.post("/logout", data={"csrf_token": csrf_token(client, "/login/link")})
    assert sign_in(client, JORDAN, DEMO_PASSWORD).status_code == 401
    assert sign_in(client, JORDAN, NEW_PASSWORD).status_code == 303
    client.post("/logout", data={"csrf_token": csrf_token(client, "/login/link")})
    assert client.get(link).status_code == 410  # the link worked once


@pytest.mark.parametrize(
    ("password", "confirm", "field", "message"),
    [
        ("short", "short", "password", "Use at least 12 characters."),
        (NEW_PASSWORD, "something else entirely", "confirm", "The two passwords differ."),
    ],
)
def test_is_a_weak_or_mismatched_password_shown_next_to_its_field(
    client: FlaskClient, db: Session, password: str, confirm: str, field: str, message: str
) -> None:
    _ask(client, "/password/forgot", JORDAN)
    link = _link(db, "password_reset")
    token = csrf_token(client, link)

    response = client.post(
        link, data={"password": password, "confirm": confirm, "csrf_token": token}
    )

    assert response.status_code == 422
    assert response.headers["Referrer-Policy"] == "no-referrer"
    page = response.get_data(as_text=True)
    assert f'<p class="error" id="{field}-error">{message}' in page
    assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', page)
    assert _signed_in_as(client) is None
    assert client.get(link).status_code == 200  # the link still works
    assert sign_in(client, JORDAN, DEMO_PASSWORD).status_code == 303


def test_is_an_expired_reset_link_refused_with_410(client: FlaskClient, db: Session) -> None:
    _ask(client, "/password/forgot", JORDAN)
    link = _link(db, "password_reset")
    token = csrf_token(client, link)
    _expire_all_links(db)

    response = client.post(
        link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD, "csrf_token": token}
    )

    assert response.status_code == 410
    page = response.get_data(as_text=True)
    assert "has expired" in page
    assert 'href="/password/forgot">Email me a new reset link</a>' in page
    assert sign_in(client, JORDAN, DEMO_PASSWORD).status_code == 303
