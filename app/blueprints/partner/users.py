"""The partner's users: list, invite, resend an invitation, deactivate, reactivate.

Partner admins only; a sales user is told why not (403). Registered on the partner
blueprint (``partner.*`` endpoints); its ``routes`` module imports this one. Views parse
the form, call one service and choose the response; the services check again.
"""

from __future__ import annotations

from typing import Any

from flask import flash, request, url_for
from sqlmodel import Session
from werkzeug.wrappers import Response

from app.blueprints.partner.routes import bp
from app.clock import utcnow
from app.domain.errors import Conflict
from app.extensions import db_session
from app.models import Role, User
from app.services.invitations import LinkSettings
from app.services.partner_users import (
    INVITABLE_ROLES,
    InviteInput,
    InviteInvalid,
    invite_user,
    list_users,
    resend_invitation,
    set_user_active,
)
from app.services.tenancy import partner_of
from app.web.auth import acting_user, partner_admin_only
from app.web.htmx import redirect_to, render_view
from app.web.payer import enqueue_after_commit, settings

admin_only = partner_admin_only(
    "Only partner admins can manage users. Ask an admin of your organisation to invite "
    "or deactivate someone."
)


def _links() -> LinkSettings:
    return LinkSettings(secret_key=settings().secret_key, base_url=settings().base_url)


def _page(session: Session, user: User, *, status: int = 200, **context: Any) -> Response:
    defaults: dict[str, Any] = {"form": InviteInput(), "errors": {}, "problem": ""}
    return render_view(
        "partner/users.html",
        status=status,
        partner=partner_of(session, user),
        rows=list_users(session, user),
        roles=INVITABLE_ROLES,
        **(defaults | context),
    )


@bp.get("/users")
@admin_only
def users() -> Response:
    return _page(db_session(), acting_user())


@bp.post("/users/invite")
@admin_only
def invite() -> Response:
    session, user = db_session(), acting_user()
    form = InviteInput(
        name=request.form.get("name", "")[:500],
        email=request.form.get("email", "")[:500],
        role=request.form.get("role", Role.PARTNER_SALES),
    )
    try:
        invitation = invite_user(session, user, form, links=_links(), now=utcnow())
    except InviteInvalid as exc:
        return _page(session, user, status=422, form=form, errors=exc.errors)
    enqueue_after_commit([invitation.email_id])
    flash(
        f"Invitation sent to {invitation.user.email}. "
        "The link works once, for 7 days; until then they cannot sign in."
    )
    return redirect_to(url_for("partner.users"))


@bp.post("/users/<int:user_id>/resend")
@admin_only
def resend_invite(user_id: int) -> Response:
    session, user = db_session(), acting_user()
    try:
        invitation = resend_invitation(session, user, user_id, links=_links(), now=utcnow())
    except Conflict as exc:
        return _page(session, user, status=409, problem=exc.message)
    enqueue_after_commit([invitation.email_id])
    flash(f"A new invitation was sent to {invitation.user.email}. Earlier links no longer work.")
    return redirect_to(url_for("partner.users"))


@bp.post("/users/<int:user_id>/deactivate")
@admin_only
def deactivate_user(user_id: int) -> Response:
    session, admin = db_session(), acting_user()
    try:
        user = set_user_active(session, admin, user_id, active=False)
    except Conflict as exc:
        return _page(session, admin, status=409, problem=exc.message)
    flash(f"{user.name or user.email} is deactivated and signed out everywhere.")
    return redirect_to(url_for("partner.users"))


@bp.post("/users/<int:user_id>/reactivate")
@admin_only
def reactivate_user(user_id: int) -> Response:
    session, admin = db_session(), acting_user()
    try:
        user = set_user_active(session, admin, user_id, active=True)
    except Conflict as exc:
        return _page(session, admin, status=409, problem=exc.message)
    flash(f"{user.name or user.email} can sign in again.")
    return redirect_to(url_for("partner.users"))
