"""The customer's subscriptions, canceling one at the end of its period, and the
self-service catalog (join a membership or start a recurring gift).

The routes are registered on the portal blueprint (``portal.*`` endpoints); its
``routes`` module imports this one. Views parse input, call one service and choose the
response; every service checks again that the records are the customer's own. Card
fields are tokenized at the boundary (``app.web.card_entry``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Final

from flask import flash, request, url_for
from werkzeug.wrappers import Response

from app.blueprints.portal.routes import bp
from app.domain.errors import Conflict, FieldsInvalid, Forbidden, InvalidInput
from app.domain.ids import parse_id
from app.domain.money import format_plain
from app.extensions import db_session, gateway
from app.models import Partner
from app.services import form_tokens
from app.services.card_testing import TooManyDeclines
from app.services.portal_catalog import JoinOutcome, MethodChoice, join, replay
from app.services.portal_products import (
    JoinInput,
    JoinPage,
    catalog,
    join_page,
    join_terms,
    member_message,
)
from app.services.portal_subscriptions import (
    cancel_at_period_end,
    cancel_plan,
    subscriptions_page,
)
from app.services.tenancy import own_account
from app.services.widget_payments import FieldErrors
from app.web.auth import acting_user, customer_required
from app.web.card_entry import kept_values, tokenize_from_form
from app.web.htmx import redirect_to, render_view
from app.web.payer import (
    client_address,
    decline_limit,
    enqueue_after_commit,
    now_and_today,
    settings,
)

JOIN_FIELDS: Final = ("amount", "frequency", "saved_method", "name")


def _clock() -> tuple[datetime, date]:
    """Now, and today in the customer's partner's timezone (the request's clock read)."""
    session = db_session()
    account = own_account(session, acting_user())
    partner = session.get(Partner, account.partner_id)
    assert partner is not None
    return now_and_today(partner.timezone)


def _list(*, problem: str = "", status: int = 200) -> Response:
    """The list page; a refusal (``problem``) asked for by htmx gets only its message."""
    page = subscriptions_page(db_session(), acting_user())
    return render_view(
        "portal/subscriptions.html",
        block="problem" if problem else None,
        status=status,
        page=page,
        problem=problem,
    )


@bp.get("/subscriptions")
@customer_required
def subscriptions() -> Response:
    """Every subscription of the customer: schedule, amount, stop rule, status, method."""
    return _list()


@bp.get("/subscriptions/<int:subscription_id>/cancel")
@customer_required
def subscription_cancel_confirm(subscription_id: int) -> Response:
    """The confirmation step: what canceling at period end does (a block for htmx)."""
    _, as_of = _clock()
    try:
        plan = cancel_plan(db_session(), acting_user(), subscription_id, as_of=as_of)
    except (Forbidden, Conflict) as exc:
        return _list(problem=exc.message, status=exc.status_code)
    return render_view("portal/cancel_subscription.html", block="confirm", plan=plan)


@bp.post("/subscriptions/<int:subscription_id>/cancel")
@customer_required
def cancel_subscription(subscription_id: int) -> Response:
    now, as_of = _clock()
    try:
        done = cancel_at_period_end(
            db_session(), acting_user(), subscription_id, now=now, as_of=as_of
        )
    except (Forbidden, Conflict) as exc:
        return _list(problem=exc.message, status=exc.status_code)
    enqueue_after_commit(list(done.email_ids))
    flash(f"Canceled. {done.sentence}")
    return redirect_to(url_for("portal.subscriptions"))


# -- the catalog ----------------------------------------------------------------------------


@bp.get("/catalog", endpoint="catalog")
@customer_required
def catalog_page() -> Response:
    """The partner's memberships and recurring gifts the customer may start themselves."""
    return render_view("portal/catalog.html", catalog=catalog(db_session(), acting_user()))


def _subject(page: JoinPage) -> str:
    return f"join:{page.account.id}:{page.item.product.id}"


def _join_form(
    page: JoinPage,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    message: str = "",
    status: int = 200,
) -> Response:
    frequency = str(page.item.product.frequency)
    if frequency not in page.frequencies:
        frequency = page.frequencies[0]
    defaults = {"frequency": frequency, "name": page.account.name}
    if page.item.donation:
        defaults["amount"] = format_plain(page.item.price, page.item.currency)
    context: dict[str, Any] = {
        "page": page,
        "token": form_tokens.issue(settings().secret_key, _subject(page)),
        "values": values if values is not None else defaults,
        "errors": errors or {},
        "message": message,
    }
    return render_view("portal/join.html", status=status, **context)


@bp.get("/catalog/<int:product_id>")
@customer_required
def catalog_product(product_id: int) -> Response:
    """The sign-up form of one catalog product: amount and frequency for a gift, and the
    payment method that pays the first period now."""
    return _join_form(join_page(db_session(), acting_user(), product_id))


@bp.post("/catalog/<int:product_id>", endpoint="join")
@customer_required
def join_product(product_id: int) -> Response:
    session, user = db_session(), acting_user()
    page = join_page(session, user, product_id)
    form = request.form
    values = kept_values(form, JOIN_FIELDS)
    try:
        token = form_tokens.verify(
            settings().secret_key, form.get("token", ""), subject=_subject(page)
        )
    except (form_tokens.FormTokenExpired, form_tokens.FormTokenInvalid) as exc:
        return _join_form(page, values=values, message=exc.message, status=exc.status_code)
    outcome = replay(session, token)
    if outcome is None:
        data = JoinInput(amount=form.get("amount", ""), frequency=form.get("frequency", ""))
        now, as_of = now_and_today(page.partner.timezone)
        if page.item.is_member:
            return _join_form(
                page, values=values, message=member_message(page.item.product), status=409
            )
        try:
            join_terms(page, data)  # the gift's fields first: card data is never kept
            outcome = join(
                session, gateway(), user, product_id, form=token, data=data,
                method=_method_choice(page), client_address=client_address(), now=now,
                as_of=as_of, limit=decline_limit(),
            )  # fmt: skip
        except (FieldErrors, FieldsInvalid) as exc:
            return _join_form(page, values=values, errors=exc.errors, status=422)
        except InvalidInput as exc:
            errors = {exc.field or "saved_method": exc.message}
            return _join_form(page, values=values, errors=errors, status=422)
        except Conflict as exc:
            return _join_form(page, values=values, message=exc.message, status=409)
        except TooManyDeclines as exc:
            return _join_form(page, values=values, message=exc.message, status=429)
        enqueue_after_commit(list(outcome.email_ids))
    return _after_join(page, outcome, values)


def _method_choice(page: JoinPage) -> MethodChoice:
    """The saved method chosen, or the new card tokenized. Raises FieldErrors."""
    chosen = request.form.get("saved_method", "")
    if chosen and chosen != "new":
        method_id = parse_id(chosen)
        if method_id is None:
            raise FieldErrors({"saved_method": "Choose one of your saved payment methods."})
        return MethodChoice(saved_method_id=method_id)
    holder = " ".join(request.form.get("name", "").split()) or page.account.name
    return MethodChoice(
        new_method=tokenize_from_form(gateway(), request.form, kind="card", holder_name=holder)
    )


def _after_join(page: JoinPage, outcome: JoinOutcome, values: dict[str, str]) -> Response:
    if outcome.status in ("declined", "error"):
        message = f"The payment was declined: {outcome.message} Try another card."
        return _join_form(page, values=values, message=message, status=422)
    # Approved, or still being confirmed: either way never offer the same form again.
    flash(outcome.message, "success" if outcome.approved else "info")
    return redirect_to(url_for("portal.subscriptions"))
