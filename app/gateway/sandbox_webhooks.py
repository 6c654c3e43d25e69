"""Signing and verifying the sandbox processor's webhooks.

The scheme mirrors Stripe's: header ``Sandbox-Signature: t=<unix time>,v1=<hex>``
where ``<hex>`` is HMAC-SHA256 over ``"<t>." + payload`` with the webhook secret, and
an event older (or newer) than the tolerance is refused so a captured request cannot be
replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

from app.gateway.base import WebhookEvent, WebhookSignatureError

SIGNATURE_HEADER = "Sandbox-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300


def signature(secret: bytes, timestamp: int, payload: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + payload`` under ``secret``."""
    return hmac.new(secret, f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()


def sign(secret: bytes, payload: bytes, *, timestamp: int) -> dict[str, str]:
    """The headers that carry a signature of ``payload`` made at ``timestamp``."""
    return {SIGNATURE_HEADER: f"t={timestamp},v1={signature(secret, timestamp, payload)}"}


def verify(
    secret: bytes, payload: bytes, headers: Mapping[str, str], *, now: float
) -> WebhookEvent:
    """Check the signature header of ``payload`` and decode the event in it.

    The payload is a JSON object with ``id``, ``type`` (strings) and ``data`` (an object).

    Raises:
        WebhookSignatureError: missing or malformed header, no matching ``v1``
            signature, a timestamp more than 300 seconds from ``now``, or a payload
            that is not such an event.
    """
    header = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), "")
    pairs = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [value for name, value in pairs if name == "t"]
    candidates = [value for name, value in pairs if name == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not candidates:
        raise WebhookSignatureError(f"Missing or malformed {SIGNATURE_HEADER} header.")
    timestamp = int(stamps[0])
    expected = signature(secret, timestamp, payload)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise WebhookSignatureError("No signature matches the payload.")
    if abs(now - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        raise WebhookSignatureError("The signature is too old (or from the future).")
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise WebhookSignatureError("The payload is not JSON.") from exc
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
        and isinstance(event.get("data"), dict)
    ):
        raise WebhookSignatureError("The payload is not an event.")
    created = event.get("created")
    return WebhookEvent(
        id=event["id"],
        type=event["type"],
        data=event["data"],
        created=created if isinstance(created, int) and not isinstance(created, bool) else 0,
    )
