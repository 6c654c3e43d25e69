"""Emailed one-time links: sign in without a password, and reset a forgotten one."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.domain.errors import FieldsInvalid, NotFound
from app.models import (
    AuditEvent,
    CustomerAccount,
    LinkPurpose,
    OutboxMessage,
    Partner,
    Role,
    SignInToken,
    User,
)
from app.services.auth import AccountLocked, InvalidCredentials, authenticate, hash_password
from app.services.invitations import pending_password_hash
from app.services.sign_in_links import (
    MAX_LINKS_PER_WINDOW,
    LinkUnusable,
    consume_sign_in_link,
    password_reset_user,
    request_password_reset,
    request_sign_in_link,
    reset_password,
    sign_in_link_user,
    token_digest,
)

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
BASE_URL = "http://portal"
EMAIL = "jordan@example.com"
OLD_PASSWORD = "the old long password"
NEW_PASSWORD = "a brand new long password"


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    """A session inside an app context (emails render templates); emptied afterwards."""
    with app.app_context(), Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def jordan(db: Session) -> User:
    partner = Partner(name="Harbor Community", slug="harbor", country="US")
    db.add(partner)
    db.flush()
    account = CustomerAccount(
        partner_id=partner.id, name="Jordan Rivera", email=EMAIL, currency="USD"
    )
    db.add(account)
    db.flush()
    person = User(
        email=EMAIL,
        name="Jordan Rivera",
        password_hash=hash_password(OLD_PASSWORD),
        role=Role.CUSTOMER,
        partner_id=partner.id,
        customer_account_id=account.id,
    )
    db.add(person)
    db.commit()
    return person


def minutes(n: float) -> datetime:
    return NOW + timedelta(minutes=n)


def _emails(db: Session, kind: str) -> list[OutboxMessage]:
    query = select(OutboxMessage).where(OutboxMessage.kind == kind)
    return list(db.exec(query.order_by(col(OutboxMessage.id))).all())


def _token_in(message: OutboxMessage, path: str) -> str:
    """The token of the link in ``message`` (as the person reads it), checked in both bodies."""
    match = re.search(rf"{BASE_URL}{path}(\S+)", message.text_body)
    assert match, message.text_body
    assert f'href="{BASE_URL}{path}{match.group(1)}"' in message.html_body
    return match.group(1)


def _sign_in_link(db: Session, *, email: str = EMAIL, now: datetime = NOW) -> str:
    ids = request_sign_in_link(db, email=email, base_url=BASE_URL, now=now)
    assert len(ids) == 1
    return _token_in(db.get_one(OutboxMessage, ids[0]), "/login/link/")


def _reset_link(db: Session, *, now: datetime = NOW) -> str:
    ids = request_password_reset(db, email=EMAIL, base_url=BASE_URL, now=now)
    assert len(ids) == 1
    return _token_in(db.get_one(OutboxMessage, ids[0]), "/password/reset/")


def _signs_in(db: Session, password: str, now: datetime) -> bool:
    try:
        authenticate(db, email=EMAIL, password=password, now=now)
    except InvalidCredentials:
        return False
    return True


# -- asking for a sign-in link -------------------------------------------------------------


def test_is_a_sign_in_link_emailed_to_the_user(db: Session, jordan: User) -> None:
    ids = request_sign_in_link(db, email="  JORDAN@example.com ", base_url=BASE_URL, now=NOW)

    [message] = _emails(db, "sign_in_link")
    assert ids == [message.id]
    assert message.to_address == EMAIL
    assert message.partner_id == jordan.partner_id
    token = _token_in(message, "/login/link/")
    assert "15 minutes" in message.text_body
    row = db.exec(select(SignInToken)).one()
    assert row.token_digest == token_digest(token)
    assert (row.user_id, row.purpose) == (jordan.id, LinkPurpose.SIGN_IN)
    assert row.expires_at == minutes(15)
    assert row.used_at is None


def test_is_only_a_digest_of_the_token_stored(db: Session, jordan: User) -> None:
    token = _sign_in_link(db)

    row = db.exec(select(SignInToken)).one()
    assert row.token_digest == token_digest(token)
    assert token not in row.token_digest
    assert len(token) >= 43  # 32 random bytes, URL-safe base64


@pytest.mark.parametrize("email", ["nobody@example.com", "", "   "])
def test_does_an_unknown_email_get_nothing_and_the_same_answer(
    db: Session, jordan: User, email: str
) -> None:
    assert request_sign_in_link(db, email=email, base_url=BASE_URL, now=NOW) == []
    assert request_password_reset(db, email=email, base_url=BASE_URL, now=NOW) == []

    assert db.exec(select(OutboxMessage)).all() == []
    assert db.exec(select(SignInToken)).all() == []


def test_does_a_deactivated_user_get_no_link(db: Session, jordan: User) -> None:
    jordan.is_active = False
    db.add(jordan)
    db.commit()

    assert request_sign_in_link(db, email=EMAIL, base_url=BASE_URL, now=NOW) == []
    assert request_password_reset(db, email=EMAIL, base_url=BASE_URL, now=NOW) == []
    assert db.exec(select(OutboxMessage)).all() == []


def test_does_an_invited_user_without_a_password_get_no_link(db: Session, jordan: User) -> None:
    jordan.password_hash = pending_password_hash()
    db.add(jordan)
    db.commit()

    assert request_sign_in_link(db, email=EMAIL, base_url=BASE_URL, now=NOW) == []
    assert request_password_reset(db, email=EMAIL, base_url=BASE_URL, now=NOW) == []
    assert db.exec(select(OutboxMessage)).all() == []


def test_are_requests_limited_per_user_and_window(db: Session, jordan: User) -> None:
    sent = [
        request_sign_in_link(db, email=EMAIL, base_url=BASE_URL, now=minutes(n))
        for n in range(MAX_LINKS_PER_WINDOW + 2)
    ]

    assert [len(ids) for ids in sent] == [1] * MAX_LINKS_PER_WINDOW + [0, 0]
    assert len(_emails(db, "sign_in_link")) == MAX_LINKS_PER_WINDOW
    # The limit is per purpose: a reset link still goes out.
    assert len(request_password_reset(db, email=EMAIL, base_url=BASE_URL, now=minutes(5))) == 1
    # Once the first request is 15 minutes old, one more may go out.
    assert request_sign_in_link(db, email=EMAIL, base_url=BASE_URL, now=minutes(14.9)) == []
    assert len(request_sign_in_link(db, email=EMAIL, base_url=BASE_URL, now=minutes(15))) == 1


# -- using a sign-in link ---------------------------------------------------------------------


def test_does_a_link_sign_in_once(db: Session, jordan: User) -> None:
    token = _sign_in_link(db)

    assert sign_in_link_user(db, token, now=minutes(1)).id == jordan.id  # a peek spends nothing
    assert sign_in_link_user(db, token, now=minutes(1)).id == jordan.id
    signed_in = consume_sign_in_link(db, token, now=minutes(2))

    assert signed_in.id == jordan.id
    assert signed_in.last_login_at == minutes(2)
    with pytest.raises(LinkUnusable) as again:
        consume_sign_in_link(db, token, now=minutes(3))
    assert again.value.status_code == 410
    assert "already been used" in again.value.message
    with pytest.raises(LinkUnusable):
        sign_in_link_user(db, token, now=minutes(3))
    event = db.exec(select(AuditEvent).where(AuditEvent.action == "user.signed_in_by_link")).one()
    assert (event.actor_user_id, event.subject_id) == (jordan.id, jordan.id)


def test_does_a_link_expire_after_15_minutes(db: Session, jordan: User) -> None:
    token = _sign_in_link(db)

    assert sign_in_link_user(db, token, now=minutes(14.99)).id == jordan.id
    for check in (sign_in_link_user, consume_sign_in_link):
        with pytest.raises(LinkUnusable) as expired:
            check(db, token, now=minutes(15))
        assert "expired" in expired.value.message
    assert db.exec(select(SignInToken)).one().used_at is None


def test_does_a_link_work_just_before_it_expires(db: Session, jordan: User) -> None:
    token = _sign_in_link(db)

    assert consume_sign_in_link(db, token, now=minutes(14.99)).id == jordan.id


@pytest.mark.parametrize("mangle", [lambda t: t[:-1], lambda t: t + "x", lambda t: "x" * 43])
def test_is_an_unknown_or_altered_token_not_found(db: Session, jordan: User, mangle) -> None:  # noqa: ANN001
    token = _sign_in_link(db)

    with pytest.raises(NotFound):
        sign_in_link_user(db, mangle(token), now=NOW)
    with pytest.raises(NotFound):
        consume_sign_in_link(db, mangle(token), now=NOW)


def test_are_sign_in_and_reset_links_not_interchangeable(db: Session, jordan: User) -> None:
    sign_in, reset = _sign_in_link(db), _reset_link(db)

    with pytest.raises(NotFound):
        consume_sign_in_link(db, reset, now=NOW)
    with pytest.raises(NotFound):
        reset_password(db, sign_in, password=NEW_PASSWORD, confirm=NEW_PASSWORD, now=NOW)


def test_is_a_link_of_a_deactivated_user_refused(db: Session, jordan: User) -> None:
    token = _sign_in_link(db)
    jordan.is_active = False
    db.add(jordan)
    db.commit()

    with pytest.raises(LinkUnusable):
        consume_sign_in_link(db, token, now=minutes(1))
    assert db.exec(select(SignInToken)).one().used_at is None


def test_does_a_link_sign_in_clear_the_lockout(db: Session, jordan: User) -> None:
    for n in range(5):
        with pytest.raises((InvalidCredentials, AccountLocked)):
            authenticate(db, email=EMAIL, password="wrong guess", now=minutes(n / 10))
    token = _sign_in_link(db, now=minutes(1))

    consume_sign_in_link(db, token, now=minutes(2))

    db.refresh(jordan)
    assert jordan.locked_until is None and jordan.recent_failed_logins == []
    assert _signs_in(db, OLD_PASSWORD, minutes(3))


def test_does_a_link_sign_in_spend_the_other_sign_in_links(db: Session, jordan: User) -> None:
    first, second = _sign_in_link(db), _sign_in_link(db, now=minutes(1))
    reset = _reset_link(db, now=minutes(1))

    consume_sign_in_link(db, second, now=minutes(2))

    with pytest.raises(LinkUnusable):
        consume_sign_in_link(db, first, now=minutes(3))
    assert password_reset_user(db, reset, now=minutes(3)).id == jordan.id


def test_do_two_uses_of_one_link_at_once_sign_in_once(
    db: Session, jordan: User, engine: Engine
) -> None:
    token = _sign_in_link(db)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def use() -> None:
        with Session(engine, expire_on_commit=False) as session:
            start.wait()
            try:
                consume_sign_in_link(session, token, now=minutes(1))
                outcomes.append("signed in")
            except LinkUnusable:
                outcomes.append("refused")

    threads = [threading.Thread(target=use) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["refused", "signed in"]
    events = db.exec(select(AuditEvent).where(AuditEvent.action == "user.signed_in_by_link"))
    assert len(events.all()) == 1


# -- resetting the password -------------------------------------------------------------------


def test_is_a_reset_link_emailed_valid_for_an_hour(db: Session, jordan: User) -> None:
    token = _reset_link(db)

    [message] = _emails(db, "password_reset")
    assert message.to_address == EMAIL
    assert "1 hour" in message.text_body
    assert password_reset_user(db, token, now=minutes(59.9)).id == jordan.id
    with pytest.raises(LinkUnusable) as expired:
        password_reset_user(db, token, now=minutes(60))
    assert "expired" in expired.value.message
    with pytest.raises(LinkUnusable):
        reset_password(db, token, password=NEW_PASSWORD, confirm=NEW_PASSWORD, now=minutes(60))
    assert _signs_in(db, OLD_PASSWORD, minutes(61))


def test_does_a_reset_set_the_new_password(db: Session, jordan: User) -> None:
    token = _reset_link(db)

    changed = reset_password(db, token, password=NEW_PASSWORD, confirm=NEW_PASSWORD, now=minutes(5))

    assert changed.id == jordan.id and changed.last_login_at == minutes(5)
    assert _signs_in(db, NEW_PASSWORD, minutes(6))
    assert not _signs_in(db, OLD_PASSWORD, minutes(7))
    event = db.exec(select(AuditEvent).where(AuditEvent.action == "user.password_reset")).one()
    assert event.subject_id == jordan.id
    assert OLD_PASSWORD not in str(event.detail) and NEW_PASSWORD not in str(event.detail)


@pytest.mark.parametrize(
    ("password", "confirm", "fields"),
    [
        ("short", "short", {"password"}),
        (EMAIL, EMAIL, {"password"}),
        (NEW_PASSWORD, NEW_PASSWORD + "!", {"confirm"}),
        ("short", "other", {"password", "confirm"}),
    ],
)
def test_does_a_reset_refuse_a_weak_or_mismatched_password(
    db: Session, jordan: User, password: str, confirm: str, fields: set[str]
) -> None:
    token = _reset_link(db)

    with pytest.raises(FieldsInvalid) as refused:
        reset_password(db, token, password=password, confirm=confirm, now=minutes(1))

    assert set(refused.value.errors) == fields
    assert db.exec(select(SignInToken)).one().used_at is None  # the link still works
    assert _signs_in(db, OLD_PASSWORD, minutes(2))
    assert reset_password(db, token, password=NEW_PASSWORD, confirm=NEW_PASSWORD, now=minutes(3))


def test_does_a_reset_link_work_once(db: Session, jordan: User) -> None:
    token = _reset_link(db)
    reset_password(db, token, password=NEW_PASSWORD, confirm=NEW_PASSWORD, now=minutes(1))

    with pytest.raises(LinkUnusable) as again:
        reset_password(
            db,
            token,
            password="yet another long password",
            confirm="yet another long password",
            now=minutes(2),
        )

    assert again.value.status_code == 410
    assert _signs_in(db, NEW_PASSWORD, minutes(3))


def test_does_a_reset_spend_every_other_link_of_the_user(db: Session, jordan: User) -> None:
    sign_in = _sign_in_link(db)
    older_reset, reset = _reset_link(db), _reset_link(db, now=minutes(1))
    other = User(
        email="sam@example.com", password_hash=hash_password(OLD_PASSWORD), role="customer"
    )
    db.add(other)
    db.commit()
    others_link = _sign_in_link(db, email=other.email)

    reset_password(db, reset, password=NEW_PASSWORD, confirm=NEW_PASSWORD, now=minutes(2))

    with pytest.raises(LinkUnusable):
        consume_sign_in_link(db, sign_in, now=minutes(3))
    with pytest.raises(LinkUnusable):
        password_reset_user(db, older_reset, now=minutes(3))
    assert consume_sign_in_link(db, others_link, now=minutes(3)).id == other.id


def test_does_a_reset_clear_the_lockout(db: Session, jordan: User) -> None:
    for n in range(5):
        with pytest.raises((InvalidCredentials, AccountLocked)):
            authenticate(db, email=EMAIL, password="wrong guess", now=minutes(n / 10))
    with pytest.raises(AccountLocked):
        authenticate(db, email=EMAIL, password=OLD_PASSWORD, now=minutes(1))
    token = _reset_link(db, now=minutes(1))

    reset_password(db, token, password=NEW_PASSWORD, confirm=NEW_PASSWORD, now=minutes(2))

    assert _signs_in(db, NEW_PASSWORD, minutes(3))  # still inside the 15-minute lockout
