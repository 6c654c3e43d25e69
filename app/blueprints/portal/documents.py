"""The customer's invoices and payments: lists with filters, invoice and receipt pages,
printable pages, PDFs, and "Email me" copies.

Registered on the portal blueprint (``portal.*`` endpoints) by an import at the end of
``routes``. Every view loads its record through a customer-scoped service first (another
account's id answers 404 like a missing one), so a block rendered alone for htmx skips
no check. Customers see no partner controls (cancel, record payment, refund, dunning).
"""

from __future__ import annotations

from flask import flash, make_response, render_template, request, url_for
from werkzeug.wrappers import Response

from app.blueprints.portal.routes import bp
from app.domain.errors import Conflict
from app.extensions import db_session
from app.services import portal_emails, portal_pages, portal_payments
from app.services.billing_pages import customer_invoice_detail, customer_payment_detail
from app.services.documents import invoice_pdf as build_invoice_pdf
from app.services.documents import receipt_pdf
from app.services.invoice_admin import Links
from app.web.auth import acting_user, customer_required
from app.web.forms import TIMED_OUT, new_form_token, pdf_response, verified
from app.web.htmx import redirect_to, render_view
from app.web.payer import enqueue_after_commit, now_and_today, settings


def _page_number() -> int:
    return request.args.get("page", default=1, type=int) or 1


# -- invoices --------------------------------------------------------------------------------


@bp.get("/invoices")
@customer_required
def invoices() -> Response:
    """The customer's invoices by status tab (``?status=all|open|overdue|paid|canceled``;
    an unknown value shows All)."""
    result = portal_pages.invoice_list(
        db_session(),
        acting_user(),
        status=request.args.get("status", ""),
        page=_page_number(),
    )
    return render_view(
        "portal/invoices.html",
        block="invoice_list",
        result=result,
        filters=portal_pages.INVOICE_FILTERS,
    )


def _invoice_subject(invoice_id: int) -> str:
    return f"portal-email-invoice:{invoice_id}"


@bp.get("/invoices/<int:invoice_id>")
@customer_required
def invoice(invoice_id: int) -> Response:
    view = portal_pages.portal_invoice(db_session(), acting_user(), invoice_id)
    return render_view(
        "portal/invoice.html",
        view=view,
        detail=view.detail,
        invoice=view.detail.invoice,
        email_token=new_form_token(_invoice_subject(invoice_id)),
    )


@bp.get("/invoices/<int:invoice_id>/print")
@customer_required
def invoice_print(invoice_id: int) -> Response:
    detail = customer_invoice_detail(db_session(), acting_user(), invoice_id)
    back_url = url_for("portal.invoice", invoice_id=invoice_id)
    return make_response(render_template("print/invoice.html", detail=detail, back_url=back_url))


@bp.get("/invoices/<int:invoice_id>/pdf")
@customer_required
def invoice_pdf(invoice_id: int) -> Response:
    detail = customer_invoice_detail(db_session(), acting_user(), invoice_id)
    return pdf_response(build_invoice_pdf(detail), f"{detail.invoice.number}.pdf")


@bp.post("/invoices/<int:invoice_id>/email")
@customer_required
def email_invoice(invoice_id: int) -> Response:
    """Email the invoice to the customer's own address, once per rendered form."""
    session, user = db_session(), acting_user()
    detail = customer_invoice_detail(session, user, invoice_id)
    back = url_for("portal.invoice", invoice_id=invoice_id)
    token = verified(_invoice_subject(invoice_id))
    if token is None:
        flash(TIMED_OUT, "error")
        return redirect_to(back)
    now, _ = now_and_today(detail.partner.timezone)
    links = Links(secret=settings().secret_key, base_url=settings().base_url)
    sent = portal_emails.email_invoice(
        session, user, invoice_id, nonce=token.nonce, now=now, links=links
    )
    enqueue_after_commit(sent.email_ids)
    flash(f"Invoice {sent.what} emailed to {sent.to_address}.")
    return redirect_to(back)


# -- payments --------------------------------------------------------------------------------


@bp.get("/payments")
@customer_required
def payments() -> Response:
    """Payment history, newest first; ``?from=&to=`` (YYYY-MM-DD, partner-local days,
    both included). Bad dates redraw the form with the field at fault (422)."""
    session, user = db_session(), acting_user()
    values = {name: request.args.get(name, "").strip() for name in ("from", "to")}
    try:
        days = portal_payments.parse_range(request.args)
    except portal_payments.RangeInvalid as exc:
        return render_view(
            "portal/payments.html",
            block="history",
            status=422,
            history=None,
            values=values,
            errors=exc.errors,
        )
    history = portal_payments.payment_history(session, user, days=days, page=_page_number())
    return render_view(
        "portal/payments.html", block="history", history=history, values=values, errors={}
    )


def _receipt_subject(payment_id: int) -> str:
    return f"portal-email-receipt:{payment_id}"


@bp.get("/payments/<int:payment_id>")
@customer_required
def payment(payment_id: int) -> Response:
    """The receipt page; a declined payment shows its reason and no receipt actions."""
    detail = customer_payment_detail(db_session(), acting_user(), payment_id)
    return render_view(
        "portal/payment.html",
        detail=detail,
        payment=detail.payment,
        email_token=new_form_token(_receipt_subject(payment_id)),
    )


@bp.get("/payments/<int:payment_id>/print")
@customer_required
def payment_print(payment_id: int) -> Response:
    detail = portal_payments.portal_receipt(db_session(), acting_user(), payment_id)
    back_url = url_for("portal.payment", payment_id=payment_id)
    return make_response(render_template("print/receipt.html", detail=detail, back_url=back_url))


@bp.get("/payments/<int:payment_id>/pdf")
@customer_required
def payment_pdf(payment_id: int) -> Response:
    detail = portal_payments.portal_receipt(db_session(), acting_user(), payment_id)
    return pdf_response(receipt_pdf(detail), f"receipt-{detail.reference}.pdf")


@bp.post("/payments/<int:payment_id>/email")
@customer_required
def email_receipt(payment_id: int) -> Response:
    """Email the receipt to the customer's own address, once per rendered form."""
    session, user = db_session(), acting_user()
    customer_payment_detail(session, user, payment_id)
    back = url_for("portal.payment", payment_id=payment_id)
    token = verified(_receipt_subject(payment_id))
    if token is None:
        flash(TIMED_OUT, "error")
        return redirect_to(back)
    try:
        sent = portal_emails.email_receipt(session, user, payment_id, nonce=token.nonce)
    except Conflict as exc:
        flash(exc.message, "error")
        return redirect_to(back)
    enqueue_after_commit(sent.email_ids)
    flash(f"Receipt {sent.what} emailed to {sent.to_address}.")
    return redirect_to(back)
