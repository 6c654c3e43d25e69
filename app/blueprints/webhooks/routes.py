"""``POST /webhooks/<gateway>``: processor events, verified on the raw body (ADR 0018).

The signature is the authentication (no login, no CSRF token). A request whose
signature does not verify gets a short 400 and nothing is stored; a verified event is
stored once and applied by :mod:`app.services.webhooks`, and the processor hears 200
(also for an event it already delivered) or, when applying failed, 500 so it delivers
the event again.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, request
from werkzeug.wrappers import Response

from app.clock import utcnow
from app.domain.errors import InvalidInput
from app.extensions import csrf, db_session, gateway
from app.gateway.base import WebhookSignatureError
from app.services import webhooks
from app.web.payer import enqueue_after_commit

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
csrf.exempt(bp)

# Stripe's events are a few kilobytes; a larger body is not an event.
MAX_PAYLOAD_BYTES = 256 * 1024


@bp.post("/<any(stripe, sandbox):gateway_name>")
def receive(gateway_name: str) -> tuple[Response, int]:
    processor = gateway()
    if gateway_name != processor.name:
        abort(404)
    if (request.content_length or 0) > MAX_PAYLOAD_BYTES:
        return jsonify({"error": "The payload is too large."}), 413
    request.max_content_length = MAX_PAYLOAD_BYTES  # a chunked body has no length to check
    payload = request.get_data(cache=False)
    try:
        event = processor.parse_webhook(payload, request.headers)
    except WebhookSignatureError:
        return jsonify({"error": "The signature does not verify."}), 400
    try:
        delivery = webhooks.receive_event(db_session(), processor, event, now=utcnow())
    except InvalidInput as exc:
        return jsonify({"error": exc.message}), 400
    except webhooks.EventNotApplied:
        current_app.logger.exception("processor event %s stored, not applied", event.id)
        return jsonify({"error": "The event is stored but not applied; deliver it again."}), 500
    enqueue_after_commit(delivery.email_ids)
    body = {"received": True, "outcome": delivery.outcome, "duplicate": delivery.duplicate}
    return jsonify(body), 200
