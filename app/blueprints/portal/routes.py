"""The customer's self-service portal."""

from __future__ import annotations

from flask import Blueprint, url_for
from werkzeug.wrappers import Response

from app.extensions import db_session
from app.services import form_tokens, pay_links
from app.services.portal_pages import dashboard
from app.web.auth import acting_user, customer_required
from app.web.htmx import render_view
from app.web.pay_flow import form_subject, submit_invoice_payment
from app.web.payer import settings

bp = Blueprint("portal", __name__, url_prefix="/portal")


@bp.get("/")
@customer_required
def account() -> Response:
    """The dashboard: balance due, open invoices with Pay now, upcoming payments, recent
    payments, and an alert for a subscription whose payment failed."""
    return render_view("portal/account.html", view=dashboard(db_session(), acting_user()))


def _pay_page(view, *, values=None, errors=None, outcome=None, message="", status=200):  # noqa: ANN001, ANN202
    return render_view(
        "portal/pay.html",
        block="widget",
        status=status,
        view=view,
        token=form_tokens.issue(settings().secret_key, form_subject(view)),
        values=values or {},
        errors=errors or {},
        outcome=outcome,
        message=message,
        saved_methods=pay_links.saved_methods(db_session(), view, acting_user()),
        action=url_for("portal.pay_invoice", invoice_id=view.invoice.id),
    )


@bp.get("/invoices/<int:invoice_id>/pay")
@customer_required
def pay_invoice(invoice_id: int) -> Response:
    """The pay-now component for one of the customer's own invoices (inline with htmx)."""
    return _pay_page(pay_links.invoice_view(db_session(), acting_user(), invoice_id))


@bp.post("/invoices/<int:invoice_id>/pay")
@customer_required
def submit_payment(invoice_id: int) -> Response:
    session = db_session()
    view = pay_links.invoice_view(session, acting_user(), invoice_id)
    saved = pay_links.saved_methods(session, view, acting_user())
    return submit_invoice_payment(session, view, saved_methods=saved, render=_pay_page)


# The other portal pages register their routes on ``bp`` when imported.
from app.blueprints.portal import billing as _billing  # noqa: E402,F401
from app.blueprints.portal import documents as _documents  # noqa: E402,F401
from app.blueprints.portal import methods as _methods  # noqa: E402,F401
from app.blueprints.portal import scheduled as _scheduled  # noqa: E402,F401
from app.blueprints.portal import subscriptions as _subscriptions  # noqa: E402,F401
