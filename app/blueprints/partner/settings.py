"""Partner settings (allowed origins, pay links, dunning, donation receipts) and
take-payment widgets: admins only.

The routes are registered on the partner blueprint (``partner.*`` endpoints); its
``routes`` module imports this one. Views parse the form, call one service and choose
the response; the services check the role and tenant again and own the transaction.
"""

from __future__ import annotations

import re
from typing import Any

from flask import current_app, flash, request, url_for
from sqlmodel import Session
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from app.blueprints.partner.routes import bp
from app.clock import local_today
from app.domain.dunning import MAX_STAGES, Policy, PolicyInvalid, Recipient, StageKind
from app.domain.errors import InvalidInput
from app.extensions import db_session
from app.models import User
from app.services.dunning_settings import (
    dunning_settings,
    reset_dunning_policy,
    save_dunning_policy,
)
from app.services.portal_settings import portal_settings as portal_section
from app.services.receipt_settings import RECEIPT_WORDING_MAX, update_receipt_wording
from app.services.widget_admin import (
    PAY_LINK_DAYS_RANGE,
    WIDGET_FREQUENCIES,
    WidgetDraft,
    WidgetInput,
    WidgetInvalid,
    add_allowed_origin,
    check_widget,
    create_widget,
    embed_snippets,
    get_widget,
    list_widgets,
    partner_settings,
    preview_widget,
    remove_allowed_origin,
    set_widget_active,
    update_payment_settings,
    update_widget,
)
from app.web.auth import acting_user, partner_admin_required
from app.web.htmx import redirect_to, render_view

_DAYS = re.compile(r"[0-9]{1,6}")


# -- settings ------------------------------------------------------------------------------


def settings_page(session: Session, user: User, *, status: int = 200, **context: Any) -> Response:
    """The settings page with every section; ``context`` carries one section's typed values
    and errors after a refused submission (other modules' sections use it too)."""
    partner = partner_settings(session, user)
    dunning = dunning_settings(session, user)
    low, high = PAY_LINK_DAYS_RANGE
    defaults: dict[str, Any] = {
        "origin_value": "",
        "origin_error": "",
        "payments_error": "",
        "allow_partial_payments": partner.allow_partial_payments,
        "pay_link_days": str(partner.pay_link_days),
        "dunning_rows": _policy_rows(dunning.policy),
        "dunning_errors": {},
        "receipt_wording": partner.receipt_wording,
        "receipt_error": "",
        "portal": portal_section(session, user),  # the "Customer portal" section
        "portal_form": None,
        "portal_errors": {},
    }
    return render_view(
        "partner/settings.html",
        status=status,
        partner=partner,
        days_min=low,
        days_max=high,
        dunning_is_default=dunning.is_default,
        stage_kinds=list(StageKind),
        recipient_kinds=list(Recipient),
        receipt_max=RECEIPT_WORDING_MAX,
        **(defaults | context),
    )


def _policy_rows(policy: Policy) -> list[dict[str, Any]]:
    """The policy as form rows, plus empty rows for new stages (up to the maximum)."""
    rows: list[dict[str, Any]] = [
        {"day": str(s.day), "stage": s.kind.value, "recipients": [r.value for r in s.recipients]}
        for s in policy
    ]
    spare = min(MAX_STAGES, len(rows) + 3) - len(rows)
    return rows + [{"day": "", "stage": "reminder", "recipients": []} for _ in range(spare)]


def _form_rows(form: MultiDict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "day": form.get(f"stages-{n}-day", ""),
            "stage": form.get(f"stages-{n}-stage", ""),
            "recipients": form.getlist(f"stages-{n}-recipients"),
        }
        for n in range(MAX_STAGES)
        if f"stages-{n}-day" in form
    ]


@bp.get("/settings")
@partner_admin_required
def settings() -> Response:
    return settings_page(db_session(), acting_user())


