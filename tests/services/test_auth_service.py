"""authenticate(): passwords, the lockout window (with an explicit clock), inactive users."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from werkzeug.security import generate_password_hash

from app.models import Role, User
from app.services.auth import AccountLocked, InvalidCredentials, authenticate

EMAIL = "Pat.Operator@Example.com"
PASSWORD = "a-long-test-password"
WRONG = "not-the-password"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


@cache
def _password_hash() -> str:
    # A real werkzeug hash, with few rounds so each check is fast (the demo users' hashes
    # come from hash_password, and the sign-in tests use those).
    return generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")


@pytest.fixture
def user_id(db_session: Session) -> int:
    user = User(email=EMAIL, password_hash=_password_hash(), role=Role.OPERATOR)
    db_session.add(user)
    db_session.commit()
    assert user.id is not None
    return user.id


def attempt(engine: Engine, password: str, now: datetime, email: str = EMAIL) -> User:
    """One sign-in in its own session, as each web request would make it."""
    with Session(engine, expire_on_commit=False) as session:
        return authenticate(session, email=email, password=password, now=now)


def fail(engine: Engine, now: datetime) -> None:
    with pytest.raises(InvalidCredentials):
        attempt(engine, WRONG, now)


@pytest.mark.usefixtures("user_id")
def test_does_a_success_after_four_failures_reset_the_count(engine: Engine) -> None:
    for n in range(4):
        fail(engine, minutes(n))
    assert attempt(engine, PASSWORD, minutes(4)).email == EMAIL

    for n in range(5, 9):  # four more inside the same 15 minutes: 8 in all, but reset
        fail(engine, minutes(n))
    assert attempt(engine, PASSWORD, minutes(9)).email == EMAIL


@pytest.mark.usefixtures("user_id")
def test_does_the_fifth_failure_within_15_minutes_lock_the_account(engine: Engine) -> None:
    for n in (0, 3, 7, 11):
        fail(engine, minutes(n))

    with pytest.raises(AccountLocked) as locked:
        attempt(engine, WRONG, minutes(14))

    assert locked.value.until == minutes(14 + 15)
    assert "15 minutes" in locked.value.message


@pytest.mark.usefixtures("user_id")
def test_does_a_locked_account_refuse_the_right_password(engine: Engine) -> None:
    for n in range(5):
        with pytest.raises((InvalidCredentials, AccountLocked)):
            attempt(engine, WRONG, minutes(n))

    with pytest.raises(AccountLocked) as locked:
        attempt(engine, PASSWORD, minutes(10))

    assert "Try again in 9 minutes" in locked.value.message  # locked until minute 19


@pytest.mark.usefixtures("user_id")
def test_do_failures_spread_over_more_than_15_minutes_lock_the_account(engine: Engine) -> None:
    for n in (0, 4, 8, 12, 16):  # the fifth comes 16 minutes after the first
        fail(engine, minutes(n))

    assert attempt(engine, PASSWORD, minutes(17)).email == EMAIL


@pytest.mark.usefixtures("user_id")
def test_do_five_failures_in_any_15_minutes_lock_the_account(engine: Engine) -> None:
    # A window fixed at the first failure would reset at minute 15 and miss this burst.
    for n in (0, 10, 12, 14, 16):
        fail(engine, minutes(n))

    with pytest.raises(AccountLocked):
        attempt(engine, WRONG, minutes(17))


@pytest.mark.usefixtures("user_id")
def test_does_the_lock_expire_after_15_minutes(engine: Engine) -> None:
    for n in range(4):
        fail(engine, minutes(n))
    with pytest.raises(AccountLocked):
        attempt(engine, WRONG, minutes(4))  # locked until minute 19

    with pytest.raises(AccountLocked):
        attempt(engine, PASSWORD, minutes(19) - timedelta(seconds=1))
    user = attempt(engine, PASSWORD, minutes(19))

    assert user.locked_until is None
    assert user.recent_failed_logins == []
    assert user.last_login_at == minutes(19)


@pytest.mark.usefixtures("user_id")
def test_does_a_failure_after_the_lock_expires_start_a_new_count(engine: Engine) -> None:
    for n in range(5):
        with pytest.raises((InvalidCredentials, AccountLocked)):
            attempt(engine, WRONG, minutes(n))

    fail(engine, minutes(19))  # the lock has passed: a plain refusal, not a new lock

    assert attempt(engine, PASSWORD, minutes(20)).email == EMAIL


def test_is_a_deactivated_user_refused(engine: Engine, db_session: Session, user_id: int) -> None:
    user = db_session.get(User, user_id)
    assert user is not None
    user.is_active = False
    db_session.add(user)
    db_session.commit()

    with pytest.raises(InvalidCredentials) as refused:
        attempt(engine, PASSWORD, T0)

    assert refused.value.message == "Invalid email or password."


@pytest.mark.usefixtures("user_id")
def test_is_an_unknown_email_refused_with_the_same_message(engine: Engine) -> None:
    with pytest.raises(InvalidCredentials) as unknown:
        attempt(engine, PASSWORD, T0, email="nobody@example.com")
    with pytest.raises(InvalidCredentials) as wrong:
        attempt(engine, WRONG, T0)

    assert unknown.value.message == wrong.value.message == "Invalid email or password."


@pytest.mark.usefixtures("user_id")
@pytest.mark.parametrize(
    "typed", ["pat.operator@example.com", "PAT.OPERATOR@EXAMPLE.COM", "  Pat.Operator@example.COM "]
)
def test_does_the_email_match_regardless_of_case(engine: Engine, typed: str) -> None:
    assert attempt(engine, PASSWORD, T0, email=typed).email == EMAIL
