"""Invoices for partner users: issue by hand, the invoice page, cancel, record a payment,
resend, print and PDF.

Registered on the partner blueprint (``partner.*`` endpoints) by an import at the end of
``routes``. Views parse input, call one service and choose the response; services check
the role and the tenant and own the transaction. Every view loads its record through a
tenant-checked service first, so a block rendered alone for htmx skips no check.
"""

from __future__ import annotations

from datetime import date, datetime

from flask import flash, make_response, render_template, request, url_for
from werkzeug.wrappers import Response

from app.blueprints.partner.routes import bp
from app.domain.errors import Conflict
from app.domain.ids import parse_id
from app.domain.money import format_plain
from app.extensions import db_session
from app.models import User
from app.services import invoice_admin
from app.services.billing_pages import InvoiceDetail, invoice_detail
from app.services.documents import invoice_pdf
from app.services.dunning_timeline import timeline_for
from app.services.invoice_forms import InvoiceForm, InvoiceInvalid, preview_totals
from app.services.manual_payments import (
    MANUAL_KINDS,
    ManualPaymentForm,
    ManualPaymentInvalid,
    record_manual_payment,
)
from app.services.tenancy import partner_of
from app.web.auth import acting_user, partner_required
from app.web.forms import TIMED_OUT, new_form_token, pdf_response, verified
from app.web.htmx import redirect_to, render_view
from app.web.payer import enqueue_after_commit, now_and_today, settings


def partner_clock(user: User) -> tuple[datetime, date]:
    """Now, and today in the user's partner's timezone (the request's one clock read)."""
    return now_and_today(partner_of(db_session(), user).timezone)


def _links() -> invoice_admin.Links:
    return invoice_admin.Links(secret=settings().secret_key, base_url=settings().base_url)


# -- issuing an invoice by hand ------------------------------------------------------------


def _invoice_form() -> InvoiceForm:
    form = request.form
    return InvoiceForm.from_fields(
        issue_date=form.get("issue_date", ""),
        due_date=form.get("due_date", ""),
        memo=form.get("memo", ""),
        descriptions=form.getlist("description"),
        quantities=form.getlist("quantity"),
        unit_prices=form.getlist("unit_price"),
    )


