"""Accepting an invitation: a public page, reached from the emailed link, to set a password.

Public by design (the invitee has no password yet): the signed, expiring, single-use
token in the URL is the credential, and the form is CSRF-protected like every other.
Registered on the auth blueprint; ``auth.routes`` imports this module.
"""

from __future__ import annotations

from flask import redirect, request, url_for
from werkzeug.wrappers import Response

from app.blueprints.auth.routes import bp, start_session
from app.clock import utcnow
from app.domain.errors import NotFound
from app.extensions import db_session
from app.services.invitations import (
    InvitationUnusable,
    PasswordInvalid,
    accept_invitation,
    invitation_for,
)
from app.services.passwords import MAX_LENGTH, MIN_LENGTH
from app.web.auth import home_endpoint
from app.web.htmx import render_view
from app.web.payer import settings


@bp.route("/invite/<token>", methods=["GET", "POST"])
def accept_invite(token: str) -> Response:
    """Show the set-password form of a working invitation link, or say why it does not work."""
    secret = settings().secret_key
    try:
        if request.method == "GET":
            user = invitation_for(db_session(), secret, token, now=utcnow())
            return _form(user.email, user.name)
        user = accept_invitation(
            db_session(),
            secret,
            token,
            password=request.form.get("password", ""),
            confirm=request.form.get("confirm", ""),
            now=utcnow(),
        )
    except (NotFound, InvitationUnusable) as exc:
        return render_view("auth/invite_unusable.html", status=exc.status_code, message=exc.message)
    except PasswordInvalid as exc:
        invited = invitation_for(db_session(), secret, token, now=utcnow())
        return _form(invited.email, invited.name, errors=exc.errors, status=422)
    start_session(user)
    return redirect(url_for(home_endpoint(user)), code=303)


def _form(
    email: str, name: str, *, errors: dict[str, str] | None = None, status: int = 200
) -> Response:
    response = render_view(
        "auth/invite.html",
        status=status,
        email=email,
        name=name,
        errors=errors or {},
        min_length=MIN_LENGTH,
        max_length=MAX_LENGTH,
    )
    response.headers["Referrer-Policy"] = "no-referrer"  # the URL holds the token
    return response
