"""The email outbox: every message with its status, one message's parts, "Send again".

Operators read it; during development (``PORTICO_ENV`` development or test) anyone signed
in may read it too, but only operators may send a message again. Others get 403. The
list's ``results`` block is rendered alone for htmx filtering. A message's HTML part is
served on its own URL for the preview frame, under a policy of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, current_app, flash, request, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from app.blueprints.operator.routes import bp
from app.extensions import db_session
from app.jobs.dispatch import enqueue_emails
from app.models import Role
from app.services.outbox import OutboxFilters, list_outbox, outbox_message, send_again
from app.web.htmx import redirect_to, render_view

F = TypeVar("F", bound=Callable[..., Any])
# The preview frame's document: the email's inline styles apply (what a preview is for),
# nothing else does: no script, form, plugin or remote resource, an opaque origin
# (``sandbox``), and only the console's own pages may frame it.
EMAIL_PREVIEW_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "object-src 'none'; form-action 'none'; frame-ancestors 'self'; sandbox"
)


def _require(may: Callable[[], bool], refusal: str) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        @wraps(view)
        @login_required
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not may():
                abort(403, description=refusal)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


def _is_operator() -> bool:
    return current_user.role == Role.OPERATOR


def _may_read() -> bool:
    return _is_operator() or current_app.config["PORTICO"].is_development


reader_required = _require(_may_read, "Only operators can read the outbox.")
sender_required = _require(_is_operator, "Only operators can send an email again.")


@bp.get("/outbox")
@reader_required
def outbox() -> Response:
    """The newest messages first, filtered by status and kind, searched by recipient."""
    filters = OutboxFilters(
        status=request.args.get("status", "").strip(),
        kind=request.args.get("kind", "").strip(),
        search=request.args.get("q", "").strip()[:200],
    )
    page = request.args.get("page", 1, type=int) or 1
    result = list_outbox(db_session(), filters, page=page)
    outbox_only = not current_app.config["PORTICO"].smtp_url
    return render_view(
        "operator/outbox.html", block="results", result=result, outbox_only=outbox_only
    )


@bp.get("/outbox/<int:message_id>")
@reader_required
def outbox_detail(message_id: int) -> Response:
    """Headers, the plain-text part and the HTML part (in a sandboxed frame)."""
    detail = outbox_message(db_session(), message_id)
    return render_view(
        "operator/outbox_message.html",
        detail=detail,
        may_send_again=_is_operator(),
    )


@bp.get("/outbox/<int:message_id>/html")
@reader_required
def outbox_html(message_id: int) -> Response:
    """The message's HTML part as its own document, for the detail page's preview frame."""
    html = outbox_message(db_session(), message_id).message.html_body
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = EMAIL_PREVIEW_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/outbox/<int:message_id>/send-again")
@sender_required
def outbox_send_again(message_id: int) -> Response:
    """Reset a failed message to pending, queue its delivery, show it again."""
    send_again(db_session(), message_id)
    enqueue_emails([message_id])
    flash("Queued for sending again.")
    return redirect_to(url_for("operator.outbox_detail", message_id=message_id))
