"""Embeddable components: the take-payment widget, the pay-now form and their loader.

They are framed by partner pages on other origins, where third-party cookies are often
blocked, so they use no cookie and no session: each rendered form carries a signed,
single-use token (its CSRF defence and the payment's idempotency key). Responses allow
framing by exactly the partner's allowed origins.
"""

from __future__ import annotations

from flask import Blueprint, current_app, make_response, request, send_from_directory, url_for
from werkzeug.wrappers import Response

from app.extensions import csrf, db_session, gateway
from app.services import form_tokens, pay_links, widget_config, widget_payments
from app.services.card_testing import TooManyDeclines
from app.services.receipts import PaymentOutcome
from app.web.card_entry import chosen_kind, kept_values, tokenize_from_form
from app.web.htmx import is_htmx, render_view
from app.web.payer import (
    client_address,
    decline_limit,
    enqueue_after_commit,
    now_and_today,
    settings,
)
from app.web.security import allow_framing_by

bp = Blueprint("components", __name__)
csrf.exempt(bp)

PAYER_FIELDS = ("name", "email", "amount", "frequency", "method")


@bp.get("/embed.js")
def embed_js() -> Response:
    response = send_from_directory(f"{current_app.static_folder}/js", "embed.js", max_age=300)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _widget_page(
    widget,
    partner,
    *,
    values=None,
    errors=None,
    outcome=None,
    message="",
    status=200,
    token=None,
):  # noqa: ANN001, ANN202
    allow_framing_by(partner.allowed_origins)
    token = token or form_tokens.issue(settings().secret_key, f"widget:{widget.key}")
    return render_view(
        "take_payment.html",
        block="widget",
        status=status,
        widget=widget,
        partner=partner,
        token=token,
        frequencies=widget_payments.frequency_choices(widget),
        values=values or {"frequency": widget_payments.frequency_choices(widget)[0]},
        errors=errors or {},
        outcome=outcome,
        message=message,
        action=url_for("components.take_payment", widget_key=widget.key),
    )


# A fresh take-payment form differs between requests only by its form token, so it is
# rendered once per version of the widget and each request puts its own token in. The
# version is the snapshot of the widget and partner rows plus page-or-htmx-block; the
# snapshot comes from the app's configuration cache (``widget_config``: an edit in this
# process shows on the next load, in others within two seconds). Per process, bounded.
# Rendering was a third of the view and reading the snapshot from the database half of
# what was left (bench/widget_latency.py, docs/benchmarks.md).
_FRESH_FORMS: dict[tuple[bool, str], tuple[str, list[str]]] = {}
_TOKEN_SLOT = "portico-form-token-slot"


def _config_cache() -> widget_config.ConfigCache:
    cache = current_app.extensions.get("widget_config")
    if cache is None:
        cache = current_app.extensions.setdefault("widget_config", widget_config.ConfigCache())
    return cache


def _render_fresh_form(widget, partner) -> tuple[str, list[str]]:  # noqa: ANN001
    body = _widget_page(widget, partner, token=_TOKEN_SLOT).get_data(as_text=True)
    if len(_FRESH_FORMS) >= 256:
        _FRESH_FORMS.clear()
    # Keyed by the objects it was rendered from (a concurrent edit cannot mislabel it).
    version = (is_htmx(), repr(widget_config.snapshot_of(widget, partner)))
    _FRESH_FORMS[version] = (body, list(partner.allowed_origins))
    return _FRESH_FORMS[version]


@bp.get("/embed/take-payment/<widget_key>")
def take_payment(widget_key: str) -> Response:
    session = db_session()
    snapshot = _config_cache().snapshot(session, widget_key)
    if snapshot is None:
        raise widget_payments.widget_not_found()
    cached = _FRESH_FORMS.get((is_htmx(), repr(snapshot)))
    if cached is None:  # or an inactive widget: load_widget raises NotFound
        cached = _render_fresh_form(*widget_payments.load_widget(session, widget_key))
    body, origins = cached
    allow_framing_by(origins)
    token = form_tokens.issue(settings().secret_key, f"widget:{widget_key}")
    response = make_response(body.replace(_TOKEN_SLOT, token, 1))
    response.vary.add("HX-Request")
    return response


