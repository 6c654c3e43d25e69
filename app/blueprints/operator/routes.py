"""The operator's console: partners."""

from __future__ import annotations

from flask import Blueprint
from werkzeug.wrappers import Response

from app.extensions import db_session
from app.services.directory import list_partners
from app.web.auth import operator_required
from app.web.htmx import render_view

bp = Blueprint("operator", __name__, url_prefix="/operator")


@bp.get("/")
@operator_required
def partners() -> Response:
    return render_view("operator/partners.html", rows=list_partners(db_session()))


from app.blueprints.operator import audit as _audit  # noqa: E402,F401  (registers the audit trail)
from app.blueprints.operator import outbox as _outbox  # noqa: E402,F401  (registers the outbox pages)
from app.blueprints.operator import runs as _runs  # noqa: E402,F401  (registers the billing-run pages)
