"""The billing-on-behalf wizard and the inline billing-email edit (``partner.*`` routes).

Each step is a page with a plain form (it works without JavaScript); its POST saves into
the server-side draft and redirects to the next step (post/redirect/get, so a reload
never resubmits). Back saves what was typed when it parses, then goes back.
"""

from __future__ import annotations

from datetime import date

from flask import request, url_for
from werkzeug.wrappers import Response

from app.blueprints.partner.routes import bp
from app.domain.errors import Conflict
from app.domain.ids import parse_id
from app.extensions import db_session
from app.models import CustomerAccount, OnBehalfDraft, User
from app.services import on_behalf as service
from app.services.tenancy import customer_for, partner_of
from app.web.auth import acting_user, partner_required
from app.web.htmx import is_htmx, redirect_to, render_view
from app.web.payer import now_and_today, settings

STEPS = ("Start date", "Subscriptions", "Changes", "Review")


def _open(customer_id: int) -> tuple[User, CustomerAccount, OnBehalfDraft, date]:
    session = db_session()
    user = acting_user()
    account, draft = service.open_wizard(
        session, user, customer_id, countries=settings().billing_on_behalf_countries
    )
    _now, today = now_and_today(partner_of(session, user).timezone)
    return user, account, draft, today


def _page(template: str, step: int, status: int = 200, **context: object) -> Response:
    return render_view(f"partner/on_behalf/{template}", status=status, steps=STEPS, step=step,
                       **context)  # fmt: skip


@bp.route("/customers/<int:customer_id>/on-behalf", methods=["GET", "POST"])
@partner_required
def on_behalf_start(customer_id: int) -> Response:
    """Step 1: the start date (first day of next month at the earliest) and billing email."""
    _user, account, draft, today = _open(customer_id)
    earliest = service.earliest_start(today)
    values = {
        "start_date": (draft.start_date or earliest).isoformat(),
        "billing_email": draft.billing_email,
    }
    if request.method == "POST":
        values = {name: request.form.get(name, "") for name in values}
        try:
            service.save_start(
                db_session(), draft, start_text=values["start_date"],
                email_text=values["billing_email"], as_of=today,
            )  # fmt: skip
        except service.StepInvalid as exc:
            return _page("start.html", 1, 422, account=account, values=values,
                         errors=exc.errors, earliest=earliest)  # fmt: skip
        return redirect_to(url_for("partner.on_behalf_choose", customer_id=customer_id))
    return _page("start.html", 1, account=account, values=values, errors={}, earliest=earliest)


@bp.route("/customers/<int:customer_id>/on-behalf/subscriptions", methods=["GET", "POST"])
@partner_required
def on_behalf_choose(customer_id: int) -> Response:
    """Step 2: whether to change anything, and which subscriptions."""
    _user, account, draft, _today = _open(customer_id)
    if draft.start_date is None:
        return redirect_to(url_for("partner.on_behalf_start", customer_id=customer_id))
    subs = service.changeable_subscriptions(db_session(), account.id)  # type: ignore[arg-type]
    wants, chosen = draft.wants_changes, list(draft.chosen)
    if request.method == "POST":
        if request.form.get("action") == "back":
            return redirect_to(url_for("partner.on_behalf_start", customer_id=customer_id))
        wants = request.form.get("wants_changes") == "yes"
        chosen = [n for i in request.form.getlist("subscription") if (n := parse_id(i))]
        try:
            service.save_choice(db_session(), draft, wants_changes=wants, chosen=chosen)
        except service.StepInvalid as exc:
            return _page("choose.html", 2, 422, account=account, subs=subs, wants=wants,
                         chosen=chosen, errors=exc.errors)  # fmt: skip
        if draft.chosen:
            return redirect_to(url_for("partner.on_behalf_step", customer_id=customer_id, n=1))
        return redirect_to(url_for("partner.on_behalf_review", customer_id=customer_id))
    return _page("choose.html", 2, account=account, subs=subs, wants=wants, chosen=chosen,
                 errors={})  # fmt: skip


