"""Orders for partner users: the list, a new draft, the builder and the order page with
its Summary / Payment / History tabs, collecting the payment (charge now or authorize
only), capture, void, convert to draft, cancel, and the admins' order settings.

Registered on the partner blueprint (``partner.*`` endpoints) by an import at the end of
``routes``. Views parse input, call one service and choose the response; every view
loads the order through a tenant-checked service first, so a block rendered alone for
htmx skips no check. Domain errors become a message on the page with their status
(403 Forbidden, 409 Conflict, 422 InvalidInput), never a 500.
"""

from __future__ import annotations

from typing import Any, Final

from flask import current_app, flash, request, url_for
from werkzeug.wrappers import Response

from app.blueprints.partner.billing_docs import partner_clock
from app.blueprints.partner.routes import bp
from app.blueprints.partner.settings import settings_page
from app.domain.errors import Conflict, DomainError, InvalidInput, NotFound
from app.domain.ids import parse_id
from app.domain.money import format_plain, parse_amount
from app.domain.orders import OrderStatus
from app.extensions import db_session, gateway
from app.services import order_payments, orders
from app.services.order_access import ensure_may_collect
from app.services.order_detail import order_detail
from app.services.order_forms import FREQUENCIES, LinesForm, LinesInvalid, preview_totals
from app.services.order_settings import LABELS, OrderSettingsForm, OrderSettingsInvalid
from app.services.order_settings import update_order_settings as save_order_settings
from app.services.tenancy import customer_for
from app.services.widget_payments import FieldErrors
from app.web.auth import acting_user, partner_admin_required, partner_required
from app.web.card_entry import kept_values, tokenize_from_form
from app.web.htmx import redirect_to, render_view
from app.web.payer import enqueue_after_commit

TABS: Final = ("summary", "payment", "history")
# The customer-approval routes live in ``order_approval`` (another module); the page
# offers them once they are registered.
SEND_ENDPOINT: Final = "partner.send_order_for_approval"
SIGNATURE_ENDPOINT: Final = "partner.order_signature"
_LINE_FIELDS: Final = ("product", "description", "quantity", "unit_price", "activation_date")


# -- the list and a new order --------------------------------------------------------------


@bp.get("/orders", endpoint="orders")
@partner_required
def orders_page() -> Response:
    status = request.args.get("status", "")
    page = request.args.get("page", 1, type=int) or 1
    result = orders.list_orders(db_session(), acting_user(), status=status, page=page)
    return render_view(
        "partner/orders/list.html",
        block="order_table",
        result=result,
        status_filter=status if status in {s.value for s in OrderStatus} else "",
        statuses=orders.order_statuses(),
    )


@bp.route("/customers/<int:customer_id>/orders/new", methods=["GET", "POST"])
@partner_required
def new_order(customer_id: int) -> Response:
    """GET: what a new order is for; POST: open the draft and go to its builder."""
    session, user = db_session(), acting_user()
    if request.method == "GET":
        account = customer_for(session, user, customer_id)
        return render_view("partner/orders/new.html", account=account)
    now, _ = partner_clock(user)
    try:
        order = orders.create_order(session, user, customer_id, now=now)
    except Conflict as exc:
        flash(exc.message, "error")
        return redirect_to(url_for("partner.customer", customer_id=customer_id))
    flash(f"Draft order {order.number} opened. Add its lines, then collect the payment.")
    return redirect_to(url_for("partner.order", order_id=order.id))


# -- the order page ------------------------------------------------------------------------


