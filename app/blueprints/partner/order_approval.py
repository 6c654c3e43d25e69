"""Partner actions on an order's customer approval: send or re-send it, see the signature."""

from __future__ import annotations

from flask import flash, make_response, url_for
from werkzeug.wrappers import Response

from app.blueprints.partner.routes import bp
from app.clock import local_day, utcnow
from app.domain.errors import Conflict, Forbidden, InvalidInput
from app.extensions import db_session
from app.services import order_approval
from app.services.tenancy import partner_of
from app.web.auth import acting_user, partner_required
from app.web.htmx import redirect_to
from app.web.payer import enqueue_after_commit, settings


@bp.post("/orders/<int:order_id>/send-for-approval")
@partner_required
def send_order_for_approval(order_id: int) -> Response:
    """Email the customer a new approval link (earlier links stop working); back to the order.

    A refusal (a setting, an empty order, a status that cannot be sent) is flashed as an
    error on the order page; another partner's order is 404.
    """
    back = url_for("partner.order", order_id=order_id)
    try:
        order, email_ids = order_approval.send_for_approval(
            db_session(), acting_user(), order_id, now=utcnow(),
            base_url=settings().base_url, secret=settings().secret_key,
        )  # fmt: skip
    except (Forbidden, Conflict, InvalidInput) as exc:
        db_session().rollback()
        flash(exc.message, "error")
        return redirect_to(back)
    enqueue_after_commit(email_ids)
    until = ""
    if order.approval_expires_at is not None:
        partner = partner_of(db_session(), acting_user())
        on = local_day(partner.timezone, order.approval_expires_at)
        until = f" The link works until {on:%b} {on.day}, {on.year}."
    flash(f"Order {order.number} was sent to the customer for approval.{until}")
    return redirect_to(back)


@bp.get("/orders/<int:order_id>/signature.png")
@partner_required
def order_signature(order_id: int) -> Response:
    """The customer's drawn signature of the order (404 when none, or another partner's)."""
    png = order_approval.signature_png(db_session(), acting_user(), order_id)
    response = make_response(png)
    response.mimetype = "image/png"
    response.headers["Cache-Control"] = "private, no-store"
    return response
