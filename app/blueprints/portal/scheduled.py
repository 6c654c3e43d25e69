"""PLACEHOLDER (being replaced): scheduling an invoice payment for a later day."""

from __future__ import annotations

from werkzeug.wrappers import Response

from app.blueprints.portal.routes import bp
from app.web.auth import customer_required
from app.web.htmx import render_view


@bp.get("/invoices/<int:invoice_id>/schedule")
@customer_required
def schedule_payment(invoice_id: int) -> Response:
    return render_view("portal/_todo.html", heading="Schedule a payment")


@bp.post("/scheduled-payments/<int:scheduled_id>/cancel")
@customer_required
def cancel_scheduled_payment(scheduled_id: int) -> Response:
    return render_view("portal/_todo.html", heading="Scheduled payment")