def _order_page(
    order_id: int,
    *,
    tab: str = "summary",
    block: str | None = None,
    status: int = 200,
    lines_form: LinesForm | None = None,
    **context: Any,
) -> Response:
    """The order page (or one of its blocks for htmx) with the builder's current rows.

    An error page reads the order afresh (whatever the failed service left unsaved).
    """
    session, user = db_session(), acting_user()
    if status >= 400:
        session.rollback()
    _, as_of = partner_clock(user)
    detail = order_detail(session, user, order_id, as_of=as_of)
    b = orders.builder(session, user, order_id)
    form = lines_form or LinesForm.from_lines(detail.lines, b.order.currency, as_of)
    defaults: dict[str, Any] = {
        "errors": {},
        "pay_errors": {},
        "pay_values": {"card": str(detail.default_card_id or "new")},
        "capture_amount": format_plain(detail.held_amount, b.order.currency)
        if detail.held_amount
        else "",
        "capture_error": "",
        "problem": "",
        "lines_problem": "",
    }
    views = current_app.view_functions
    return render_view(
        "partner/orders/order.html",
        block=block,
        status=status,
        tab=tab if tab in TABS else "summary",
        detail=detail,
        order=detail.order,
        form=form,
        totals=preview_totals(
            form, currency=b.order.currency, rate_bp=b.rate_bp, products=b.product_map, as_of=as_of
        ),
        rate_bp=b.rate_bp,
        products=b.products,
        frequencies=FREQUENCIES,
        sequence=order_payments.next_submit_sequence(detail.order),
        can_send=SEND_ENDPOINT in views,
        can_show_signature=SIGNATURE_ENDPOINT in views,
        as_of=as_of,
        **(defaults | context),
    )


def _problem(order_id: int, error: DomainError, **context: Any) -> Response:
    """The order page with the error's message, answered with the error's status."""
    if isinstance(error, NotFound):
        raise error
    return _order_page(order_id, status=error.status_code, problem=error.message, **context)


@bp.get("/orders/<int:order_id>")
@partner_required
def order(order_id: int) -> Response:
    tab = request.args.get("tab", "summary")
    block = {"summary": "summary_tab", "payment": "payment_tab", "history": "history_tab"}
    return _order_page(order_id, tab=tab, block=block.get(tab, "summary_tab"))


def _lines_form() -> LinesForm:
    form = request.form
    fields = {name: form.getlist(name) for name in (*_LINE_FIELDS, "frequency")}
    return LinesForm.from_fields(fields)


@bp.post("/orders/<int:order_id>/lines")
@partner_required
def order_lines(order_id: int) -> Response:
    """Save the lines (then the whole page again: totals, actions and payment change with
    them); "Add line" / "Remove" and errors redraw only the rows and totals for htmx."""
    session, user = db_session(), acting_user()
    now, as_of = partner_clock(user)
    form = _lines_form()
    op = request.values.get("op", "")
    if op:
        return _order_page(order_id, block="order_lines", lines_form=form.edited(op, as_of))
    try:
        orders.save_lines(session, user, order_id, form, now=now, as_of=as_of)
    except LinesInvalid as exc:
        return _order_page(
            order_id, block="order_lines", status=422, lines_form=form, errors=exc.errors
        )
    except Conflict as exc:
        return _order_page(
            order_id, block="order_lines", status=409, lines_form=form, lines_problem=exc.message
        )
    flash("Lines saved.")
    return redirect_to(url_for("partner.order", order_id=order_id))


@bp.post("/orders/<int:order_id>/totals")
@partner_required
def order_totals(order_id: int) -> Response:
    """The live totals of the rows as typed (htmx), or the whole page without JavaScript."""
    return _order_page(order_id, block="order_totals", lines_form=_lines_form())


# -- collecting the payment ----------------------------------------------------------------


@bp.post("/orders/<int:order_id>/submit")
@partner_required
def submit_order(order_id: int) -> Response:
    """Charge now or authorize only, with a card on file or a new card; once per page."""
    session, user = db_session(), acting_user()
    now, as_of = partner_clock(user)
    b = orders.builder(session, user, order_id)
    form = request.form
    values = kept_values(form, ("card", "holder_name", "choice"))
    try:
        ensure_may_collect(b.partner, user)  # before a new card goes to the processor
        sequence = parse_id(form.get("sequence", "")) or 0
        card_field = form.get("card", "")
        if card_field == "new":
            holder = form.get("holder_name", "").strip() or b.account.name
            card = order_payments.CardChoice(
                new_method=tokenize_from_form(gateway(), form, kind="card", holder_name=holder)
            )
        elif (method_id := parse_id(card_field)) is not None:
            card = order_payments.CardChoice(saved_method_id=method_id)
        else:
            raise InvalidInput("Choose a card on file or enter a new card.", "card")
        outcome = order_payments.submit_order(
            session, gateway(), user, order_id, choice=form.get("choice", ""), card=card,
            sequence=sequence, now=now, as_of=as_of,
        )  # fmt: skip
    except FieldErrors as exc:
        return _order_page(order_id, status=422, pay_errors=exc.errors, pay_values=values)
    except InvalidInput as exc:
        errors = {exc.field or "card": exc.message}
        return _order_page(order_id, status=422, pay_errors=errors, pay_values=values)
    except DomainError as exc:
        return _problem(order_id, exc, pay_values=values)
    enqueue_after_commit(list(outcome.email_ids))
    if outcome.order_status != OrderStatus.DECLINED:  # the page shows a decline prominently
        flash(outcome.message, "notice" if outcome.approved else "error")
    return redirect_to(url_for("partner.order", order_id=order_id))


