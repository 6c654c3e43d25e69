"""A partner admin manages the partner's users: list, invite, resend, deactivate, reactivate.

Only partner admins may; a sales user is told so (403), anyone else sees nothing (404).
Users of another partner answer NotFound. Every change writes an AuditEvent and commits
once. Changes to a partner's users are serialised by locking the partner row
(PostgreSQL; SQLite's write lock does the same), so two admins deactivating each other
at once cannot leave the partner without an active admin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import exists, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from app.domain.contact import MAX_EMAIL_LENGTH, is_email
from app.domain.errors import Conflict, DomainError, NotFound
from app.models import Partner, Role, User
from app.services.admin_access import audit, partner_for_update
from app.services.auth import find_user_by_email
from app.services.invitations import (
    LinkSettings,
    is_pending,
    pending_password_hash,
    write_invite_email,
)
from app.services.tenancy import PARTNER_ROLES

T = TypeVar("T")

INVITABLE_ROLES: dict[str, str] = {Role.PARTNER_SALES: "Sales", Role.PARTNER_ADMIN: "Admin"}
MAX_NAME_LENGTH = 200


class NotAllowed(DomainError):
    """The user is signed in and in the right place, but their role may not do this."""

    status_code = 403


class InviteInvalid(DomainError):
    """The invite form breaks a rule; ``errors`` maps field names to messages."""

    status_code = 422

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(next(iter(errors.values())))
        self.errors = errors


@dataclass(frozen=True)
class InviteInput:
    name: str = ""
    email: str = ""
    role: str = Role.PARTNER_SALES


@dataclass(frozen=True)
class UserRow:
    user: User
    pending: bool  # invited, no password set yet
    is_you: bool

    @property
    def role_label(self) -> str:
        return INVITABLE_ROLES.get(self.user.role, self.user.role)


@dataclass(frozen=True)
class Invitation:
    user: User
    email_id: int


def managed_partner_id(user: User) -> int:
    """The partner whose users ``user`` manages.

    Raises:
        NotAllowed: a partner sales user (the message says who may).
        NotFound: anyone who is not a partner user.
    """
    if user.role not in PARTNER_ROLES or user.partner_id is None:
        raise NotFound("Not found.")
    if user.role != Role.PARTNER_ADMIN:
        raise NotAllowed(
            "Only partner admins can manage users. Ask an admin of your organisation "
            "to invite or deactivate someone."
        )
    return user.partner_id


def list_users(session: Session, admin: User) -> list[UserRow]:
    """The partner's users (active first, then by name), for a partner admin.

    Raises NotAllowed (sales users) or NotFound (anyone else), as managed_partner_id.
    """
    partner_id = managed_partner_id(admin)
    users = session.exec(
        select(User)
        .where(User.partner_id == partner_id, col(User.role).in_(PARTNER_ROLES))
        .order_by(col(User.is_active).desc(), User.name, User.email)
    ).all()
    return [UserRow(u, is_pending(u), u.id == admin.id) for u in users]


def check_invite(session: Session, form: InviteInput) -> InviteInput:
    """The cleaned invite form (name trimmed, email trimmed and lower-cased).

    Raises InviteInvalid with a message per field at fault: name missing or too long,
    email malformed or already used by any Portico user (any partner, any role), role
    not one a partner may invite.
    """
    errors: dict[str, str] = {}
    name = " ".join(form.name.split())
    email = form.email.strip().lower()
    if not name:
        errors["name"] = "Enter the person's name."
    elif len(name) > MAX_NAME_LENGTH:
        errors["name"] = f"Use at most {MAX_NAME_LENGTH} characters."
    if not email:
        errors["email"] = "Enter the person's email, such as name@example.com."
    elif len(email) > MAX_EMAIL_LENGTH or not is_email(email):
        errors["email"] = "Enter a valid email, such as name@example.com."
    elif find_user_by_email(session, email) is not None:
        errors["email"] = _TAKEN
    if form.role not in INVITABLE_ROLES:
        errors["role"] = "Choose Sales or Admin."
    if errors:
        raise InviteInvalid(errors)
    return InviteInput(name=name, email=email, role=form.role)


_TAKEN = (
    "This email already belongs to a Portico user (emails are unique across Portico). "
    "Use another address."
)


def invite_user(
    session: Session, admin: User, form: InviteInput, *, links: LinkSettings, now: datetime
) -> Invitation:
    """Create an invited user of the admin's partner and write the invitation email (commits).

    The new user cannot sign in until they set a password from the emailed link, which
    works once and for INVITE_VALID_FOR. The caller enqueues ``email_id`` after commit.

    Raises:
        NotAllowed / NotFound: as managed_partner_id.
        InviteInvalid: as check_invite (also when another request took the email a
            moment earlier); nothing is written.
    """
    managed_partner_id(admin)
    partner = partner_for_update(session, admin)
    clean = _or_roll_back(session, lambda: check_invite(session, form))
    user = User(
        email=clean.email,
        name=clean.name,
        role=clean.role,
        partner_id=partner.id,
        password_hash=pending_password_hash(),
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise InviteInvalid({"email": _TAKEN}) from exc
    message = write_invite_email(
        session, user, inviter=admin, partner=partner, links=links, now=now
    )
    audit(session, admin, "user.invited", "user", user.id,
          {"email": user.email, "name": user.name, "role": user.role})  # fmt: skip
    session.commit()
    assert message.id is not None
    return Invitation(user, message.id)


def resend_invitation(
    session: Session, admin: User, user_id: int, *, links: LinkSettings, now: datetime
) -> Invitation:
    """Email a new invitation link to a user who has not set a password (commits).

    Earlier links stop working. Raises NotAllowed / NotFound (as managed_partner_id, or a
    user of another partner), Conflict when the user already set a password or is
    deactivated.
    """
    managed_partner_id(admin)
    partner = partner_for_update(session, admin)
    user = _or_roll_back(session, lambda: _resendable(session, partner, user_id))
    user.password_hash = pending_password_hash()
    session.add(user)
    session.flush()
    message = write_invite_email(
        session, user, inviter=admin, partner=partner, links=links, now=now
    )
    audit(session, admin, "user.invitation_resent", "user", user.id, {"email": user.email})
    session.commit()
    assert message.id is not None
    return Invitation(user, message.id)


def set_user_active(session: Session, admin: User, user_id: int, *, active: bool) -> User:
    """Deactivate or reactivate one of the partner's users (commits; no-op if unchanged).

    A deactivated user cannot sign in, and their open sessions stop working on their
    next request (the login manager loads active users only) and stay ended after a
    reactivation (deactivating bumps ``session_version``).

    Raises:
        NotAllowed / NotFound: as managed_partner_id, or a user of another partner.
        Conflict: an admin deactivating themself, or the partner's last active admin;
            also when the acting admin was deactivated meanwhile.
    """
    managed_partner_id(admin)
    partner = partner_for_update(session, admin)
    user = _or_roll_back(session, lambda: _changeable(session, partner, admin, user_id, active))
    if user.is_active == active:
        session.commit()
        return user
    _or_roll_back(session, lambda: _write_active(session, partner, admin, user, active))
    action = "user.reactivated" if active else "user.deactivated"
    audit(session, admin, action, "user", user.id, {"email": user.email, "role": user.role})
    session.commit()
    return user


def _or_roll_back(session: Session, check: Callable[[], T]) -> T:
    """Run ``check``; on a refusal end the transaction (and its partner lock) first."""
    try:
        return check()
    except DomainError:
        session.rollback()
        raise


def _resendable(session: Session, partner: Partner, user_id: int) -> User:
    """The invited, still active user to resend to. Raises NotFound or Conflict."""
    user = _member(session, partner, user_id)
    if not is_pending(user):
        raise Conflict(f"{user.email} has already set a password; there is nothing to resend.")
    if not user.is_active:
        raise Conflict(f"{user.email} is deactivated. Reactivate them first.")
    return user


def _changeable(
    session: Session, partner: Partner, admin: User, user_id: int, active: bool
) -> User:
    """The user whose active flag ``admin`` may set to ``active``. Raises Conflict."""
    actor = _member(session, partner, admin.id)  # type: ignore[arg-type]
    user = _member(session, partner, user_id)
    if not active and user.is_active:
        if user.id == actor.id:
            raise Conflict("You cannot deactivate yourself. Ask another admin to do it.")
        if user.role == Role.PARTNER_ADMIN and _other_active_admins(session, partner, user) == 0:
            raise Conflict(
                f"{user.name or user.email} is the last active admin of {partner.name}. "
                "Invite or reactivate another admin first."
            )
    if not actor.is_active:  # deactivated by another admin since this page loaded
        raise Conflict("Your account was deactivated. Ask another admin.")
    return user


def _write_active(
    session: Session, partner: Partner, admin: User, user: User, active: bool
) -> None:
    """Set the flag in one guarded UPDATE: the rules hold even between two racing requests.

    The partner lock already serialises admins on PostgreSQL; on SQLite reads take no
    lock, so the statement itself re-checks, atomically, that the acting admin is still
    active and (deactivating an admin) that another active admin remains.
    """
    other = aliased(User)
    guards = [
        col(User.id) == user.id,
        exists().where(col(other.id) == admin.id, col(other.is_active).is_(True)),
    ]
    if not active and user.role == Role.PARTNER_ADMIN:
        guards.append(
            exists().where(
                other.partner_id == partner.id,
                other.role == Role.PARTNER_ADMIN,
                col(other.is_active).is_(True),
                col(other.id) != user.id,
            )
        )
    values: dict[str, object] = {"is_active": active}
    if not active:  # their sessions end for good: reactivating must not revive them
        values["session_version"] = col(User.session_version) + 1
    result = session.execute(
        update(User).where(*guards).values(**values).execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(
            f"{user.name or user.email} is the last active admin of {partner.name}, or your "
            "own account was just deactivated. Reload the page to see who is active."
        )
    session.refresh(user)


def _member(session: Session, partner: Partner, user_id: int) -> User:
    """A user of ``partner`` read afresh (not from the identity map). Raises NotFound."""
    user = session.exec(
        select(User)
        .where(
            User.id == user_id,
            User.partner_id == partner.id,
            col(User.role).in_(PARTNER_ROLES),
        )
        .execution_options(populate_existing=True)
    ).first()
    if user is None:
        raise NotFound("Not found.")
    return user


def _other_active_admins(session: Session, partner: Partner, user: User) -> int:
    """How many active admins the partner has besides ``user``."""
    return len(
        session.exec(
            select(User.id).where(
                User.partner_id == partner.id,
                User.role == Role.PARTNER_ADMIN,
                col(User.is_active).is_(True),
                User.id != user.id,
            )
        ).all()
    )
