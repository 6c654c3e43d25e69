"""PLACEHOLDER (being replaced): the customer's payment methods page."""

from __future__ import annotations

from werkzeug.wrappers import Response

from app.blueprints.portal.routes import bp
from app.web.auth import customer_required
from app.web.htmx import render_view


@bp.get("/payment-methods")
@customer_required
def methods() -> Response:
    return render_view("portal/_todo.html", heading="Payment methods")
