"""The partner portal: customers and their accounts."""

from __future__ import annotations

from flask import Blueprint, request
from werkzeug.wrappers import Response

from app.extensions import db_session
from app.services.directory import account_overview, list_customers
from app.services.tenancy import partner_of
from app.web.auth import acting_user, partner_required
from app.web.htmx import render_view

bp = Blueprint("partner", __name__, url_prefix="/partner")


@bp.get("/")
@partner_required
def customers() -> Response:
    user = acting_user()
    search = request.args.get("q", "")[:100]
    page = request.args.get("page", 1, type=int) or 1
    session = db_session()
    return render_view(
        "partner/customers.html",
        block="customer_table",
        partner=partner_of(session, user),
        result=list_customers(session, user, search=search, page=page),
        search=search,
    )


@bp.get("/customers/<int:customer_id>")
@partner_required
def customer(customer_id: int) -> Response:
    overview = account_overview(db_session(), acting_user(), customer_id)
    return render_view("partner/customer.html", overview=overview)


from app.blueprints.partner import invoices as _invoices  # noqa: E402,F401  (registers the invoice routes)
from app.blueprints.partner import settings as _settings  # noqa: E402,F401  (registers the settings routes)
from app.blueprints.partner import subscriptions as _subscriptions  # noqa: E402,F401  (registers the subscription routes)
