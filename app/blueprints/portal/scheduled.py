"""Scheduling an open invoice's payment for a later day, and canceling it before then.

The routes are registered on the portal blueprint (``portal.*`` endpoints); its
``routes`` module imports this one. The rules live in
:mod:`app.services.payment_scheduling`; the billing run of the chosen day charges the
payment (:mod:`app.services.scheduled_payments`).
"""

from __future__ import annotations

from typing import Any

from flask import flash, request, url_for
from werkzeug.wrappers import Response

from app.blueprints.portal.routes import bp
from app.domain.errors import FieldsInvalid
from app.domain.money import format_money, format_plain
from app.extensions import db_session
from app.services import form_tokens
from app.services import payment_scheduling as scheduling
from app.services.form_tokens import FormTokenExpired
from app.web.auth import acting_user, customer_required
from app.web.htmx import redirect_to, render_view
from app.web.payer import enqueue_after_commit, now_and_today, settings

KEPT_FIELDS = ("pay_on", "amount", "payment_method_id")


def _page(
    form: scheduling.ScheduleForm,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    message: str = "",
    status: int = 200,
) -> Response:
    default = form.default_method
    context: dict[str, Any] = {
        "form": form,
        "token": form_tokens.issue(
            settings().secret_key,
            scheduling.form_subject(form.invoice.id),  # type: ignore[arg-type]
        ),
        "values": values
        or {
            "pay_on": "",
            "amount": format_plain(form.available, form.invoice.currency),
            "payment_method_id": str(default.id) if default else "",
        },
        "errors": errors or {},
        "message": message,
        "past_due_message": scheduling.past_due_message(form) if form.past_due else "",
    }
    return render_view("portal/schedule.html", status=status, **context)


def _form(invoice_id: int) -> tuple[scheduling.ScheduleForm, Any, Any]:
    """The schedule form of the customer's invoice, with the request's instant and day."""
    session, user = db_session(), acting_user()
    now, as_of = now_and_today(scheduling.own_partner(session, user).timezone)
    return scheduling.schedule_form(session, user, invoice_id, as_of=as_of), now, as_of


@bp.get("/invoices/<int:invoice_id>/schedule")
@customer_required
def schedule_payment(invoice_id: int) -> Response:
    """The form to pay one of the customer's open invoices on a later day."""
    form, _now, _as_of = _form(invoice_id)
    return _page(form)


@bp.post("/invoices/<int:invoice_id>/schedule")
@customer_required
def create_scheduled_payment(invoice_id: int) -> Response:
    form, now, as_of = _form(invoice_id)
    if form.past_due:  # no day is left to choose: say so, and offer Pay now
        return _page(form, status=409)
    values = {name: request.form.get(name, "") for name in KEPT_FIELDS}
    try:
        token = form_tokens.verify(
            settings().secret_key,
            request.form.get("token", ""),
            subject=scheduling.form_subject(invoice_id),
        )
    except FormTokenExpired as exc:
        return _page(form, values=values, message=exc.message, status=422)
    data = scheduling.ScheduleInput(**values)
    try:
        made = scheduling.schedule_payment(
            db_session(), acting_user(), invoice_id, data, token=token, as_of=as_of, now=now,
            base_url=settings().base_url,
        )  # fmt: skip
    except FieldsInvalid as exc:
        return _page(form, values=values, errors=exc.errors, status=422)
    enqueue_after_commit(list(made.email_ids))
    flash(made.summary)
    return redirect_to(url_for("portal.invoice", invoice_id=invoice_id))


@bp.post("/scheduled-payments/<int:scheduled_id>/cancel")
@customer_required
def cancel_scheduled_payment(scheduled_id: int) -> Response:
    """Cancel a scheduled payment that still waits for its day (409 once it does not)."""
    session, user = db_session(), acting_user()
    now, _as_of = now_and_today(scheduling.own_partner(session, user).timezone)
    row = scheduling.cancel_scheduled_payment(session, user, scheduled_id, now=now)
    amount = format_money(row.amount, row.currency)
    flash(f"The payment of {amount} scheduled for {row.pay_on:%b %-d, %Y} is canceled.")
    return redirect_to(url_for("portal.invoice", invoice_id=row.invoice_id))
