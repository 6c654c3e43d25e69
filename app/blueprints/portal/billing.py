"""The customer's payment method for a subscription, and "Retry now" after a decline.

The routes are registered on the portal blueprint (``portal.*`` endpoints); its
``routes`` module imports this one. Card fields are tokenized at the boundary
(``app.web.card_entry``); the services only see the token, and check again that the
subscription is the customer's own.
"""

from __future__ import annotations

from typing import Any

from flask import flash, request, url_for
from werkzeug.wrappers import Response

from app.blueprints.portal.routes import bp
from app.domain.errors import Conflict, InvalidInput
from app.domain.money import format_money
from app.extensions import db_session, gateway
from app.services.customer_billing import (
    CustomerSubscription,
    customer_subscription,
    replace_payment_method,
    retry_now,
)
from app.services.portal_methods import method_label
from app.services.widget_payments import FieldErrors
from app.web.auth import acting_user, customer_required
from app.web.card_entry import kept_values, tokenize_from_form
from app.web.htmx import redirect_to, render_view
from app.web.payer import enqueue_after_commit, now_and_today, settings

KEPT_FIELDS = ("name",)


def _page(
    view: CustomerSubscription,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "view": view,
        "values": values or {"name": view.account.name},
        "errors": errors or {},
    }
    return render_view("portal/payment_method.html", status=status, **context)


def _back(subscription_id: int) -> Response:
    # "Retry now" is also offered on the payment methods page; it returns there.
    if request.form.get("back") == "methods":
        return redirect_to(url_for("portal.methods"))
    return redirect_to(url_for("portal.payment_method", subscription_id=subscription_id))


@bp.get("/subscriptions/<int:subscription_id>/payment-method")
@customer_required
def payment_method(subscription_id: int) -> Response:
    """The card a subscription is charged to, a form to replace it, and "Retry now"."""
    return _page(customer_subscription(db_session(), acting_user(), subscription_id))


@bp.post("/subscriptions/<int:subscription_id>/payment-method")
@customer_required
def update_payment_method(subscription_id: int) -> Response:
    session, user = db_session(), acting_user()
    view = customer_subscription(session, user, subscription_id)
    values = kept_values(request.form, KEPT_FIELDS)
    holder = " ".join(request.form.get("name", "").split()) or view.account.name
    try:
        method = tokenize_from_form(gateway(), request.form, kind="card", holder_name=holder)
        saved = replace_payment_method(session, gateway(), user, subscription_id, method)
    except FieldErrors as exc:
        return _page(view, values=values, errors=exc.errors, status=422)
    except InvalidInput as exc:
        errors = {exc.field or "card_number": exc.message}
        return _page(view, values=values, errors=errors, status=422)
    label = method_label(saved)
    if view.can_retry:
        flash(f"{label} saved. Choose “Retry now” to pay what is owed with it.")
    else:
        flash(f"{label} saved: your next payments use it.")
    return _back(subscription_id)


@bp.post("/subscriptions/<int:subscription_id>/retry")
@customer_required
def retry_subscription(subscription_id: int) -> Response:
    """Charge the declined period again, now, with the subscription's payment method."""
    session, user = db_session(), acting_user()
    view = customer_subscription(session, user, subscription_id)
    now, as_of = now_and_today(view.partner.timezone)
    try:
        result = retry_now(
            session,
            gateway(),
            user,
            subscription_id,
            as_of=as_of,
            now=now,
            base_url=settings().base_url,
        )
    except Conflict as exc:
        flash(exc.message, "error")
        return _back(subscription_id)
    enqueue_after_commit(list(result.email_ids))
    if result.status == "charged":
        amount = format_money(result.amount, result.currency)
        flash(f"Payment of {amount} received. Your subscription is active again.")
    elif result.status in ("declined", "error", "no_method"):
        flash(f"The payment was declined: {result.message or 'no reason given'}", "error")
    elif result.status == "not_due":
        flash("Your subscription is active again. Nothing is due today.")
    else:
        flash(
            "Your payment is being confirmed with the processor. Please do not pay again: "
            "this page shows the result shortly."
        )
    return _back(subscription_id)