@bp.post("/orders/<int:order_id>/capture")
@partner_required
def capture_order(order_id: int) -> Response:
    """Capture the authorization: the full amount by default, or part of it."""
    session, user = db_session(), acting_user()
    now, as_of = partner_clock(user)
    b = orders.builder(session, user, order_id)
    text = request.form.get("amount", "")
    try:
        amount = parse_amount(text, b.order.currency, field="amount")
        outcome = order_payments.capture_order(
            session, gateway(), user, order_id, amount=amount, now=now, as_of=as_of
        )
    except InvalidInput as exc:
        if b.order.status != OrderStatus.AUTHORIZED:  # no capture form to show it on
            status = b.order.status.replace("_", " ")
            refusal = Conflict(f"Only an authorized order can be captured; this one is {status}.")
            return _problem(order_id, refusal, capture_amount=text)
        return _order_page(order_id, status=422, capture_amount=text, capture_error=exc.message)
    except DomainError as exc:
        return _problem(order_id, exc, capture_amount=text)
    enqueue_after_commit(list(outcome.email_ids))
    flash(outcome.message, "notice" if outcome.approved else "error")
    return redirect_to(url_for("partner.order", order_id=order_id))


@bp.post("/orders/<int:order_id>/void")
@partner_required
def void_order(order_id: int) -> Response:
    """Release the authorization's hold."""
    session, user = db_session(), acting_user()
    now, _ = partner_clock(user)
    try:
        outcome = order_payments.void_order(session, gateway(), user, order_id, now=now)
    except DomainError as exc:
        return _problem(order_id, exc)
    enqueue_after_commit(list(outcome.email_ids))
    flash(outcome.message, "notice" if outcome.approved else "error")
    return redirect_to(url_for("partner.order", order_id=order_id))


@bp.post("/orders/<int:order_id>/draft")
@partner_required
def order_to_draft(order_id: int) -> Response:
    """Convert a declined, voided, sent or approved order back to a draft."""
    session, user = db_session(), acting_user()
    now, _ = partner_clock(user)
    try:
        order_payments.convert_to_draft(session, user, order_id, now=now)
    except DomainError as exc:
        return _problem(order_id, exc)
    flash("The order is a draft again: change it or its payment, then submit it again.")
    return redirect_to(url_for("partner.order", order_id=order_id))


@bp.post("/orders/<int:order_id>/cancel")
@partner_required
def cancel_order(order_id: int) -> Response:
    """Cancel an order that took no money."""
    session, user = db_session(), acting_user()
    now, _ = partner_clock(user)
    try:
        canceled = order_payments.cancel_order(session, user, order_id, now=now)
    except DomainError as exc:
        return _problem(order_id, exc)
    flash(f"Order {canceled.number} canceled.")
    return redirect_to(url_for("partner.order", order_id=order_id))


# -- settings ------------------------------------------------------------------------------


@bp.post("/settings/orders")
@partner_admin_required
def order_settings() -> Response:
    """The "Orders" section of the settings page: salespeople's rights and the day counts."""
    session, user = db_session(), acting_user()
    form = OrderSettingsForm(
        sales_send_for_approval=request.form.get("sales_send_for_approval") == "on",
        sales_collect_payment=request.form.get("sales_collect_payment") == "on",
        approval_link_days=request.form.get("approval_link_days", ""),
        authorization_days=request.form.get("authorization_days", ""),
    )
    try:
        save_order_settings(session, user, form)
    except OrderSettingsInvalid as exc:
        return settings_page(session, user, status=422, order_form=form, order_errors=exc.errors)
    flash("Order settings saved.")
    return redirect_to(url_for("partner.settings") + "#orders-heading")


@bp.context_processor
def _order_settings_labels() -> dict[str, Any]:
    """The settings checkboxes' labels, exactly as the seed words them."""
    return {"order_setting_labels": LABELS}