@bp.route("/customers/<int:customer_id>/on-behalf/subscriptions/<int:n>", methods=["GET", "POST"])
@partner_required
def on_behalf_step(customer_id: int, n: int) -> Response:
    """Step 3: one chosen subscription's start date and price, with Next and Back."""
    _user, account, draft, today = _open(customer_id)
    session = db_session()
    sub, start, price = service.step_values(session, draft, n)
    values = {"start_date": start, "price": price}
    back = (
        url_for("partner.on_behalf_step", customer_id=customer_id, n=n - 1)
        if n > 1
        else url_for("partner.on_behalf_choose", customer_id=customer_id)
    )
    if request.method == "POST":
        values = {name: request.form.get(name, "") for name in values}
        going_back = request.form.get("action") == "back"
        try:
            service.save_step(session, draft, n, start_text=values["start_date"],
                              price_text=values["price"], as_of=today)  # fmt: skip
        except service.StepInvalid as exc:
            if going_back:  # keep nothing that does not parse, and go back anyway
                return redirect_to(back)
            return _page("step.html", 3, 422, account=account, sub=sub, n=n,
                         total=len(draft.chosen), values=values, errors=exc.errors,
                         back=back)  # fmt: skip
        if going_back:
            return redirect_to(back)
        if n < len(draft.chosen):
            return redirect_to(url_for("partner.on_behalf_step", customer_id=customer_id, n=n + 1))
        return redirect_to(url_for("partner.on_behalf_review", customer_id=customer_id))
    return _page("step.html", 3, account=account, sub=sub, n=n, total=len(draft.chosen),
                 values=values, errors={}, back=back)  # fmt: skip


@bp.route("/customers/<int:customer_id>/on-behalf/review", methods=["GET", "POST"])
@partner_required
def on_behalf_review(customer_id: int) -> Response:
    """Step 4: every subscription with its old and new values, and Confirm."""
    user, account, draft, today = _open(customer_id)
    session = db_session()
    try:
        rows = service.review(session, draft)
    except Conflict:
        return redirect_to(url_for("partner.on_behalf_start", customer_id=customer_id))
    back = (
        url_for("partner.on_behalf_step", customer_id=customer_id, n=len(draft.chosen))
        if draft.chosen
        else url_for("partner.on_behalf_choose", customer_id=customer_id)
    )
    if request.method == "POST":
        now, _today = now_and_today(partner_of(session, user).timezone)
        version = request.form.get("version", "", type=int)
        try:
            service.confirm(session, user, draft, version=version or -1, as_of=today, now=now)
        except Conflict as exc:
            return _page("review.html", 4, 409, account=account, draft=draft, rows=rows,
                         back=back, problem=exc.message)  # fmt: skip
        return redirect_to(url_for("partner.on_behalf_done", customer_id=customer_id))
    return _page("review.html", 4, account=account, draft=draft, rows=rows, back=back,
                 problem="")  # fmt: skip


@bp.get("/customers/<int:customer_id>/on-behalf/done")
@partner_required
def on_behalf_done(customer_id: int) -> Response:
    """Step 5: billing on behalf is active."""
    account = customer_for(db_session(), acting_user(), customer_id)
    if account.on_behalf_start is None:
        return redirect_to(url_for("partner.on_behalf_start", customer_id=customer_id))
    return _page("done.html", 5, account=account)


@bp.route("/customers/<int:customer_id>/on-behalf/email", methods=["GET", "POST"])
@partner_required
def on_behalf_email(customer_id: int) -> Response:
    """The billing email of the information section: shown, edited inline, or saved.

    htmx swaps just the email row (pencil → form → saved value); without JavaScript the
    same actions go through the account page.
    """
    from app.blueprints.partner.routes import customer_page

    session = db_session()
    user = acting_user()
    account = customer_for(session, user, customer_id)
    state = {"editing": request.args.get("edit") == "1", "typed": account.on_behalf_email}
    status = 200
    if request.method == "POST":
        typed = request.form.get("billing_email", "")
        try:
            service.update_billing_email(session, user, customer_id, typed)
            state = {"editing": False, "typed": typed.strip()}
        except service.StepInvalid as exc:
            state = {"editing": True, "typed": typed, "error": exc.errors["billing_email"]}
            status = 422
        session.refresh(account)
    if not is_htmx():
        if request.method == "POST" and status == 200:
            return redirect_to(url_for("partner.customer", customer_id=customer_id))
        return customer_page(customer_id, status=status, **state)
    return render_view("partner/on_behalf/_info.html", block="email", status=status,
                       account=account, on_behalf={"error": "", **state})  # fmt: skip