@bp.post("/settings/origins")
@partner_admin_required
def add_origin() -> Response:
    session, user = db_session(), acting_user()
    origin = request.form.get("origin", "")
    try:
        origins = add_allowed_origin(session, user, origin)
    except InvalidInput as exc:
        return settings_page(
            session, user, status=422, origin_value=origin, origin_error=exc.message
        )
    flash(f"Pages on {origins[-1]} may now embed your widgets.")
    return redirect_to(url_for("partner.settings"))


@bp.post("/settings/origins/remove")
@partner_admin_required
def remove_origin() -> Response:
    origin = request.form.get("origin", "")
    remove_allowed_origin(db_session(), acting_user(), origin)
    flash(f"{origin.strip()} may no longer embed your widgets.")
    return redirect_to(url_for("partner.settings"))


@bp.post("/settings/payments")
@partner_admin_required
def payment_settings() -> Response:
    session, user = db_session(), acting_user()
    allow_partial = request.form.get("allow_partial_payments") == "on"
    days = request.form.get("pay_link_days", "").strip()
    try:
        if not _DAYS.fullmatch(days):
            raise InvalidInput("Enter a whole number of days, such as 30.", "pay_link_days")
        update_payment_settings(
            session, user, allow_partial_payments=allow_partial, pay_link_days=int(days)
        )
    except InvalidInput as exc:
        return settings_page(
            session,
            user,
            status=422,
            allow_partial_payments=allow_partial,
            pay_link_days=days,
            payments_error=exc.message,
        )
    flash("Payment settings saved.")
    return redirect_to(url_for("partner.settings"))


@bp.post("/settings/dunning")
@partner_admin_required
def dunning_policy() -> Response:
    session, user = db_session(), acting_user()
    rows = _form_rows(request.form)
    try:
        save_dunning_policy(
            session, user, rows, as_of=local_today(partner_settings(session, user).timezone)
        )
    except PolicyInvalid as exc:
        return settings_page(
            session, user, status=422, dunning_rows=rows, dunning_errors=exc.errors
        )
    flash("Dunning stages saved. They apply to the stages still ahead of each unpaid invoice.")
    return redirect_to(url_for("partner.settings") + "#dunning-heading")


@bp.post("/settings/dunning/reset")
@partner_admin_required
def reset_dunning() -> Response:
    session, user = db_session(), acting_user()
    reset_dunning_policy(session, user, as_of=local_today(partner_settings(session, user).timezone))
    flash("Dunning stages reset to the default policy.")
    return redirect_to(url_for("partner.settings") + "#dunning-heading")


@bp.post("/settings/receipts")
@partner_admin_required
def receipt_settings() -> Response:
    session, user = db_session(), acting_user()
    wording = request.form.get("receipt_wording", "")
    try:
        update_receipt_wording(session, user, wording)
    except InvalidInput as exc:
        return settings_page(
            session, user, status=422, receipt_wording=wording, receipt_error=exc.message
        )
    flash("Receipt wording saved.")
    return redirect_to(url_for("partner.settings") + "#receipts-heading")


# -- widgets -------------------------------------------------------------------------------


def _widget_input(form: MultiDict[str, str]) -> WidgetInput:
    return WidgetInput(
        title=form.get("title", ""),
        purpose=form.get("purpose", ""),
        currency=form.get("currency", ""),
        amount_mode=form.get("amount_mode", ""),
        fixed_amount=form.get("fixed_amount", ""),
        min_amount=form.get("min_amount", ""),
        max_amount=form.get("max_amount", ""),
        accept_card=form.get("accept_card") == "on",
        accept_bank=form.get("accept_bank") == "on",
        allow_one_time=form.get("allow_one_time") == "on",
        frequencies=tuple(form.getlist("frequencies")),
        success_message=form.get("success_message", ""),
    )


