"""Signing in: password checks and the lockout after repeated failures."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, func, select
from werkzeug.security import check_password_hash, generate_password_hash

from app.domain.errors import DomainError, FieldsInvalid, NotFound
from app.models import User
from app.services.audit_log import add_event
from app.services.passwords import new_password_errors

MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)
# scrypt is memory-hard (N=2**15, r=8: 32 MiB per check), so a stolen table is slow to
# guess on GPUs. Pinned rather than left to werkzeug's default, which may change; hashes
# made with other parameters still verify, because each hash names its own method.
PASSWORD_HASH_METHOD = "scrypt:32768:8:1"
# Checked against when the email is unknown, so both paths cost one hash check.
_DUMMY_HASH = generate_password_hash("portico-not-a-password", method=PASSWORD_HASH_METHOD)


class InvalidCredentials(DomainError):
    status_code = 401

    def __init__(self) -> None:
        super().__init__("Invalid email or password.")


class AccountLocked(DomainError):
    status_code = 429

    def __init__(self, until: datetime, now: datetime) -> None:
        minutes = max(1, int((until - now).total_seconds() + 59) // 60)
        super().__init__(
            "Too many failed sign-in attempts for this account. "
            f"Try again in {minutes} minute{'s' if minutes != 1 else ''}, or reset your password."
        )
        self.until = until


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password`` for the User table. Raises nothing."""
    return generate_password_hash(password, method=PASSWORD_HASH_METHOD)


def end_sessions(user: User) -> None:
    """Make every session signed in as ``user`` stop working (the caller commits).

    A session stores the user's ``session_version`` at sign-in and the user loader
    refuses one whose number differs (ADR 0019). Raises nothing.
    """
    user.session_version = (user.session_version or 0) + 1


def sign_out(session: Session, user_id: int) -> None:
    """End every session of the user ``user_id``, as signing out does (commits).

    Signing out ends the user's other sessions too: a copied session cookie stops
    working once its owner signs out. An unknown id changes nothing. Raises nothing.
    """
    session.execute(
        update(User)
        .where(col(User.id) == user_id)
        .values(session_version=col(User.session_version) + 1)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def find_user_by_email(session: Session, email: str) -> User | None:
    """The user with ``email`` (case-insensitive), or None."""
    return session.exec(select(User).where(func.lower(User.email) == email.strip().lower())).first()


def authenticate(session: Session, *, email: str, password: str, now: datetime) -> User:
    """Check a sign-in and record its outcome (commits once).

    After MAX_FAILURES failures for one account within FAILURE_WINDOW, further attempts
    are refused until the lockout passes, even with the right password.

    Raises:
        AccountLocked: the account is locked out; the message says for how long.
        InvalidCredentials: unknown email, wrong password or deactivated user.
    """
    user = find_user_by_email(session, email)
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        raise InvalidCredentials()
    _refuse_if_locked(user, now)
    if not check_password_hash(user.password_hash, password) or not user.is_active:
        _count_failure(session, user, now)
        raise InvalidCredentials()
    user.recent_failed_logins = []
    user.locked_until = None
    user.last_login_at = now
    session.add(user)
    session.commit()
    return user


def change_password(
    session: Session, user_id: int, *, current: str, password: str, confirm: str, now: datetime
) -> User:
    """Replace the signed-in user's password, given the current one (commits).

    Ends every session of the user, this one included (the caller signs this browser in
    again on a fresh session), and records ``user.password_changed``. A wrong current
    password counts as a failed sign-in, so guessing it from a stolen session runs into
    the same lockout as guessing at the sign-in form.

    Raises:
        NotFound: no active user ``user_id``.
        AccountLocked: the account is locked out (before or by this attempt).
        FieldsInvalid: keys ``current`` (wrong), ``password`` (breaks a rule of
            ``passwords.password_problem``, or is the current one) and ``confirm``
            (differs); the password does not change.
    """
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise NotFound("No such user.")
    _refuse_if_locked(user, now)
    errors: dict[str, str] = {}
    guessed = bool(current)  # an empty field is a slip, not a guess: not counted
    current_ok = guessed and check_password_hash(user.password_hash, current)
    if not guessed:
        errors["current"] = "Enter your current password."
    elif not current_ok:
        errors["current"] = "This is not your current password."
    errors.update(new_password_errors(password, confirm, email=user.email))
    if current_ok and password == current and "password" not in errors:
        errors["password"] = "Choose a password different from your current one."
    if guessed and not current_ok:
        _count_failure(session, user, now)
    if errors:
        session.rollback()
        raise FieldsInvalid(errors)
    user.password_hash = hash_password(password)
    user.recent_failed_logins = []
    end_sessions(user)
    session.add(user)
    add_event(
        session, action="user.password_changed", subject_type="user", subject_id=user.id,
        partner_id=user.partner_id, customer_account_id=user.customer_account_id,
        actor=user, detail={"email": user.email}, at=now,
    )  # fmt: skip
    session.commit()
    session.refresh(user)
    return user


def _refuse_if_locked(user: User, now: datetime) -> None:
    """Raise AccountLocked while the user's lockout lasts."""
    if user.locked_until is not None and user.locked_until > now:
        raise AccountLocked(user.locked_until, now)


def _count_failure(session: Session, user: User, now: datetime) -> None:
    """Record a wrong password for the user and commit it; raise AccountLocked when it
    was the failure that locks the account."""
    _record_failure(user, now)
    session.add(user)
    session.commit()
    _refuse_if_locked(user, now)


def _record_failure(user: User, now: datetime) -> None:
    """Keep the failures of the last FAILURE_WINDOW; lock once MAX_FAILURES fall inside it."""
    recent = [
        stamp
        for stamp in user.recent_failed_logins
        if now - datetime.fromisoformat(stamp) < FAILURE_WINDOW
    ]
    recent.append(now.isoformat())
    user.recent_failed_logins = recent[-MAX_FAILURES:]
    if len(recent) >= MAX_FAILURES:
        user.locked_until = now + LOCKOUT
