"""The audit trail: who did what to money and permissions, filterable by the operator.

Operators only (others get 404, anonymous users sign in). A plain GET form filters the
list, so it works without JavaScript; with htmx the ``results`` block is swapped alone.
"""

from __future__ import annotations

from flask import request
from werkzeug.wrappers import Response

from app.blueprints.operator.routes import bp
from app.domain.errors import FieldsInvalid
from app.extensions import db_session
from app.services.audit_log import AuditFilters, list_events, parse_filters
from app.web.auth import operator_required
from app.web.htmx import render_view


@bp.get("/audit")
@operator_required
def audit() -> Response:
    """The newest events first, 50 a page, filtered by the query string's fields."""
    session = db_session()
    page = request.args.get("page", 1, type=int) or 1
    try:
        filters = parse_filters(request.args)
    except FieldsInvalid as exc:
        result = list_events(session, AuditFilters(), page=1)
        return render_view(
            "operator/audit.html", block="results", status=422, result=result,
            errors=exc.errors, values=request.args,
        )  # fmt: skip
    result = list_events(session, filters, page=page)
    return render_view(
        "operator/audit.html", block="results", result=result, errors={}, values=request.args
    )
