"""Sign in and sign out.

Every way in (password, emailed link, invitation, password reset) starts a fresh session
through ``start_session``, which stores the user's ``session_version``; the user loader
refuses a session whose number is no longer the user's, so signing out and changing the
password end every other session of the user (ADR 0019).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, redirect, request, session, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from app.blueprints.auth.forms import SignInForm
from app.clock import utcnow
from app.extensions import db_session, login_manager, resources
from app.models import User
from app.services.auth import AccountLocked, InvalidCredentials, authenticate, sign_out
from app.services.auth_throttle import (
    TooManyAttempts,
    ensure_address_allowed,
    record_address_failure,
)
from app.web.auth import home_endpoint
from app.web.htmx import render_view
from app.web.payer import client_address

bp = Blueprint("auth", __name__)
SESSION_VERSION_KEY = "_session_version"


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """The signed-in user, unless deactivated or the session predates a sign-out/new password."""
    user = db_session().get(User, int(user_id))
    if user is None or not user.is_active:
        return None
    if session.get(SESSION_VERSION_KEY) != user.session_version:
        return None
    return user


def start_session(user: User) -> None:
    """Sign ``user`` in on a fresh session (new cookie value and CSRF token)."""
    session.clear()  # nothing of the session from before sign-in is carried over
    login_user(user)
    session[SESSION_VERSION_KEY] = user.session_version


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
        now, address, redis = utcnow(), client_address(), resources().redis
        try:
            ensure_address_allowed(redis, address, now=now)
            user = authenticate(
                db_session(),
                email=form.email.data or "",
                password=form.password.data or "",
                now=now,
            )
        except TooManyAttempts as exc:
            response = render_view(
                "auth/login.html", form=form, error=exc.message, status=exc.status_code
            )
            response.headers["Retry-After"] = str(int(exc.retry_after.total_seconds()))
            return response
        except (InvalidCredentials, AccountLocked) as exc:
            record_address_failure(redis, address, now=now)
            error, status = exc.message, exc.status_code
        else:
            next_url = _safe_next(request.args.get("next"))
            start_session(user)
            return redirect(next_url or url_for(home_endpoint(user)), code=303)
    elif request.method == "POST":
        status = 422
    return render_view("auth/login.html", form=form, error=error, status=status)


@bp.post("/logout")
def logout() -> Response:
    """Sign out here and everywhere else (a copied session cookie stops working too)."""
    if current_user.is_authenticated:
        sign_out(db_session(), current_user.id)
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"), code=303)


from app.blueprints.auth import invite as _invite  # noqa: E402,F401  (registers the invitation page)
from app.blueprints.auth import links as _links  # noqa: E402,F401  (registers the emailed-link pages)
from app.blueprints.auth import password as _password  # noqa: E402,F401  (registers change password)
