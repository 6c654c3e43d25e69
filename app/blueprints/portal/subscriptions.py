"""PLACEHOLDER (being replaced): the customer's subscriptions and the self-service catalog."""

from __future__ import annotations

from werkzeug.wrappers import Response

from app.blueprints.portal.routes import bp
from app.web.auth import customer_required
from app.web.htmx import render_view


@bp.get("/subscriptions")
@customer_required
def subscriptions() -> Response:
    return render_view("portal/_todo.html", heading="Subscriptions")


@bp.get("/catalog")
@customer_required
def catalog() -> Response:
    return render_view("portal/_todo.html", heading="Join or give")
