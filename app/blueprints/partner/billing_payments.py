"""Payments for partner users: the payment page, refunds, the receipt (resend, print, PDF).

Registered on the partner blueprint by an import at the end of ``routes``; the same
rules as ``billing_docs`` (thin views, tenant-checked services).
"""

from __future__ import annotations

from datetime import date

from flask import flash, make_response, render_template, request, url_for
from werkzeug.wrappers import Response

from app.blueprints.partner.billing_docs import partner_clock
from app.blueprints.partner.routes import bp
from app.domain.errors import Conflict
from app.domain.money import format_plain
from app.extensions import db_session, gateway
from app.services import refunds
from app.services.billing_pages import PaymentDetail, payment_detail, resend_receipt
from app.services.documents import receipt_pdf
from app.web.auth import acting_user, partner_required
from app.web.forms import TIMED_OUT, new_form_token, pdf_response, verified
from app.web.htmx import redirect_to, render_view
from app.web.payer import enqueue_after_commit


def _page(
    detail: PaymentDetail,
    *,
    as_of: date,
    refund_form: refunds.RefundForm | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    payment = detail.payment
    if refund_form is None:
        amount = format_plain(detail.refundable, payment.currency) if detail.refundable else ""
        refund_form = refunds.RefundForm(amount=amount, refunded_on=as_of.isoformat())
    return render_view(
        "partner/payment.html",
        status=status,
        detail=detail,
        payment=payment,
        refund_form=refund_form,
        errors=errors or {},
        refund_token=new_form_token(f"refund:{payment.id}"),
        resend_token=new_form_token(f"resend-receipt:{payment.id}"),
    )


def _back(payment_id: int, problem: str = "") -> Response:
    if problem:
        flash(problem, "error")
    return redirect_to(url_for("partner.payment", payment_id=payment_id))


@bp.get("/payments/<int:payment_id>")
@partner_required
def payment(payment_id: int) -> Response:
    detail = payment_detail(db_session(), acting_user(), payment_id)
    _, as_of = partner_clock(acting_user())
    return _page(detail, as_of=as_of)


@bp.post("/payments/<int:payment_id>/refund")
@partner_required
def refund_payment(payment_id: int) -> Response:
    """Refund through the processor (card, bank) or record a manual refund; once per form."""
    session, user = db_session(), acting_user()
    detail = payment_detail(session, user, payment_id)
    now, as_of = partner_clock(user)
    names = refunds.RefundForm.__dataclass_fields__
    form = refunds.RefundForm(**{name: request.form.get(name, "").strip() for name in names})
    token = verified(f"refund:{payment_id}")
    if token is None:
        return _page(detail, as_of=as_of, refund_form=form, errors={"amount": TIMED_OUT},
                     status=422)  # fmt: skip
    try:
        if detail.payment.kind in refunds.MANUAL_KINDS:
            outcome = refunds.record_manual_refund(
                session, user, payment_id, form, token=token, as_of=as_of, now=now
            )
        else:
            outcome = refunds.refund_payment(
                session, gateway(), user, payment_id, form, token=token, now=now
            )
    except refunds.RefundInvalid as exc:
        detail = payment_detail(session, user, payment_id)
        return _page(detail, as_of=as_of, refund_form=form, errors=exc.errors, status=422)
    except Conflict as exc:
        return _back(payment_id, exc.message)
    enqueue_after_commit(outcome.email_ids)
    if not outcome.created:
        flash(f"This refund was already submitted; nothing was refunded twice. {outcome.message}")
    elif outcome.approved:
        flash(outcome.message)
    else:
        flash(outcome.message, "error")
    return _back(payment_id)


@bp.post("/payments/<int:payment_id>/resend")
@partner_required
def resend_payment_receipt(payment_id: int) -> Response:
    session, user = db_session(), acting_user()
    payment_detail(session, user, payment_id)
    now, _ = partner_clock(user)
    token = verified(f"resend-receipt:{payment_id}")
    if token is None:
        return _back(payment_id, TIMED_OUT)
    try:
        email_ids = resend_receipt(session, user, payment_id, nonce=token.nonce, now=now)
    except Conflict as exc:
        return _back(payment_id, exc.message)
    enqueue_after_commit(email_ids)
    flash("Receipt sent again.")
    return _back(payment_id)


@bp.get("/payments/<int:payment_id>/print")
@partner_required
def print_receipt(payment_id: int) -> Response:
    detail = payment_detail(db_session(), acting_user(), payment_id)
    return make_response(render_template("print/receipt.html", detail=detail))


@bp.get("/payments/<int:payment_id>/pdf")
@partner_required
def receipt_pdf_file(payment_id: int) -> Response:
    detail = payment_detail(db_session(), acting_user(), payment_id)
    return pdf_response(receipt_pdf(detail), f"receipt-{detail.reference}.pdf")