def _form_page(
    customer_id: int,
    form: InvoiceForm,
    *,
    block: str | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    session, user = db_session(), acting_user()
    account, partner, rate = invoice_admin.invoice_context(session, user, customer_id)
    totals = preview_totals(form, currency=account.currency, rate_bp=rate)
    return render_view(
        "partner/invoice_form.html",
        block=block,
        status=status,
        account=account,
        partner=partner,
        rate_bp=rate,
        form=form,
        totals=totals,
        errors=errors or {},
        new_url=url_for("partner.new_invoice", customer_id=account.id),
        preview_url=url_for("partner.preview_invoice", customer_id=account.id),
    )


@bp.route("/customers/<int:customer_id>/invoices/new", methods=["GET", "POST"])
@partner_required
def new_invoice(customer_id: int) -> Response:
    """The invoice form; posting it issues the invoice (or, without JavaScript, edits lines)."""
    session, user = db_session(), acting_user()
    now, as_of = partner_clock(user)
    if request.method == "GET":
        return _form_page(customer_id, InvoiceForm.blank(as_of))
    form = _invoice_form()
    op = request.form.get("op", "")
    if op:  # "Add line" / "Remove" without JavaScript: redraw the form, save nothing
        return _form_page(customer_id, _edit_lines(form, op))
    try:
        issued = invoice_admin.issue_invoice(
            session, user, customer_id, form, as_of=as_of, now=now, links=_links()
        )
    except InvoiceInvalid as exc:
        return _form_page(customer_id, form, errors=exc.errors, status=422)
    enqueue_after_commit(issued.email_ids)
    invoice = issued.invoice
    flash(f"Invoice {invoice.number} issued and emailed to {invoice.billing_email}.")
    return redirect_to(url_for("partner.invoice", invoice_id=invoice.id))


def _edit_lines(form: InvoiceForm, op: str) -> InvoiceForm:
    if op == "add":
        return form.with_line_added()
    index = parse_id(op[7:]) if op.startswith("remove-") else None
    if index is not None:
        return form.without_line(index)
    return form


@bp.post("/customers/<int:customer_id>/invoices/preview")
@partner_required
def preview_invoice(customer_id: int) -> Response:
    """Live totals while typing (htmx), or the lines after "Add line" / "Remove"."""
    form = _invoice_form()
    op = request.args.get("op", "")
    if op:
        return _form_page(customer_id, _edit_lines(form, op), block="invoice_lines")
    return _form_page(customer_id, form, block="invoice_totals")


# -- the invoice page ----------------------------------------------------------------------


def _invoice_page(
    detail: InvoiceDetail,
    *,
    as_of: date,
    payment_form: ManualPaymentForm | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    invoice = detail.invoice
    if payment_form is None:
        balance = format_plain(max(invoice.balance, 0), invoice.currency)
        payment_form = ManualPaymentForm(amount=balance, received_on=as_of.isoformat())
    return render_view(
        "partner/invoice.html",
        status=status,
        detail=detail,
        invoice=invoice,
        timeline=timeline_for(db_session(), invoice, as_of=as_of),
        payment_form=payment_form,
        errors=errors or {},
        kinds=MANUAL_KINDS,
        as_of=as_of,
        payment_token=new_form_token(f"manual-payment:{invoice.id}"),
        resend_token=new_form_token(f"resend-invoice:{invoice.id}"),
    )


def _back(invoice_id: int, problem: str = "") -> Response:
    if problem:
        flash(problem, "error")
    return redirect_to(url_for("partner.invoice", invoice_id=invoice_id))


@bp.get("/invoices/<int:invoice_id>")
@partner_required
def invoice(invoice_id: int) -> Response:
    session, user = db_session(), acting_user()
    detail = invoice_detail(session, user, invoice_id)
    _, as_of = partner_clock(user)
    return _invoice_page(detail, as_of=as_of)


@bp.post("/invoices/<int:invoice_id>/cancel")
@partner_required
def cancel_invoice(invoice_id: int) -> Response:
    session, user = db_session(), acting_user()
    _, as_of = partner_clock(user)
    try:
        cancellation = invoice_admin.cancel_invoice(session, user, invoice_id, as_of=as_of)
    except Conflict as exc:
        return _back(invoice_id, exc.message)
    flash(f"Invoice canceled. Cancellation invoice {cancellation.number} issued.")
    return _back(invoice_id)


@bp.post("/invoices/<int:invoice_id>/payments")
@partner_required
def record_payment(invoice_id: int) -> Response:
    """Record a check, cash or bank transfer payment of the invoice (once per form)."""
    session, user = db_session(), acting_user()
    detail = invoice_detail(session, user, invoice_id)
    now, as_of = partner_clock(user)
    names = ManualPaymentForm.__dataclass_fields__
    form = ManualPaymentForm(**{name: request.form.get(name, "").strip() for name in names})
    token = verified(f"manual-payment:{invoice_id}")
    if token is None:
        return _invoice_page(detail, as_of=as_of, payment_form=form, status=422,
                             errors={"amount": TIMED_OUT})  # fmt: skip
    try:
        recorded = record_manual_payment(
            session, user, invoice_id, form, token=token, as_of=as_of, now=now
        )
    except ManualPaymentInvalid as exc:
        detail = invoice_detail(session, user, invoice_id)
        return _invoice_page(detail, as_of=as_of, payment_form=form, errors=exc.errors, status=422)
    enqueue_after_commit(recorded.email_ids)
    if recorded.created:
        flash(f"Payment recorded ({recorded.payment.kind.replace('_', ' ')}). Receipt emailed.")
    else:
        flash("This payment was already recorded; it was not counted twice.")
    return _back(invoice_id)


@bp.post("/invoices/<int:invoice_id>/resend")
@partner_required
def resend_invoice(invoice_id: int) -> Response:
    session, user = db_session(), acting_user()
    invoice_detail(session, user, invoice_id)
    now, _ = partner_clock(user)
    token = verified(f"resend-invoice:{invoice_id}")
    if token is None:
        return _back(invoice_id, TIMED_OUT)
    email_ids = invoice_admin.resend_invoice(
        session, user, invoice_id, nonce=token.nonce, now=now, links=_links()
    )
    enqueue_after_commit(email_ids)
    flash("Invoice sent again.")
    return _back(invoice_id)


@bp.get("/invoices/<int:invoice_id>/print")
@partner_required
def print_invoice(invoice_id: int) -> Response:
    detail = invoice_detail(db_session(), acting_user(), invoice_id)
    return make_response(render_template("print/invoice.html", detail=detail))


@bp.get("/invoices/<int:invoice_id>/pdf")
@partner_required
def invoice_pdf_file(invoice_id: int) -> Response:
    detail = invoice_detail(db_session(), acting_user(), invoice_id)
    return pdf_response(invoice_pdf(detail), f"{detail.invoice.number}.pdf")
