"""The customer's self-service portal."""

from __future__ import annotations

from flask import Blueprint
from werkzeug.wrappers import Response

from app.extensions import db_session
from app.services.directory import account_overview
from app.web.auth import acting_user, customer_required
from app.web.htmx import render_view

bp = Blueprint("portal", __name__, url_prefix="/portal")


@bp.get("/")
@customer_required
def account() -> Response:
    return render_view(
        "portal/account.html", overview=account_overview(db_session(), acting_user())
    )
