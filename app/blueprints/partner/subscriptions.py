"""A customer's subscriptions: the form with its live preview, and the schedule's buttons.

The routes are registered on the partner blueprint (``partner.*`` endpoints); its
``routes`` module imports this one. Views parse the form, call one service and choose
the response; the services check the role and tenant again and own the transaction.
Every view loads its record through a tenant-checked service before rendering, so the
preview block rendered alone for htmx skips no check.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask import flash, request, url_for
from sqlmodel import Session
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from app.blueprints.partner.routes import bp
from app.domain.errors import Conflict
from app.domain.schedule import Frequency, StopRule
from app.extensions import db_session, gateway
from app.models import CustomerAccount, Partner, User
from app.services import subscriptions as service
from app.services.manual_charges import ManualCharge
from app.services.tenancy import partner_of
from app.web.auth import acting_user, partner_required
from app.web.htmx import redirect_to, render_view
from app.web.payer import enqueue_after_commit, now_and_today

FREQUENCIES = tuple(f.value for f in Frequency)
STOP_RULES = (
    (StopRule.UNENDING.value, "Never (until stopped)"),
    (StopRule.DATE.value, "On an end date"),
    (StopRule.COUNT.value, "After a number of payments"),
    (StopRule.BALANCE_DUE.value, "When the total is paid"),
)


def _clock(session: Session, user: User) -> tuple[datetime, date]:
    """Now, and today in the partner's timezone (the request's only clock read)."""
    return now_and_today(partner_of(session, user).timezone)


def _form_input(form: MultiDict[str, str]) -> service.SubscriptionInput:
    names = service.SubscriptionInput.__dataclass_fields__
    return service.SubscriptionInput(**{name: form.get(name, "") for name in names})


def _page(
    *,
    account: CustomerAccount,
    partner: Partner,
    form: service.SubscriptionInput,
    as_of: date,
    overview: service.SubscriptionOverview | None = None,
    errors: dict[str, str] | None = None,
    pristine: bool = False,
    charge: ManualCharge | None = None,
    status: int = 200,
    show_problems: bool = False,
) -> Response:
    """The create or edit screen; an htmx request gets only the ``preview`` block.

    ``show_problems`` puts the preview's reasons next to their fields too (the
    preview without JavaScript re-renders the whole form).
    """
    upcoming, problems = service.preview(
        form,
        currency=account.currency,
        as_of=as_of,
        is_new=overview is None,
        subscription=overview.subscription if overview else None,
    )
    context: dict[str, Any] = {
        "account": account,
        "partner": partner,
        "overview": overview,
        "sub": overview.subscription if overview else None,
        "failed": status == 422,
        "form": form,
        "errors": problems if show_problems else errors or {},
        "upcoming": upcoming,
        "problems": {} if pristine else problems,
        "pristine": pristine,
        "charge": charge,
        "as_of": as_of,
        "frequencies": FREQUENCIES,
        "stop_rules": STOP_RULES,
        "preview_length": service.PREVIEW_LENGTH,
    }
    return render_view("partner/subscription_form.html", block="preview", status=status, **context)


# -- create --------------------------------------------------------------------------------


@bp.route("/customers/<int:customer_id>/subscriptions/new", methods=["GET", "POST"])
@partner_required
def new_subscription(customer_id: int) -> Response:
    session, user = db_session(), acting_user()
    account, partner = service.new_subscription_context(session, user, customer_id)
    now, as_of = _clock(session, user)
    if request.method == "GET":
        form = service.SubscriptionInput.blank(account.currency, as_of)
        return _page(account=account, partner=partner, form=form, as_of=as_of, pristine=True)
    form = _form_input(request.form)
    try:
        sub, charge = service.create_subscription(
            session, user, customer_id, form, as_of=as_of, now=now, gateway=gateway()
        )
    except service.SubscriptionInvalid as exc:
        return _page(
            account=account, partner=partner, form=form, as_of=as_of, errors=exc.errors, status=422
        )
    if charge is None:
        flash(f"Subscription created. Next charge: {_day(sub.next_charge_date)}.")
        return redirect_to(url_for("partner.edit_subscription", subscription_id=sub.id))
    enqueue_after_commit(list(charge.email_ids))
    flash(f"Subscription created. {charge.summary}")
    return redirect_to(
        url_for("partner.edit_subscription", subscription_id=sub.id, charge=charge.payment_id)
    )


@bp.post("/customers/<int:customer_id>/subscriptions/preview")
@partner_required
def preview_new_subscription(customer_id: int) -> Response:
    """The live preview of the create form (htmx), or the whole form without JavaScript."""
    session, user = db_session(), acting_user()
    account, partner = service.new_subscription_context(session, user, customer_id)
    _, as_of = _clock(session, user)
    form = _form_input(request.form)
    return _page(account=account, partner=partner, form=form, as_of=as_of, show_problems=True)


# -- edit ----------------------------------------------------------------------------------


@bp.route("/subscriptions/<int:subscription_id>", methods=["GET", "POST"])
@partner_required
def edit_subscription(subscription_id: int) -> Response:
    session, user = db_session(), acting_user()
    now, as_of = _clock(session, user)
    overview = service.subscription_overview(session, user, subscription_id, as_of=as_of)
    page = {"account": overview.account, "partner": overview.partner, "as_of": as_of}
    if request.method == "GET":
        charge = None
        payment_id = request.args.get("charge", type=int)
        if payment_id is not None:
            charge = service.manual_charge_result(session, user, subscription_id, payment_id)
        form = service.SubscriptionInput.from_subscription(overview.subscription)
        return _page(**page, form=form, overview=overview, charge=charge)
    form = _form_input(request.form)
    try:
        sub = service.update_subscription(
            session, user, subscription_id, form, as_of=as_of, now=now
        )
    except service.SubscriptionInvalid as exc:
        return _page(**page, form=form, overview=overview, errors=exc.errors, status=422)
    flash(f"Subscription saved. Next charge: {_day(sub.next_charge_date)}.")
    return redirect_to(url_for("partner.edit_subscription", subscription_id=subscription_id))


@bp.post("/subscriptions/<int:subscription_id>/preview")
@partner_required
def preview_subscription_changes(subscription_id: int) -> Response:
    """The live preview of unsaved edits (htmx), or the whole form without JavaScript."""
    session, user = db_session(), acting_user()
    _, as_of = _clock(session, user)
    overview = service.subscription_overview(session, user, subscription_id, as_of=as_of)
    return _page(
        account=overview.account,
        partner=overview.partner,
        form=_form_input(request.form),
        as_of=as_of,
        overview=overview,
        show_problems=True,
    )


# -- the schedule's buttons ----------------------------------------------------------------


def _back(subscription_id: int, *, problem: str = "", **args: Any) -> Response:
    """Back to the subscription's page; a refused action is flashed as a problem."""
    if problem:
        flash(problem, "error")
    return redirect_to(
        url_for("partner.edit_subscription", subscription_id=subscription_id, **args)
    )


