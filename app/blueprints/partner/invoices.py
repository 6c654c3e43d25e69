"""Partner actions on invoices: (re)generating a pay link."""

from __future__ import annotations

from flask import flash, url_for
from werkzeug.wrappers import Response

from app.blueprints.partner.routes import bp
from app.clock import utcnow
from app.extensions import db_session
from app.models import Invoice
from app.services import pay_links
from app.services.directory import account_overview
from app.web.auth import acting_user, partner_required
from app.web.htmx import is_htmx, redirect_to, render_view
from app.web.payer import settings


@bp.post("/invoices/<int:invoice_id>/pay-link")
@partner_required
def regenerate_pay_link(invoice_id: int) -> Response:
    """Make a new pay link for the invoice; the previous link stops working."""
    session = db_session()
    user = acting_user()
    link = pay_links.regenerate_link(session, user, invoice_id, now=utcnow())
    invoice = session.get(Invoice, link.invoice_id)
    assert invoice is not None
    token = pay_links.token_for(settings().secret_key, link)
    new_link = {
        "number": invoice.number,
        "url": settings().base_url + url_for("pay.pay", token=token),
        "embed_url": settings().base_url + url_for("components.pay_now", token=token),
        "expires_on": link.expires_at.strftime("%b %-d, %Y"),
    }
    if not is_htmx():
        # Post/redirect/get: reloading the page must not make yet another link.
        flash(new_link, "pay_link")
        return redirect_to(url_for("partner.customer", customer_id=invoice.customer_account_id))
    overview = account_overview(session, user, invoice.customer_account_id)
    return render_view(
        "partner/customer.html", block="pay_link_result", overview=overview, new_link=new_link
    )
