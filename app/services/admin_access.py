"""Partner-admin access for settings services: the admin's partner, locked, and audit."""

from __future__ import annotations

from sqlmodel import Session, select

from app.domain.errors import NotFound
from app.models import Partner, Role, User
from app.services.audit_log import add_event
from app.services.tenancy import partner_id_of


def admin_partner_id(user: User) -> int:
    """The partner of a partner admin. Raises NotFound for every other user."""
    if user.role != Role.PARTNER_ADMIN:
        raise NotFound("Not found.")
    return partner_id_of(user)


def partner_for_update(session: Session, user: User) -> Partner:
    """The admin's partner row, locked (PostgreSQL) so concurrent edits do not interleave."""
    query = (
        select(Partner)
        .where(Partner.id == admin_partner_id(user))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    partner = session.exec(query).first()
    if partner is None:
        raise NotFound("Not found.")
    return partner


def audit(
    session: Session, user: User, action: str, subject: str, subject_id: int | None, detail: dict
) -> None:
    """Add an audit event done by the admin ``user`` to the caller's transaction."""
    add_event(
        session, action=action, subject_type=subject, subject_id=subject_id,
        partner_id=user.partner_id, actor=user, detail=detail,
    )  # fmt: skip
