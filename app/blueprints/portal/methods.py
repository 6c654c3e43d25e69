"""The customer's payment methods page: list, add, make default, remove.

The routes are registered on the portal blueprint (``portal.*`` endpoints); its
``routes`` module imports this one. Card and bank fields are tokenized at the boundary
(``app.web.card_entry``); the service (``app.services.portal_methods``) only sees the
token and checks again that every method is the customer's own.
"""

from __future__ import annotations

from flask import flash, request, url_for
from sqlmodel import Session
from werkzeug.wrappers import Response

from app.blueprints.portal.routes import bp
from app.domain.errors import Conflict, InvalidInput
from app.extensions import db_session, gateway
from app.models import Subscription, User
from app.services import portal_methods as service
from app.services.widget_payments import FieldErrors
from app.web.auth import acting_user, customer_required
from app.web.card_entry import chosen_kind, kept_values, tokenize_from_form
from app.web.htmx import redirect_to, render_view
from app.web.payer import now_and_today

KEPT_FIELDS = ("name", "method", "make_default")


def _page(
    session: Session,
    user: User,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    partner = service.partner_of_customer(session, user)  # type: ignore[arg-type]
    _, today = now_and_today(partner.timezone)
    page = service.methods_page(session, user, as_of=today)  # type: ignore[arg-type]
    if values is None:
        values = {"name": page.account.name, "method": "card"}
        if not page.rows:
            values["make_default"] = "1"
    return render_view(
        "portal/methods.html",
        status=status,
        page=page,
        values=values,
        errors=errors or {},
        accept_bank=page.partner.currency == "USD",
    )


def _retry_hint(in_error: list[Subscription]) -> str:
    if not in_error:
        return ""
    names = ", ".join(s.description for s in in_error)
    return f" Choose “Retry now” to pay what is owed for {names}."


def _back() -> Response:
    return redirect_to(url_for("portal.methods"))


@bp.get("/payment-methods")
@customer_required
def methods() -> Response:
    """The customer's cards and bank accounts, what each pays for, and a form to add one."""
    return _page(db_session(), acting_user())


@bp.post("/payment-methods")
@customer_required
def add_method() -> Response:
    """Tokenize the posted card or bank account and save it to the customer's account."""
    session, user = db_session(), acting_user()
    values = kept_values(request.form, KEPT_FIELDS)
    currency = service.partner_of_customer(session, user).currency
    kind = chosen_kind(request.form, accept_card=True, accept_bank=currency == "USD")
    values["method"] = kind
    holder = " ".join(request.form.get("name", "").split())
    missing = {} if holder else {"name": "Enter the name on the card or bank account."}
    try:
        method = tokenize_from_form(gateway(), request.form, kind=kind, holder_name=holder)
        if missing:  # every bad field at once: the token just made stays unused
            raise FieldErrors(missing)
        change = service.add_method(
            session,
            gateway(),
            user,
            method,
            holder_name=holder,
            make_default=request.form.get("make_default") == "1",
        )
    except FieldErrors as exc:
        errors = missing | exc.errors
        return _page(session, user, values=values, errors=errors, status=422)
    except InvalidInput as exc:
        errors = {exc.field or "form": exc.message}
        return _page(session, user, values=values, errors=errors, status=422)
    default = " It is now your default payment method." if change.is_default else ""
    flash(f"{change.label} saved.{default}{_retry_hint(change.in_error)}")
    return _back()


@bp.post("/payment-methods/<int:method_id>/default")
@customer_required
def make_default_method(method_id: int) -> Response:
    """Make one of the customer's methods the default (404 for anyone else's)."""
    change = service.make_default(db_session(), acting_user(), method_id)
    flash(f"{change.label} is now your default payment method.{_retry_hint(change.in_error)}")
    return _back()


@bp.post("/payment-methods/<int:method_id>/remove")
@customer_required
def remove_method(method_id: int) -> Response:
    """Remove a method, or say why not (409, nothing changed)."""
    session, user = db_session(), acting_user()
    try:
        removed = service.remove_method(session, gateway(), user, method_id)
    except Conflict as exc:
        flash(exc.message, "error")
        return _page(session, user, status=409)
    promoted = ""
    if removed.new_default is not None and removed.new_default_promoted:
        promoted = f" {service.method_label(removed.new_default)} is now your default."
    flash(f"{removed.label} removed.{promoted}")
    return _back()
