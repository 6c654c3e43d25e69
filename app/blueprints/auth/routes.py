"""Sign in and sign out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, redirect, request, session, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from app.blueprints.auth.forms import SignInForm
from app.clock import utcnow
from app.extensions import db_session, login_manager
from app.models import User
from app.services.auth import AccountLocked, InvalidCredentials, authenticate
from app.web.auth import home_endpoint
from app.web.htmx import render_view

bp = Blueprint("auth", __name__)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    user = db_session().get(User, int(user_id))
    return user if user is not None and user.is_active else None


@bp.get("/")
def index() -> Response:
    if current_user.is_authenticated:
        return redirect(url_for(home_endpoint(current_user)))
    return redirect(url_for("auth.login"))


def _safe_next(target: str | None) -> str | None:
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(ch) < 32 for ch in target):
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response:
    if current_user.is_authenticated and request.method == "GET":
        return redirect(url_for(home_endpoint(current_user)))
    form = SignInForm()
    error = ""
    status = 200
    if form.validate_on_submit():
        try:
            user = authenticate(
                db_session(),
                email=form.email.data or "",
                password=form.password.data or "",
                now=utcnow(),
            )
        except (InvalidCredentials, AccountLocked) as exc:
            error, status = exc.message, exc.status_code
        else:
            next_url = _safe_next(request.args.get("next"))
            session.clear()  # a fresh session (and CSRF token) for the signed-in user
            login_user(user)
            return redirect(next_url or url_for(home_endpoint(user)), code=303)
    elif request.method == "POST":
        status = 422
    return render_view("auth/login.html", form=form, error=error, status=status)


@bp.post("/logout")
def logout() -> Response:
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"), code=303)


from app.blueprints.auth import invite as _invite  # noqa: E402,F401  (registers the invitation page)
from app.blueprints.auth import links as _links  # noqa: E402,F401  (registers the emailed-link pages)
