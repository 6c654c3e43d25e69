"""Emailed one-time links: sign in without a password, or reset a forgotten one.

A link's token is a random secret (``secrets.token_urlsafe(32)``); only its sha256 hex
digest is stored (``SignInToken.token_digest``), so a copy of the database opens no
account. A sign-in link works once within SIGN_IN_VALID_FOR, a reset link once within
RESET_VALID_FOR. Spending one is a single conditional UPDATE (``WHERE used_at IS NULL
AND expires_at > now``) whose row count decides, so two tabs (or a person and a mail
scanner) pressing the button at the same moment sign in once.

Requests answer the same whether or not the email belongs to someone (the views show
one neutral page), and each user gets at most MAX_LINKS_PER_WINDOW links of each
purpose per REQUEST_WINDOW: further requests send nothing, so the form cannot be used
to flood a mailbox.

Who gets links: any active user who has a password. An invited user who has not chosen
one yet (``invitations.is_pending``) gets neither kind: their invitation link is their
way in, and the partner admin who sent it keeps control of it (resend, withdraw); a
reset link would be a second, unaudited way around that.

The lockout after failed password sign-ins (``auth.authenticate``) guards against
password guessing. A working emailed link proves control of the mailbox, which is what
a reset proves too, so signing in by link, like a reset, clears the lockout.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import update
from sqlmodel import Session, col, func, select

from app.domain.errors import DomainError, FieldsInvalid, NotFound
from app.models import LinkPurpose, SignInToken, User
from app.services.audit_log import add_event
from app.services.auth import end_sessions, find_user_by_email, hash_password
from app.services.invitations import is_pending
from app.services.notifications import write_email
from app.services.passwords import new_password_errors

SIGN_IN_VALID_FOR: Final = timedelta(minutes=15)
RESET_VALID_FOR: Final = timedelta(hours=1)
MAX_LINKS_PER_WINDOW: Final = 3
REQUEST_WINDOW: Final = timedelta(minutes=15)
_NOT_VALID: Final = "This link is not valid. Check that you copied all of it, or ask for a new one."
_UNUSABLE: Final = {
    LinkPurpose.SIGN_IN: "This sign-in link has already been used or is no longer valid. "
    "Each link works once.",
    LinkPurpose.RESET: "This password reset link has already been used or is no longer valid. "
    "Each link works once.",
}
_EXPIRED: Final = {
    LinkPurpose.SIGN_IN: "This sign-in link has expired. Links work for 15 minutes.",
    LinkPurpose.RESET: "This password reset link has expired. Links work for 1 hour.",
}
_INACTIVE: Final = (
    "This account cannot sign in any more. Contact the organisation that invited you."
)


class LinkUnusable(DomainError):
    """The link is genuine but cannot be used any more (used, expired, user deactivated)."""

    status_code = 410


def token_digest(token: str) -> str:
    """The sha256 hex digest stored for ``token`` (the secret in the emailed URL)."""
    return hashlib.sha256(token.encode()).hexdigest()


# -- asking for a link ---------------------------------------------------------------------


def request_sign_in_link(
    session: Session, *, email: str, base_url: str, now: datetime
) -> list[int]:
    """Email a one-time sign-in link to the user with ``email``, if there is one (commits).

    Returns the ids of the outbox rows written, for the caller to enqueue after the
    commit: empty when the email is unknown, the user is deactivated or still invited,
    or they already received MAX_LINKS_PER_WINDOW sign-in links in the last
    REQUEST_WINDOW. The caller answers the same in every case. Needs an app context
    (templates). Raises nothing of its own.
    """
    return _request(
        session,
        email=email,
        purpose=LinkPurpose.SIGN_IN,
        base_url=base_url,
        now=now,
    )


def request_password_reset(
    session: Session, *, email: str, base_url: str, now: datetime
) -> list[int]:
    """Email a one-time password reset link to the user with ``email``, if any (commits).

    As :func:`request_sign_in_link` (same refusals, same silence), with a link to
    ``/password/reset/<token>`` valid for RESET_VALID_FOR. Raises nothing of its own.
    """
    return _request(
        session,
        email=email,
        purpose=LinkPurpose.RESET,
        base_url=base_url,
        now=now,
    )


def _request(
    session: Session, *, email: str, purpose: LinkPurpose, base_url: str, now: datetime
) -> list[int]:
    user = find_user_by_email(session, email) if email.strip() else None
    if user is None or not user.is_active or is_pending(user):
        session.rollback()
        return []
    # A count, not a lock: requests racing at the same instant may each pass, which costs a
    # link or two more, never a flood.
    recent = session.exec(
        select(func.count())
        .select_from(SignInToken)
        .where(
            SignInToken.user_id == user.id,
            SignInToken.purpose == purpose,
            col(SignInToken.created_at) > now - REQUEST_WINDOW,
        )
    ).one()
    if recent >= MAX_LINKS_PER_WINDOW:
        session.rollback()
        return []
    secret = secrets.token_urlsafe(32)
    valid_for = SIGN_IN_VALID_FOR if purpose == LinkPurpose.SIGN_IN else RESET_VALID_FOR
    row = SignInToken(
        user_id=user.id,  # type: ignore[arg-type]
        purpose=purpose,
        token_digest=token_digest(secret),
        expires_at=now + valid_for,
        created_at=now,
    )
    session.add(row)
    session.flush()
    root = base_url.rstrip("/")
    if purpose == LinkPurpose.SIGN_IN:
        template, subject, url = "sign_in_link", "Your Portico sign-in link", f"{root}/login/link/"
    else:
        template, subject, url = (
            "password_reset",
            "Reset your Portico password",
            f"{root}/password/reset/",
        )
    message = write_email(
        session,
        template=template,
        dedupe_key=f"{purpose}:token:{row.id}",
        to_address=user.email,
        subject=subject,
        partner_id=user.partner_id,
        user=user,
        url=url + secret,
        valid_for_minutes=int(valid_for.total_seconds() // 60),
    )
    session.commit()
    return [message.id] if message.id is not None else []


# -- using a link ----------------------------------------------------------------------------


def _usable(
    session: Session, token: str, purpose: LinkPurpose, now: datetime
) -> tuple[SignInToken, User]:
    """The unspent token row for ``token`` and its user; raises as the public peekers."""
    row = session.exec(
        select(SignInToken)
        .where(SignInToken.token_digest == token_digest(token), SignInToken.purpose == purpose)
        .execution_options(populate_existing=True)
    ).first()
    user = session.get(User, row.user_id, populate_existing=True) if row is not None else None
    if row is None or user is None:
        raise NotFound(_NOT_VALID)
    if row.used_at is not None:
        raise LinkUnusable(_UNUSABLE[purpose])
    if row.expires_at <= now:
        raise LinkUnusable(_EXPIRED[purpose])
    if not user.is_active or is_pending(user):
        raise LinkUnusable(_INACTIVE)
    return row, user


def _spend(session: Session, row: SignInToken, purpose: LinkPurpose, now: datetime) -> None:
    """Mark ``row`` used, if nobody else did first and it has not expired (caller commits).

    Raises:
        LinkUnusable: another request spent it a moment earlier, or it just expired;
            the transaction is rolled back.
    """
    result = session.execute(
        update(SignInToken)
        .where(
            col(SignInToken.id) == row.id,
            col(SignInToken.used_at).is_(None),
            col(SignInToken.expires_at) > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise LinkUnusable(_UNUSABLE[purpose])


def _spend_others(session: Session, user: User, purposes: tuple[str, ...], now: datetime) -> None:
    """Mark every other outstanding link of ``user`` with one of ``purposes`` used."""
    session.execute(
        update(SignInToken)
        .where(
            col(SignInToken.user_id) == user.id,
            col(SignInToken.purpose).in_(purposes),
            col(SignInToken.used_at).is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )


def _signed_in(user: User, now: datetime) -> None:
    """Record a sign-in that proved the mailbox: the password lockout no longer applies."""
    user.last_login_at = now
    user.locked_until = None
    user.recent_failed_logins = []


def _audit(session: Session, user: User, action: str, now: datetime) -> None:
    add_event(
        session, action=action, subject_type="user", subject_id=user.id,
        partner_id=user.partner_id, customer_account_id=user.customer_account_id,
        actor=user, detail={"email": user.email}, at=now,
    )  # fmt: skip


def sign_in_link_user(session: Session, token: str, *, now: datetime) -> User:
    """The user a sign-in link would sign in, without spending it (for the confirm page).

    Raises:
        NotFound: no sign-in link has this token (mistyped, altered, or a reset link).
        LinkUnusable: used (or spent by a later sign-in or reset), expired, or its user
            was deactivated; the message says which.
    """
    return _usable(session, token, LinkPurpose.SIGN_IN, now)[1]


def consume_sign_in_link(session: Session, token: str, *, now: datetime) -> User:
    """Spend a sign-in link and return its user, to be signed in by the caller (commits).

    Also spends the user's other outstanding sign-in links (they are in, so the rest of
    the mailbox's links are only a risk) and clears the password lockout (see the module
    docstring). Records ``user.signed_in_by_link``.

    Raises:
        NotFound, LinkUnusable: as :func:`sign_in_link_user`, also when another request
            spent the same link a moment earlier.
    """
    row, user = _usable(session, token, LinkPurpose.SIGN_IN, now)
    _spend(session, row, LinkPurpose.SIGN_IN, now)
    _spend_others(session, user, (LinkPurpose.SIGN_IN,), now)
    _signed_in(user, now)
    session.add(user)
    _audit(session, user, "user.signed_in_by_link", now)
    session.commit()
    session.refresh(user)
    return user


def password_reset_user(session: Session, token: str, *, now: datetime) -> User:
    """The user whose password a reset link would set, without spending it (for the form).

    Raises:
        NotFound: no reset link has this token (mistyped, altered, or a sign-in link).
        LinkUnusable: used (or spent by a later reset), expired, or its user was
            deactivated; the message says which.
    """
    return _usable(session, token, LinkPurpose.RESET, now)[1]


def reset_password(
    session: Session, token: str, *, password: str, confirm: str, now: datetime
) -> User:
    """Set a new password from a reset link and return the user, signed in at ``now`` (commits).

    Spends the link and every other outstanding link of the user (sign-in and reset),
    ends every session of the user, clears the password lockout, and records
    ``user.password_reset``. The caller signs the user in with a fresh session.

    Raises:
        NotFound, LinkUnusable: as :func:`password_reset_user`, also when another request
            spent the same link a moment earlier.
        FieldsInvalid: ``password`` breaks a rule of ``passwords.password_problem`` or
            ``confirm`` differs (keys ``password`` / ``confirm``); nothing changes and
            the link still works.
    """
    row, user = _usable(session, token, LinkPurpose.RESET, now)
    errors = new_password_errors(password, confirm, email=user.email)
    if errors:
        session.rollback()
        raise FieldsInvalid(errors)
    new_hash = hash_password(password)  # before the UPDATE: no write lock held while hashing
    _spend(session, row, LinkPurpose.RESET, now)
    _spend_others(session, user, (LinkPurpose.SIGN_IN, LinkPurpose.RESET), now)
    user.password_hash = new_hash
    end_sessions(user)  # a session opened elsewhere (maybe by whoever knew the old one) ends
    _signed_in(user, now)
    session.add(user)
    _audit(session, user, "user.password_reset", now)
    session.commit()
    session.refresh(user)
    return user