def _day(value: date | None) -> str:
    return value.strftime("%b %-d, %Y") if value else "none (the schedule is not running)"


@bp.post("/subscriptions/<int:subscription_id>/stop")
@partner_required
def stop_subscription(subscription_id: int) -> Response:
    session, user = db_session(), acting_user()
    now, _ = _clock(session, user)
    try:
        service.pause(session, user, subscription_id, now=now)
    except Conflict as exc:
        return _back(subscription_id, problem=exc.message)
    flash("Subscription stopped: it is not charged until you resume it.")
    return _back(subscription_id)


@bp.post("/subscriptions/<int:subscription_id>/resume")
@partner_required
def resume_subscription(subscription_id: int) -> Response:
    session, user = db_session(), acting_user()
    now, as_of = _clock(session, user)
    try:
        sub = service.resume(session, user, subscription_id, as_of=as_of, now=now)
    except Conflict as exc:
        return _back(subscription_id, problem=exc.message)
    flash(f"Subscription resumed. Next charge: {_day(sub.next_charge_date)}.")
    return _back(subscription_id)


@bp.post("/subscriptions/<int:subscription_id>/set-recurring")
@partner_required
def set_subscription_recurring(subscription_id: int) -> Response:
    session, user = db_session(), acting_user()
    now, as_of = _clock(session, user)
    try:
        sub = service.set_recurring(session, user, subscription_id, as_of=as_of, now=now)
    except Conflict as exc:
        return _back(subscription_id, problem=exc.message)
    flash(f"Subscription set back to recurring. Next charge: {_day(sub.next_charge_date)}.")
    return _back(subscription_id)


@bp.post("/subscriptions/<int:subscription_id>/charge")
@partner_required
def charge_subscription_now(subscription_id: int) -> Response:
    """A manual charge; the page then shows the next scheduled date and offers a skip."""
    session, user = db_session(), acting_user()
    now, _ = _clock(session, user)
    sequence = request.form.get("sequence", type=int)
    try:
        charge = service.charge_now(
            session, gateway(), user, subscription_id, now=now, sequence=sequence
        )
    except Conflict as exc:
        return _back(subscription_id, problem=exc.message)
    enqueue_after_commit(list(charge.email_ids))
    return _back(subscription_id, charge=charge.payment_id)


@bp.post("/subscriptions/<int:subscription_id>/skip")
@partner_required
def skip_next_charge(subscription_id: int) -> Response:
    session, user = db_session(), acting_user()
    now, _ = _clock(session, user)
    try:
        sub = service.skip_next(session, user, subscription_id, now=now)
    except Conflict as exc:
        return _back(subscription_id, problem=exc.message)
    flash(f"The next scheduled charge was skipped. Next charge: {_day(sub.next_charge_date)}.")
    return _back(subscription_id)
