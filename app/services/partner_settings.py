"""A partner's embedding settings: allowed origins, snippets, payment-link options."""

from __future__ import annotations

import html
import ipaddress
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from sqlmodel import Session

from app.domain.errors import InvalidInput
from app.models import Partner, User, Widget
from app.services.admin_access import audit as _audit
from app.services.admin_access import partner_for_update as _partner_for_update

MAX_ORIGINS: Final = 20
PAY_LINK_DAYS_RANGE: Final = (1, 365)
_MAX_ORIGIN_LENGTH: Final = 300
_DNS_LABEL: Final = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.ASCII)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass(frozen=True)
class EmbedSnippets:
    """The two ways to place a widget on a page, as text to copy."""

    script: str
    iframe: str


def embed_snippets(base_url: str, widget: Widget) -> EmbedSnippets:
    """The one-line script snippet and the iframe alternative for ``widget``."""
    base = html.escape(base_url.rstrip("/"))
    key = html.escape(widget.key)
    return EmbedSnippets(
        script=f'<script src="{base}/embed.js" data-widget="{key}" async></script>',
        iframe=(
            f'<iframe src="{base}/embed/take-payment/{key}" title="{html.escape(widget.title)}"'
            ' style="width:100%;border:0" loading="lazy"></iframe>'
        ),
    )


# -- allowed origins -----------------------------------------------------------------------


def _host(hostname: str) -> str | None:
    """A lower-case ASCII host (IDN as punycode, IPv6 in brackets), or None if invalid."""
    if ":" in hostname:
        try:
            return f"[{ipaddress.IPv6Address(hostname).compressed}]"
        except ValueError:
            return None
    try:
        ascii_host = hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        return None
    if labels[-1].isdigit():  # all-numeric last label: only a real IPv4 address is a host
        try:
            return str(ipaddress.IPv4Address(ascii_host))
        except ValueError:
            return None
    return ascii_host


def normalize_origin(text: str) -> str:
    """The origin in ``text`` as browsers write it: ``https://Example.org/`` -> ``https://example.org``.

    Accepts an http or https scheme, a host and an optional port (the scheme's default
    port is dropped); a single trailing slash is tolerated.

    Raises:
        InvalidInput: (field ``origin``) anything else: another scheme, a path, query or
            fragment, a user name or password, a wildcard, or a malformed host or port.
    """
    example = "such as https://community.example.org"
    raw = (text or "").strip()
    if not raw:
        raise InvalidInput(f"Enter an origin, {example}.", "origin")
    if len(raw) > _MAX_ORIGIN_LENGTH:
        raise InvalidInput("That origin is too long.", "origin")
    if "*" in raw:
        raise InvalidInput(
            f"Wildcards are not allowed: enter each origin in full, {example}.", "origin"
        )
    if any(ch.isspace() or ord(ch) < 32 or ch in "\\%" for ch in raw):
        raise InvalidInput(f"Enter an origin without spaces or escapes, {example}.", "origin")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise InvalidInput(f"Check the host and port, {example}:8443.", "origin") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not raw.lower().startswith(f"{scheme}://"):
        raise InvalidInput(f"Start the origin with https:// (or http://), {example}.", "origin")
    if "@" in parts.netloc:
        raise InvalidInput("Leave out any user name or password.", "origin")
    if parts.path not in ("", "/") or "?" in raw or "#" in raw:
        raise InvalidInput(
            "Enter only the scheme, host and port, without a path: "
            "https://example.org, not https://example.org/donate.",
            "origin",
        )
    host = _host(parts.hostname or "")
    if host is None:
        raise InvalidInput(f"Enter a valid host name, {example}.", "origin")
    if port == 0:
        raise InvalidInput("Enter a port between 1 and 65535.", "origin")
    suffix = "" if port is None or port == _DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{suffix}"


def add_allowed_origin(session: Session, user: User, origin: str) -> list[str]:
    """Allow pages on ``origin`` to embed the partner's widgets. Commits.

    Returns the partner's allowed origins after the change.

    Raises:
        NotFound: the user is not a partner admin.
        InvalidInput: (field ``origin``) the origin is malformed (see
            :func:`normalize_origin`), already allowed, or the list is full.
    """
    normalized = normalize_origin(origin)
    partner = _partner_for_update(session, user)
    current = list(partner.allowed_origins or [])
    if normalized in current:
        raise InvalidInput(f"{normalized} is already allowed.", "origin")
    if len(current) >= MAX_ORIGINS:
        raise InvalidInput(
            f"You can allow at most {MAX_ORIGINS} origins. Remove one first.", "origin"
        )
    partner.allowed_origins = [*current, normalized]  # a new list, so the JSON change is seen
    session.add(partner)
    _audit(session, user, "partner.origin_added", "partner", partner.id, {"origin": normalized})
    session.commit()
    return list(partner.allowed_origins)


def remove_allowed_origin(session: Session, user: User, origin: str) -> list[str]:
    """Stop allowing ``origin``; removing an origin that is not listed changes nothing.

    Commits when something was removed. Returns the allowed origins after the change.

    Raises:
        NotFound: the user is not a partner admin.
    """
    partner = _partner_for_update(session, user)
    current = list(partner.allowed_origins or [])
    try:
        target = normalize_origin(origin)
    except InvalidInput:
        target = (origin or "").strip()  # a stored value from before normalization existed
    if target not in current:
        return current
    partner.allowed_origins = [o for o in current if o != target]
    session.add(partner)
    _audit(session, user, "partner.origin_removed", "partner", partner.id, {"origin": target})
    session.commit()
    return list(partner.allowed_origins)


# -- pay links -----------------------------------------------------------------------------


def update_payment_settings(
    session: Session, user: User, *, allow_partial_payments: bool, pay_link_days: int
) -> Partner:
    """Set whether payers may pay invoices in part, and how long pay links stay valid.

    Commits. Links already sent keep the expiry they were created with.

    Raises:
        NotFound: the user is not a partner admin.
        InvalidInput: (field ``pay_link_days``) the number of days is out of range.
    """
    low, high = PAY_LINK_DAYS_RANGE
    if not low <= pay_link_days <= high:
        raise InvalidInput(f"Enter a number of days from {low} to {high}.", "pay_link_days")
    partner = _partner_for_update(session, user)
    partner.allow_partial_payments = allow_partial_payments
    partner.pay_link_days = pay_link_days
    session.add(partner)
    _audit(
        session,
        user,
        "partner.payment_settings_updated",
        "partner",
        partner.id,
        {"allow_partial_payments": allow_partial_payments, "pay_link_days": pay_link_days},
    )
    session.commit()
    return partner
