"""PLACEHOLDER (being replaced): the customer's invoices and payments pages."""

from __future__ import annotations

from werkzeug.wrappers import Response

from app.blueprints.portal.routes import bp
from app.web.auth import customer_required
from app.web.htmx import render_view


@bp.get("/invoices")
@customer_required
def invoices() -> Response:
    return render_view("portal/_todo.html", heading="Invoices")


@bp.get("/invoices/<int:invoice_id>")
@customer_required
def invoice(invoice_id: int) -> Response:
    return render_view("portal/_todo.html", heading="Invoice")


@bp.get("/payments")
@customer_required
def payments() -> Response:
    return render_view("portal/_todo.html", heading="Payments")


@bp.get("/payments/<int:payment_id>")
@customer_required
def payment(payment_id: int) -> Response:
    return render_view("portal/_todo.html", heading="Payment")
