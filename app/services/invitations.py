"""Invitation links: a signed, expiring, single-use link to set a first password.

An invited user is a ``User`` row whose password hash is a random, unusable marker
(``PENDING_PREFIX`` + random text; werkzeug never accepts it, so nobody can sign in
with it). The link's token is signed with the app's secret and carries the user id, an
expiry instant and a fingerprint of that marker. Setting the password replaces the
marker, so the fingerprint stops matching and the link is spent: a second use, or a
link replaced by a newer invitation, is refused. The replacement is one conditional
UPDATE (``WHERE password_hash = <marker>``), so two simultaneous uses set one password.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import update
from sqlmodel import Session, col

from app.domain.errors import DomainError, NotFound
from app.models import AuditEvent, OutboxMessage, Partner, Role, User
from app.services.auth import hash_password
from app.services.notifications import write_email
from app.services.passwords import new_password_errors

INVITE_VALID_FOR: Final = timedelta(days=7)
PENDING_PREFIX: Final = "!invited:"
_NOT_VALID: Final = "This invitation link is not valid. Check that you copied all of it."
ROLE_NAMES: Final = {Role.PARTNER_ADMIN: "admin", Role.PARTNER_SALES: "sales user"}


class InvitationUnusable(DomainError):
    """The link is genuine but cannot be used any more (used, replaced, expired…)."""

    status_code = 410


class PasswordInvalid(DomainError):
    """The chosen password breaks a rule; ``errors`` maps field names to messages."""

    status_code = 422

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(next(iter(errors.values())))
        self.errors = errors


@dataclass(frozen=True)
class LinkSettings:
    """Where emailed links point: the signing secret and the public base URL."""

    secret_key: str
    base_url: str


def pending_password_hash() -> str:
    """A fresh unusable password marker for an invited user (a new one spends old links)."""
    return PENDING_PREFIX + secrets.token_urlsafe(24)


def is_pending(user: User) -> bool:
    """Whether ``user`` was invited and has not set a password yet."""
    return user.password_hash.startswith(PENDING_PREFIX)


def _fingerprint(password_hash: str) -> str:
    """A short digest of the marker: it changes when the link is spent or replaced."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:24]


def _serializer(secret: str) -> URLSafeSerializer:
    """Signs invitation tokens (a salt of their own, so no other token passes)."""
    return URLSafeSerializer(secret, salt="portico-invite")


def invite_token(secret: str, user: User, *, now: datetime) -> str:
    """The signed token of ``user``'s current invitation, valid for INVITE_VALID_FOR."""
    expires = int((now + INVITE_VALID_FOR).timestamp())
    return _serializer(secret).dumps(
        {"u": user.id, "f": _fingerprint(user.password_hash), "x": expires}
    )


def write_invite_email(
    session: Session,
    user: User,
    *,
    inviter: User,
    partner: Partner,
    links: LinkSettings,
    now: datetime,
) -> OutboxMessage:
    """Add the invitation email with a fresh link to the caller's transaction.

    Written once per invitation marker (a resend makes a new marker, hence a new email).
    Needs an app context (templates). Raises nothing of its own.
    """
    token = invite_token(links.secret_key, user, now=now)
    return write_email(
        session,
        template="invite",
        dedupe_key=f"invite:{user.id}:{_fingerprint(user.password_hash)}",
        to_address=user.email,
        subject=f"You are invited to {partner.name} on Portico",
        partner_id=partner.id,
        user=user,
        inviter=inviter.name or inviter.email,
        partner=partner,
        role_name=ROLE_NAMES.get(user.role, "user"),  # type: ignore[call-overload]
        url=f"{links.base_url.rstrip('/')}/invite/{token}",
        expires_at=now + INVITE_VALID_FOR,
    )


def invitation_for(session: Session, secret: str, token: str, *, now: datetime) -> User:
    """The invited user whose link ``token`` still works at ``now``.

    Raises:
        NotFound: the token is not one Portico signed, or its user no longer exists.
        InvitationUnusable: already used, replaced by a newer invitation, expired, or
            the user was deactivated; the message says which.
    """
    try:
        data = _serializer(secret).loads(token)
        user_id, fingerprint, expires = int(data["u"]), str(data["f"]), int(data["x"])
    except (BadSignature, KeyError, TypeError, ValueError) as exc:
        raise NotFound(_NOT_VALID) from exc
    user = session.get(User, user_id, populate_existing=True)
    if user is None:
        raise NotFound(_NOT_VALID)
    if not is_pending(user):
        raise InvitationUnusable(
            "This invitation link has already been used. Sign in with the password you chose."
        )
    if fingerprint != _fingerprint(user.password_hash):
        raise InvitationUnusable(
            "This invitation link was replaced by a newer one. Use the link in the latest email."
        )
    if not user.is_active:
        raise InvitationUnusable(
            "This invitation was withdrawn. Ask your admin to invite you again."
        )
    if now.timestamp() > expires:
        raise InvitationUnusable(
            "This invitation link has expired. Ask your admin to send a new invitation."
        )
    return user


def accept_invitation(
    session: Session, secret: str, token: str, *, password: str, confirm: str, now: datetime
) -> User:
    """Set the invited user's first password from their link and spend the link (commits).

    The user counts as signed in at ``now`` (the caller signs them in).

    Raises:
        NotFound, InvitationUnusable: as :func:`invitation_for` (also when another
            request used the same link a moment earlier).
        PasswordInvalid: the password breaks a rule or the confirmation differs
            (``password`` / ``confirm``); nothing changes.
    """
    user = invitation_for(session, secret, token, now=now)
    errors = new_password_errors(password, confirm, email=user.email)
    if errors:
        raise PasswordInvalid(errors)
    marker = user.password_hash
    result = session.execute(
        update(User)
        .where(
            col(User.id) == user.id,
            col(User.password_hash) == marker,
            col(User.is_active).is_(True),
        )
        .values(password_hash=hash_password(password), last_login_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise InvitationUnusable(
            "This invitation link has already been used. Sign in with the password you chose."
        )
    session.add(
        AuditEvent(
            partner_id=user.partner_id,
            actor_user_id=user.id,
            actor_label=user.email,
            action="user.invitation_accepted",
            subject_type="user",
            subject_id=user.id,
            detail={"email": user.email},
        )
    )
    session.commit()
    session.refresh(user)
    return user
