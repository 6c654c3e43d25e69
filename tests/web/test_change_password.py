"""Change password (``/account/password``, ADR 0019): a signed-in user replaces their
password given the current one; every other session ends, this one carries on; a wrong
current password counts toward the sign-in lockout; nothing changes on bad input."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.models import AuditEvent, User
from tests.web.helpers import DEMO_PASSWORD, csrf_token, sign_in

CUSTOMER = "customer@example.com"
PARTNER_ADMIN = "admin@us-partner.example"
PAGE = "/account/password"
NEW_PASSWORD = "a brand new passphrase"

pytestmark = pytest.mark.usefixtures("demo")


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _user(db: Session, email: str) -> User:
    db.expire_all()
    return db.exec(select(User).where(User.email == email)).one()


def _change(client: FlaskClient, current: str, password: str, confirm: str | None = None):  # noqa: ANN202
    return client.post(
        PAGE,
        data={
            "csrf_token": csrf_token(client, PAGE),
            "current": current,
            "password": password,
            "confirm": password if confirm is None else confirm,
        },
    )


def _signed_in_twice(
    app: Flask, client: FlaskClient, db: Session, email: str
) -> tuple[FlaskClient, int, str]:
    """``client`` and another browser signed in as ``email``; the user's session version
    and password hash before the change."""
    other_browser = app.test_client()
    assert sign_in(other_browser, email).status_code == 303
    assert sign_in(client, email).status_code == 303
    before = _user(db, email)
    return other_browser, before.session_version, before.password_hash


def test_does_a_changed_password_sign_out_other_browsers_and_keep_this_one(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    other_browser, version, old_hash = _signed_in_twice(app, client, db, CUSTOMER)

    response = _change(client, DEMO_PASSWORD, NEW_PASSWORD)

    assert response.status_code == 303 and response.headers["Location"] == PAGE
    page = client.get(PAGE).get_data(as_text=True)
    assert "Your password was changed" in page
    assert client.get("/portal/").status_code == 200  # this browser carries on
    signed_out = other_browser.get("/portal/")
    assert signed_out.status_code == 302 and signed_out.headers["Location"].startswith("/login")
    after = _user(db, CUSTOMER)
    assert after.session_version == version + 1
    assert after.password_hash != old_hash and after.password_hash.startswith("scrypt")
    assert sign_in(app.test_client(), CUSTOMER).status_code == 401  # the old one is gone
    assert sign_in(app.test_client(), CUSTOMER, NEW_PASSWORD).status_code == 303
    event = db.exec(select(AuditEvent).where(AuditEvent.action == "user.password_changed")).one()
    assert (event.subject_id, event.actor_user_id) == (after.id, after.id)
    assert NEW_PASSWORD not in str(event.detail) and DEMO_PASSWORD not in str(event.detail)


@pytest.mark.parametrize(
    ("current", "password", "confirm", "field", "message"),
    [
        ("not my password", NEW_PASSWORD, NEW_PASSWORD, "current", "not your current password"),
        ("", NEW_PASSWORD, NEW_PASSWORD, "current", "Enter your current password"),
        (DEMO_PASSWORD, "short", "short", "password", "at least 12 characters"),
        (DEMO_PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x", "confirm", "The two passwords differ"),
        (DEMO_PASSWORD, DEMO_PASSWORD, DEMO_PASSWORD, "password", "different from your current"),
    ],
)
def test_does_a_refused_change_name_the_field_and_change_nothing(
    app: Flask,
    client: FlaskClient,
    db: Session,
    current: str,
    password: str,
    confirm: str,
    field: str,
    message: str,
) -> None:
    other_browser, version, old_hash = _signed_in_twice(app, client, db, PARTNER_ADMIN)

    response = _change(client, current, password, confirm)

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert f'id="{field}-error"' in html and message in html
    assert f'id="{field}" name="{field}"' in html and 'aria-invalid="true"' in html
    after = _user(db, PARTNER_ADMIN)
    assert (after.password_hash, after.session_version) == (old_hash, version)
    assert other_browser.get("/partner/").status_code == 200  # nobody was signed out
    assert not db.exec(select(AuditEvent).where(AuditEvent.action == "user.password_changed")).all()


def test_do_wrong_current_passwords_lock_the_account_like_failed_sign_ins(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    """A stolen session cannot be used to guess the password at leisure."""
    assert sign_in(client, CUSTOMER).status_code == 303
    statuses = [_change(client, f"guess number {n}", NEW_PASSWORD).status_code for n in range(5)]

    assert statuses == [422, 422, 422, 422, 429]
    locked = _change(client, DEMO_PASSWORD, NEW_PASSWORD)  # even the right one, now
    assert locked.status_code == 429 and "Too many failed" in locked.get_data(as_text=True)
    assert sign_in(app.test_client(), CUSTOMER).status_code == 429
    assert _user(db, CUSTOMER).locked_until is not None


def test_is_an_empty_current_password_not_counted_as_a_guess(
    client: FlaskClient, db: Session
) -> None:
    assert sign_in(client, CUSTOMER).status_code == 303
    statuses = [_change(client, "", NEW_PASSWORD).status_code for _ in range(6)]

    assert statuses == [422] * 6
    user = _user(db, CUSTOMER)
    assert (user.recent_failed_logins, user.locked_until) == ([], None)


def test_is_the_page_for_signed_in_users_and_its_form_csrf_protected(
    app: Flask, client: FlaskClient
) -> None:
    anonymous = client.get(PAGE)
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")
    assert sign_in(client, PARTNER_ADMIN).status_code == 303
    form = client.get(PAGE).get_data(as_text=True)
    for name, autocomplete in (
        ("current", "current-password"),
        ("password", "new-password"),
        ("confirm", "new-password"),
    ):
        assert f'<label for="{name}">' in form and f'autocomplete="{autocomplete}"' in form
    assert f'href="{PAGE}"' in client.get("/partner/").get_data(
        as_text=True
    )  # linked from the top bar

    forged = client.post(
        PAGE, data={"current": DEMO_PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    )

    assert forged.status_code == 400
    assert sign_in(app.test_client(), PARTNER_ADMIN).status_code == 303  # unchanged
