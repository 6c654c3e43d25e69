"""Partner user management in the browser: invite by email link, roles, deactivation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.clock import utcnow
from app.models import AuditEvent, OutboxMessage, Role, User
from app.services.invitations import LinkSettings
from app.services.partner_users import InviteInput, invite_user
from tests.web.helpers import csrf_token, sign_in

US_ADMIN = "admin@us-partner.example"
US_SALES = "sales@us-partner.example"
DE_ADMIN = "admin@de-partner.example"
CUSTOMER = "customer@example.com"
OPERATOR = "operator@example.com"
NEW_EMAIL = "robin@us-partner.example"
NEW_PASSWORD = "a harbour full of boats"
REASON = "Only partner admins can manage users"


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _user(db: Session, email: str) -> User:
    db.expire_all()
    return db.exec(select(User).where(User.email == email)).one()


def _post(
    client: FlaskClient, path: str, data: dict | None = None, *, form: str = "/partner/users"
):  # noqa: ANN202
    return client.post(path, data={"csrf_token": csrf_token(client, form), **(data or {})})


def _invite_link(db: Session, email: str) -> str:
    """The path of the link in the latest invitation email to ``email``, read from the outbox."""
    db.expire_all()
    message = db.exec(
        select(OutboxMessage)
        .where(OutboxMessage.to_address == email, OutboxMessage.kind == "invite")
        .order_by(OutboxMessage.id.desc())  # type: ignore[union-attr]
    ).first()
    assert message is not None, "no invitation email in the outbox"
    match = re.search(r"http://localhost(/invite/\S+)", message.text_body)
    assert match, message.text_body
    return match.group(1)


def test_does_an_invitee_set_a_password_from_the_emailed_link_once(
    client: FlaskClient, app: Flask, db: Session
) -> None:
    sign_in(client, US_ADMIN)
    page = client.get("/partner/users").get_data(as_text=True)
    assert US_SALES in page and '<label for="email">Email</label>' in page

    sent = _post(
        client,
        "/partner/users/invite",
        {"name": "Robin Park", "email": NEW_EMAIL, "role": Role.PARTNER_SALES},
    )

    assert sent.status_code == 303 and sent.headers["Location"] == "/partner/users"
    listing = client.get("/partner/users").get_data(as_text=True)
    assert f"Invitation sent to {NEW_EMAIL}" in listing
    assert "No password set yet" in listing
    link = _invite_link(db, NEW_EMAIL)

    invitee = app.test_client()
    form = invitee.get(link)
    assert form.status_code == 200
    assert NEW_EMAIL in form.get_data(as_text=True)
    assert form.headers["Referrer-Policy"] == "no-referrer"
    short = invitee.post(
        link,
        data={"csrf_token": csrf_token(invitee, link), "password": "short", "confirm": "short"},
    )
    assert short.status_code == 422
    body = short.get_data(as_text=True)
    assert 'aria-describedby="password-hint password-error"' in body
    assert 'id="password-error">Use at least 12 characters.' in body

    done = invitee.post(
        link,
        data={
            "csrf_token": csrf_token(invitee, link),
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )

    assert done.status_code == 303 and done.headers["Location"] == "/partner/"
    home = invitee.get("/partner/")
    assert home.status_code == 200 and NEW_EMAIL in home.get_data(as_text=True)

    again = app.test_client()
    assert again.get(link).status_code == 410
    assert "already been used" in again.get(link).get_data(as_text=True)
    reuse = again.post(
        link,
        data={
            "csrf_token": csrf_token(again, "/login"),
            "password": "someone else's pass",
            "confirm": "someone else's pass",
        },
    )
    assert reuse.status_code == 410
    assert sign_in(app.test_client(), NEW_EMAIL, NEW_PASSWORD).status_code == 303
    actions = set(db.exec(select(AuditEvent.action).where(AuditEvent.subject_type == "user")))
    assert actions == {"user.invited", "user.invitation_accepted"}


def test_is_an_expired_invitation_link_refused(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    settings = app.config["PORTICO"]
    links = LinkSettings(secret_key=settings.secret_key, base_url=settings.base_url)
    with app.app_context():
        invite_user(
            db,
            _user(db, US_ADMIN),
            InviteInput(name="Robin", email=NEW_EMAIL),
            links=links,
            now=utcnow() - timedelta(days=7, minutes=1),
        )
    link = _invite_link(db, NEW_EMAIL)

    response = client.get(link)

    assert response.status_code == 410
    assert "expired" in response.get_data(as_text=True)
    garbage = client.get("/invite/not-a-token")
    assert garbage.status_code == 404 and "not valid" in garbage.get_data(as_text=True)


def test_does_the_invite_form_show_errors_next_to_the_fields(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_ADMIN)

    taken = _post(
        client, "/partner/users/invite", {"name": "", "email": DE_ADMIN, "role": "operator"}
    )

    assert taken.status_code == 422
    body = taken.get_data(as_text=True)
    assert 'aria-describedby="name-error"' in body and 'id="name-error"' in body
    assert 'id="email-error">This email already belongs to a Portico user' in body
    assert 'id="role-error">Choose Sales or Admin.' in body
    assert len(db.exec(select(User).where(User.email == DE_ADMIN)).all()) == 1


def test_is_an_invite_without_a_csrf_token_refused(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_ADMIN)
    client.get("/partner/users")

    response = client.post(
        "/partner/users/invite", data={"name": "Robin", "email": NEW_EMAIL, "role": "partner_sales"}
    )

    assert response.status_code == 400
    assert db.exec(select(User).where(User.email == NEW_EMAIL)).first() is None


def test_is_a_sales_user_told_why_they_cannot_manage_users(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_SALES)
    sales = _user(db, US_SALES)

    page = client.get("/partner/users")
    invite = _post(
        client,
        "/partner/users/invite",
        {"name": "Robin", "email": NEW_EMAIL, "role": "partner_admin"},
        form="/partner/",
    )
    deactivate = _post(client, f"/partner/users/{sales.id}/deactivate", form="/partner/")

    assert page.status_code == invite.status_code == deactivate.status_code == 403
    assert REASON in page.get_data(as_text=True)
    assert ">Users</a>" not in client.get("/partner/").get_data(as_text=True)
    assert db.exec(select(User).where(User.email == NEW_EMAIL)).first() is None


@pytest.mark.parametrize("email", [CUSTOMER, OPERATOR])
def test_do_customers_and_operators_not_find_the_users_page(
    client: FlaskClient, demo: Flask, email: str
) -> None:
    sign_in(client, email)

    assert client.get("/partner/users").status_code == 404


def test_is_an_anonymous_visitor_sent_to_sign_in(client: FlaskClient, demo: Flask) -> None:
    response = client.get("/partner/users")

    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_does_an_admin_see_and_touch_only_their_partners_users(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_ADMIN)
    foreign = _user(db, DE_ADMIN)

    page = client.get("/partner/users").get_data(as_text=True)
    response = _post(client, f"/partner/users/{foreign.id}/deactivate")
    resend = _post(client, f"/partner/users/{foreign.id}/resend")

    assert DE_ADMIN not in page and ">Users</a>" in page
    assert response.status_code == resend.status_code == 404
    assert _user(db, DE_ADMIN).is_active


def test_is_a_deactivated_user_signed_out_on_their_next_request(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    sales = app.test_client()
    sign_in(sales, US_SALES)
    assert sales.get("/partner/").status_code == 200
    sign_in(client, US_ADMIN)

    done = _post(client, f"/partner/users/{_user(db, US_SALES).id}/deactivate")

    assert done.status_code == 303
    assert "deactivated and signed out" in client.get("/partner/users").get_data(as_text=True)
    after = sales.get("/partner/")
    assert after.status_code == 302 and after.headers["Location"].startswith("/login")
    assert sign_in(app.test_client(), US_SALES).status_code == 401

    back = _post(client, f"/partner/users/{_user(db, US_SALES).id}/reactivate")
    assert back.status_code == 303
    assert sign_in(app.test_client(), US_SALES).status_code == 303


def test_may_an_admin_not_deactivate_themself_in_the_browser(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_ADMIN)

    response = _post(client, f"/partner/users/{_user(db, US_ADMIN).id}/deactivate")

    assert response.status_code == 409
    assert "You cannot deactivate yourself" in response.get_data(as_text=True)
    assert client.get("/partner/users").status_code == 200  # still signed in
