"""Change password, for any signed-in user (partner users, customers, the operator).

The form asks for the current password and the new one twice. On success every session
of the user ends, other browsers included, and this one starts afresh (ADR 0019).
Registered on the auth blueprint; ``auth.routes`` imports this module.
"""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from app.blueprints.auth.routes import bp, start_session
from app.clock import utcnow
from app.domain.errors import FieldsInvalid
from app.extensions import db_session
from app.services.auth import AccountLocked, change_password
from app.services.passwords import MAX_LENGTH, MIN_LENGTH
from app.web.htmx import render_view


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password_page() -> Response:
    """Show (GET) and apply (POST) the change-password form."""
    if request.method == "GET":
        return _form()
    try:
        user = change_password(
            db_session(),
            current_user.id,
            current=request.form.get("current", ""),
            password=request.form.get("password", ""),
            confirm=request.form.get("confirm", ""),
            now=utcnow(),
        )
    except FieldsInvalid as exc:
        return _form(errors=exc.errors, status=422)
    except AccountLocked as exc:
        return _form(errors={"current": exc.message}, status=exc.status_code)
    start_session(user)
    flash("Your password was changed. Every other browser signed in as you was signed out.")
    return redirect(url_for("auth.change_password_page"), code=303)


def _form(*, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    return render_view(
        "auth/change_password.html",
        status=status,
        email=current_user.email,
        errors=errors or {},
        min_length=MIN_LENGTH,
        max_length=MAX_LENGTH,
    )
