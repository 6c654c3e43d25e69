"""Emailed one-time links: sign in without a password, and reset a forgotten one.

Public by design (the person is not signed in): asking for a link always answers the
same neutral page, and the random, expiring, single-use token in an emailed URL is the
credential. Opening a link never signs in by itself (mail scanners fetch links): the
page asks to press a button, a CSRF-protected POST. Pages whose URL holds a token send
``Referrer-Policy: no-referrer``. Registered on the auth blueprint; ``auth.routes``
imports this module.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import flash, redirect, request, url_for
from werkzeug.wrappers import Response

from app.blueprints.auth.routes import bp, start_session
from app.clock import utcnow
from app.domain.errors import FieldsInvalid, NotFound
from app.extensions import db_session
from app.services.passwords import MAX_LENGTH, MIN_LENGTH
from app.services.sign_in_links import (
    LinkUnusable,
    consume_sign_in_link,
    password_reset_user,
    request_password_reset,
    request_sign_in_link,
    reset_password,
    sign_in_link_user,
)
from app.web.auth import home_endpoint
from app.web.htmx import render_view
from app.web.payer import enqueue_after_commit, settings

_EMAIL_MAX = 254
SIGN_IN_SENT = (
    "If an account exists for that address, we've emailed a sign-in link. "
    "It works once, within 15 minutes."
)
RESET_SENT = (
    "If an account exists for that address, we've emailed a link to choose a new password. "
    "It works once, within 1 hour."
)


def _email_problem(email: str) -> str:
    """What is wrong with the typed email, or "" (only its shape: nothing is looked up)."""
    if not email:
        return "Enter your email."
    local, _, domain = email.rpartition("@")
    if len(email) > _EMAIL_MAX or not local or not domain or any(c.isspace() for c in email):
        return "Enter a valid email."
    return ""


def _ask_for_link(
    template: str, send: Callable[..., list[int]], sent_message: str, again_endpoint: str
) -> Response:
    """The email form (GET), or the same neutral answer whoever the email belongs to (POST)."""
    if request.method == "GET":
        return render_view(template, email="", error="")
    email = request.form.get("email", "").strip()
    problem = _email_problem(email)
    if problem:
        return render_view(template, status=422, email=email, error=problem)
    email_ids = send(db_session(), email=email, base_url=settings().base_url, now=utcnow())
    enqueue_after_commit(email_ids)
    return render_view(
        "auth/link_sent.html", email=email, message=sent_message, again_endpoint=again_endpoint
    )


@bp.route("/login/link", methods=["GET", "POST"])
def link_request() -> Response:
    """Ask for a one-time sign-in link by email."""
    return _ask_for_link(
        "auth/link_request.html", request_sign_in_link, SIGN_IN_SENT, "auth.link_request"
    )


@bp.route("/password/forgot", methods=["GET", "POST"])
def password_forgot() -> Response:
    """Ask for a password reset link by email."""
    return _ask_for_link(
        "auth/forgot.html", request_password_reset, RESET_SENT, "auth.password_forgot"
    )


def _no_referrer(response: Response) -> Response:
    response.headers["Referrer-Policy"] = "no-referrer"  # the URL holds the token
    response.headers["Cache-Control"] = "no-store"
    return response


def _unusable(exc: NotFound | LinkUnusable, again_endpoint: str) -> Response:
    return _no_referrer(
        render_view(
            "auth/link_unusable.html",
            status=exc.status_code,
            message=exc.message,
            again_endpoint=again_endpoint,
        )
    )


@bp.route("/login/link/<token>", methods=["GET", "POST"])
def link_sign_in(token: str) -> Response:
    """Confirm (GET) and use (POST) an emailed sign-in link."""
    try:
        if request.method == "GET":
            user = sign_in_link_user(db_session(), token, now=utcnow())
            return _no_referrer(render_view("auth/link_sign_in.html", email=user.email))
        user = consume_sign_in_link(db_session(), token, now=utcnow())
    except (NotFound, LinkUnusable) as exc:
        return _unusable(exc, "auth.link_request")
    start_session(user)
    return _no_referrer(redirect(url_for(home_endpoint(user)), code=303))


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def password_reset(token: str) -> Response:
    """Choose a new password from an emailed reset link, then land signed in."""
    try:
        if request.method == "GET":
            user = password_reset_user(db_session(), token, now=utcnow())
            return _reset_form(user.email)
        user = reset_password(
            db_session(),
            token,
            password=request.form.get("password", ""),
            confirm=request.form.get("confirm", ""),
            now=utcnow(),
        )
    except (NotFound, LinkUnusable) as exc:
        return _unusable(exc, "auth.password_forgot")
    except FieldsInvalid as exc:
        email = password_reset_user(db_session(), token, now=utcnow()).email
        return _reset_form(email, errors=exc.errors, status=422)
    start_session(user)
    flash("Your password was changed. Use it the next time you sign in.")
    return _no_referrer(redirect(url_for(home_endpoint(user)), code=303))


def _reset_form(email: str, *, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    return _no_referrer(
        render_view(
            "auth/reset.html",
            status=status,
            email=email,
            errors=errors or {},
            min_length=MIN_LENGTH,
            max_length=MAX_LENGTH,
        )
    )
