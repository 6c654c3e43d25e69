"""The customer's order approval page, ``/approve/<token>`` (first-party, CSRF protected).

The signed link in the approval email is the credential: no sign-in. The page shows the
order, takes the signer's name and signature (typed, or drawn on a canvas by
``static/js/signature.js``) and, when the order takes payment, a card.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from werkzeug.wrappers import Response

from app.clock import local_today, utcnow
from app.domain.signatures import SignatureKind, check_signature
from app.extensions import db_session, gateway
from app.services import order_approval
from app.services.order_approval import ApprovalPage, ApprovalResult
from app.services.widget_payments import FieldErrors
from app.web.card_entry import tokenize_from_form
from app.web.htmx import render_view
from app.web.payer import client_address, enqueue_after_commit, settings

bp = Blueprint("approve", __name__)


@bp.get("/approve/<token>")
def page(token: str) -> Response:
    """The order to approve, or its outcome once approved; 404/410 for a bad or old link."""
    view = order_approval.approval_page(
        db_session(), token, secret=settings().secret_key, now=utcnow()
    )
    return _render(view)


@bp.post("/approve/<token>")
def submit(token: str) -> Response:
    """Sign (and pay): the confirmation, the decline, or the form with its errors."""
    session = db_session()
    secret = settings().secret_key
    view = order_approval.approval_page(session, token, secret=secret, now=utcnow())
    if view.state != "open":
        return _render(view)
    form = request.form
    kind = form.get("signature_kind", SignatureKind.TYPED)
    signature = form.get(
        "drawn_signature" if kind == SignatureKind.DRAWN else "typed_signature", ""
    )
    values = {
        "signer_name": form.get("signer_name", ""),
        "signature_kind": kind,
        "typed_signature": form.get("typed_signature", ""),
    }
    _, errors = check_signature(values["signer_name"], kind, signature)
    card = None
    if view.takes_payment:
        holder = " ".join(values["signer_name"].split()) or view.customer.name
        try:
            card = tokenize_from_form(gateway(), form, kind="card", holder_name=holder)
        except FieldErrors as exc:
            errors.update(exc.errors)
    if not errors and kind == SignatureKind.DRAWN:
        values["drawn_signature"] = signature  # redrawn on the canvas if another error comes
    if errors:
        return _render(view, values=values, errors=_by_input(errors, kind), status=422)
    now = utcnow()
    try:
        result = order_approval.approve(
            session, gateway(), token, signer_name=values["signer_name"], signature_kind=kind,
            signature=signature, card=card, sequence=form.get("sequence", 0, type=int),
            client_address=client_address(), now=now,
            as_of=local_today(view.partner.timezone), secret=secret,
        )  # fmt: skip
    except FieldErrors as exc:
        return _render(view, values=values, errors=_by_input(exc.errors, kind), status=422)
    enqueue_after_commit(list(result.email_ids))
    return _render(
        result.page, result=result, status=402 if result.page.outcome == "declined" else 200
    )


def _by_input(errors: dict[str, str], kind: str) -> dict[str, str]:
    """Service errors keyed by the input that shows them (the typed box or the canvas)."""
    shown = dict(errors)
    if "signature" in shown:
        target = "drawn_signature" if kind == SignatureKind.DRAWN else "typed_signature"
        shown[target] = shown.pop("signature")
    return shown


def _render(
    view: ApprovalPage,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    result: ApprovalResult | None = None,
    status: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "view": view,
        "values": values or {"signature_kind": SignatureKind.TYPED},
        "errors": errors or {},
        "result": result,
        "action": request.path,
    }
    return render_view("approve/approve.html", status=status, **context)