def _widget_page(
    session: Session,
    user: User,
    *,
    widget_id: int | None,
    form: WidgetInput,
    draft: WidgetDraft,
    errors: dict[str, str] | None = None,
    status: int = 200,
    pristine: bool = False,
) -> Response:
    """The create or edit screen; an htmx request gets only the ``preview`` block."""
    partner = partner_settings(session, user)
    widget = get_widget(session, user, widget_id) if widget_id is not None else None
    snippets = embed_snippets(current_app.config["PORTICO"].base_url, widget) if widget else None
    return render_view(
        "partner/widget_form.html",
        block="preview",
        status=status,
        partner=partner,
        widget=widget,
        form=form,
        draft=draft,
        errors=errors or {},
        snippets=snippets,
        frequencies=WIDGET_FREQUENCIES,
        pristine=pristine,
    )


@bp.get("/widgets")
@partner_admin_required
def widgets() -> Response:
    return render_view("partner/widgets.html", widgets=list_widgets(db_session(), acting_user()))


@bp.route("/widgets/new", methods=["GET", "POST"])
@partner_admin_required
def new_widget() -> Response:
    session, user = db_session(), acting_user()
    if request.method == "GET":
        form = WidgetInput.blank(partner_settings(session, user).currency)
        draft = check_widget(form, default_currency=form.currency)
        return _widget_page(session, user, widget_id=None, form=form, draft=draft, pristine=True)
    form = _widget_input(request.form)
    try:
        widget = create_widget(session, user, form)
    except WidgetInvalid as exc:
        draft = preview_widget(session, user, form)
        return _widget_page(
            session, user, widget_id=None, form=form, draft=draft, errors=exc.errors, status=422
        )
    flash("Widget created. Copy its snippet below onto a page of an allowed origin.")
    return redirect_to(url_for("partner.edit_widget", widget_id=widget.id))


@bp.route("/widgets/<int:widget_id>", methods=["GET", "POST"])
@partner_admin_required
def edit_widget(widget_id: int) -> Response:
    session, user = db_session(), acting_user()
    if request.method == "GET":
        form = WidgetInput.from_widget(get_widget(session, user, widget_id))
        draft = check_widget(form, default_currency=form.currency)
        return _widget_page(session, user, widget_id=widget_id, form=form, draft=draft)
    form = _widget_input(request.form)
    try:
        update_widget(session, user, widget_id, form)
    except WidgetInvalid as exc:
        draft = preview_widget(session, user, form, widget_id)
        return _widget_page(
            session,
            user,
            widget_id=widget_id,
            form=form,
            draft=draft,
            errors=exc.errors,
            status=422,
        )
    flash("Widget saved. Pages that embed it show the change on their next load.")
    return redirect_to(url_for("partner.edit_widget", widget_id=widget_id))


@bp.post("/widgets/preview")
@partner_admin_required
def preview_new_widget() -> Response:
    """The live preview of the create form (htmx), or the whole form without JavaScript."""
    session, user = db_session(), acting_user()
    form = _widget_input(request.form)
    draft = preview_widget(session, user, form)
    return _widget_page(session, user, widget_id=None, form=form, draft=draft, errors=draft.errors)


@bp.post("/widgets/<int:widget_id>/preview")
@partner_admin_required
def preview_widget_changes(widget_id: int) -> Response:
    """The live preview of unsaved edits (htmx), or the whole form without JavaScript."""
    session, user = db_session(), acting_user()
    form = _widget_input(request.form)
    draft = preview_widget(session, user, form, widget_id)
    return _widget_page(
        session, user, widget_id=widget_id, form=form, draft=draft, errors=draft.errors
    )


@bp.post("/widgets/<int:widget_id>/active")
@partner_admin_required
def widget_active(widget_id: int) -> Response:
    active = request.form.get("active") == "1"
    widget = set_widget_active(db_session(), acting_user(), widget_id, active)
    flash(f"{widget.title} is now {'active' if active else 'inactive'}.")
    if request.form.get("back") == "edit":
        return redirect_to(url_for("partner.edit_widget", widget_id=widget_id))
    return redirect_to(url_for("partner.widgets"))