@bp.post("/embed/take-payment/<widget_key>")
def submit_take_payment(widget_key: str) -> Response:
    session = db_session()
    widget, partner = widget_payments.load_widget(session, widget_key)
    form = request.form
    values = kept_values(form, PAYER_FIELDS)
    try:
        token = form_tokens.verify(
            settings().secret_key, form.get("token", ""), subject=f"widget:{widget.key}"
        )
    except (form_tokens.FormTokenExpired, form_tokens.FormTokenInvalid) as exc:
        # Inside the partner's frame (an error page would be unframable and set a cookie).
        return _widget_page(
            widget, partner, values=values, message=exc.message, status=exc.status_code
        )
    earlier = widget_payments.replay(session, widget, token)
    if earlier is not None:
        return _widget_result(widget, partner, earlier, values)
    try:
        payer = widget_payments.validate_payer(
            widget,
            widget_payments.PayerInput(
                name=form.get("name", ""),
                email=form.get("email", ""),
                amount=form.get("amount", ""),
                frequency=form.get("frequency", widget_payments.ONE_TIME),
                currency=form.get("currency", ""),
            ),
        )
        kind = chosen_kind(form, accept_card=widget.accept_card, accept_bank=widget.accept_bank)
        method = tokenize_from_form(gateway(), form, kind=kind, holder_name=payer.name)
        now, today = now_and_today(partner.timezone)
        outcome = widget_payments.pay(
            session, gateway(), widget=widget, partner=partner, form=token, payer=payer,
            method=method, client_address=client_address(), now=now, as_of=today,
            limit=decline_limit(),
        )  # fmt: skip
    except widget_payments.FieldErrors as exc:
        return _widget_page(widget, partner, values=values, errors=exc.errors, status=422)
    except widget_payments.FormTampered as exc:
        return _widget_page(widget, partner, values=values, message=exc.message, status=400)
    except TooManyDeclines as exc:
        return _widget_page(widget, partner, values=values, message=exc.message, status=429)
    enqueue_after_commit(outcome.email_ids)
    return _widget_result(widget, partner, outcome, values)


def _widget_result(widget, partner, outcome: PaymentOutcome, values: dict[str, str]) -> Response:  # noqa: ANN001
    if outcome.approved or outcome.status in ("pending", "unknown"):
        return _widget_page(widget, partner, values=values, outcome=outcome)
    # Declined or failed: the reason, the payer's non-sensitive fields, a fresh form.
    return _widget_page(widget, partner, values=values, message=outcome.message, status=402)


def _pay_now_page(view, *, values=None, errors=None, outcome=None, message="", status=200):  # noqa: ANN001, ANN202
    allow_framing_by(view.partner.allowed_origins)
    subject = f"paylink:{view.link.id}"
    return render_view(
        "pay_now.html",
        block="widget",
        status=status,
        view=view,
        token=form_tokens.issue(settings().secret_key, subject),
        values=values or {},
        errors=errors or {},
        outcome=outcome,
        message=message,
        saved_methods=[],
        action=request.path,
        csrf=False,
    )


@bp.get("/embed/pay-now/<token>")
def pay_now(token: str) -> Response:
    now, _ = now_and_today("UTC")
    view = pay_links.open_link(db_session(), settings().secret_key, token, now=now)
    return _pay_now_page(view)


@bp.post("/embed/pay-now/<token>")
def submit_pay_now(token: str) -> Response:
    from app.web.pay_flow import submit_invoice_payment

    session = db_session()
    now, _ = now_and_today("UTC")
    view = pay_links.open_link(session, settings().secret_key, token, now=now)
    return submit_invoice_payment(session, view, saved_methods=[], render=_pay_now_page)
