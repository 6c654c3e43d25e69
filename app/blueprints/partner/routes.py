"""The partner portal: customers and their accounts."""

from __future__ import annotations

from flask import Blueprint, current_app, request
from werkzeug.wrappers import Response

from app.clock import local_today
from app.extensions import db_session
from app.services.account_page import account_page
from app.services.directory import CustomerFilters, list_customers
from app.services.on_behalf import is_eligible
from app.services.tenancy import partner_of
from app.web.auth import acting_user, partner_required
from app.web.htmx import render_view

bp = Blueprint("partner", __name__, url_prefix="/partner")


@bp.get("/")
@partner_required
def customers() -> Response:
    user = acting_user()
    filters = CustomerFilters.from_args(request.args)
    page = request.args.get("page", 1, type=int) or 1
    session = db_session()
    partner = partner_of(session, user)
    as_of = local_today(partner.timezone)
    return render_view(
        "partner/customers.html",
        block="customer_table",
        partner=partner,
        result=list_customers(session, user, as_of=as_of, filters=filters, page=page),
        filters=filters,
    )


@bp.get("/customers/<int:customer_id>")
@partner_required
def customer(customer_id: int) -> Response:
    return customer_page(customer_id, editing=request.args.get("edit_billing_email") == "1")


def customer_page(customer_id: int, *, status: int = 200, **on_behalf: object) -> Response:
    """The account page; ``on_behalf`` is the state of the inline billing-email edit."""
    session = db_session()
    user = acting_user()
    partner = partner_of(session, user)
    overview = account_page(
        session,
        user,
        customer_id,
        as_of=local_today(partner.timezone),
        invoice_page=request.args.get("invoices", 1, type=int) or 1,
    )
    countries = current_app.config["PORTICO"].billing_on_behalf_countries
    start = overview.account.on_behalf_start
    state = {
        "eligible": is_eligible(partner, countries),
        "status": "Active" if start and start <= local_today(partner.timezone) else "Scheduled",
        "editing": False,
        "typed": overview.account.on_behalf_email,
        "error": "",
        **on_behalf,
    }
    return render_view("partner/customer.html", status=status, overview=overview, on_behalf=state)


from app.blueprints.partner import billing_docs as _billing_docs  # noqa: E402,F401  (registers the invoice pages)
from app.blueprints.partner import billing_payments as _billing_payments  # noqa: E402,F401  (registers the payment pages)
from app.blueprints.partner import dashboard as _dashboard  # noqa: E402,F401  (registers the dashboard and CSV exports)
from app.blueprints.partner import invoices as _invoices  # noqa: E402,F401  (registers the invoice routes)
from app.blueprints.partner import on_behalf as _on_behalf  # noqa: E402,F401  (registers the billing-on-behalf wizard)
from app.blueprints.partner import order_approval as _order_approval  # noqa: E402,F401  (registers sending orders for approval and the signature image)
from app.blueprints.partner import orders as _orders  # noqa: E402,F401  (registers the order pages and order settings)
from app.blueprints.partner import portal_settings as _portal_settings  # noqa: E402,F401  (registers the customer portal settings)
from app.blueprints.partner import settings as _settings  # noqa: E402,F401  (registers the settings routes)
from app.blueprints.partner import subscriptions as _subscriptions  # noqa: E402,F401  (registers the subscription routes)
from app.blueprints.partner import users as _users  # noqa: E402,F401  (registers the user management routes)
