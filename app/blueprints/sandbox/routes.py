"""The sandbox processor's hosted card entry: card fields in, a token out.

It stands in for a processor's hosted fields (Stripe's Payment Element in production):
the widget's script sends the card or bank fields here and submits only the returned
token to Portico's payment form. It exists only when PAYMENT_GATEWAY=sandbox.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from werkzeug.wrappers import Response

from app.extensions import csrf, gateway
from app.services.widget_payments import FieldErrors
from app.web.card_entry import tokenize_from_form

bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")
csrf.exempt(bp)


@bp.post("/tokens")
def create_token() -> tuple[Response, int]:
    form = request.form
    kind = "bank_account" if form.get("method") == "bank_account" else "card"
    holder = " ".join(form.get("name", "").split())
    try:
        method = tokenize_from_form(gateway(), form, kind=kind, holder_name=holder)
    except FieldErrors as exc:
        return jsonify({"errors": exc.errors}), 422
    body = {
        "token": method.token,
        "kind": method.kind,
        "brand": method.brand,
        "last4": method.last4,
    }
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, 201
