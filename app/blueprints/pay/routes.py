"""Pay links: ``/pay/<token>`` shows an invoice and takes its payment (first-party page)."""

from __future__ import annotations

from flask import Blueprint, request
from flask_login import current_user
from werkzeug.wrappers import Response

from app.extensions import db_session
from app.services import form_tokens, pay_links
from app.web.htmx import render_view
from app.web.pay_flow import form_subject, submit_invoice_payment
from app.web.payer import enqueue_after_commit, now_and_today, settings

bp = Blueprint("pay", __name__)


def _signed_in_user():  # noqa: ANN202
    return current_user._get_current_object() if current_user.is_authenticated else None  # type: ignore[attr-defined]


def _page(view, *, values=None, errors=None, outcome=None, message="", status=200):  # noqa: ANN001, ANN202
    saved = pay_links.saved_methods(db_session(), view, _signed_in_user())
    return render_view(
        "pay/pay.html",
        block="widget",
        status=status,
        view=view,
        token=form_tokens.issue(settings().secret_key, form_subject(view)),
        values=values or {},
        errors=errors or {},
        outcome=outcome,
        message=message,
        saved_methods=saved,
        action=request.path,
        csrf=True,
    )


@bp.get("/pay/<token>")
def pay(token: str) -> Response:
    now, _ = now_and_today("UTC")
    return _page(pay_links.open_link(db_session(), settings().secret_key, token, now=now))


@bp.post("/pay/<token>")
def submit(token: str) -> Response:
    session = db_session()
    now, _ = now_and_today("UTC")
    view = pay_links.open_link(session, settings().secret_key, token, now=now)
    saved = pay_links.saved_methods(session, view, _signed_in_user())
    return submit_invoice_payment(session, view, saved_methods=saved, render=_page)


@bp.post("/pay/<token>/new-link")
def new_link(token: str) -> Response:
    session = db_session()
    now, _ = now_and_today("UTC")
    view = pay_links.open_link(session, settings().secret_key, token, now=now)
    message = "This link is still valid; you can pay with it."
    if view.state in ("expired", "revoked"):
        email_id = pay_links.send_new_link(
            session, view, secret=settings().secret_key, base_url=settings().base_url, now=now
        )
        enqueue_after_commit([email_id] if email_id else [])
        message = "We have emailed a new payment link to the billing address on file."
    return _page(view, message=message)
