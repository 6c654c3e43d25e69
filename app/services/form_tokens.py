"""Signed, expiring, single-use form tokens for widgets and pay links.

A token names what the form is for (a widget key or a pay link) and carries a random
nonce. The nonce becomes the purpose key of the payment attempt (``form:<nonce>``), so a
token can move money once: a replay, a double click or a second tab finds the attempt
the first submission created.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from app.domain.errors import DomainError

FORM_TOKEN_MAX_AGE = 2 * 60 * 60


class FormTokenInvalid(DomainError):
    """A token that was altered or belongs to another form (HTTP 400)."""

    status_code = 400

    def __init__(self) -> None:
        super().__init__(
            "This payment form could not be verified. Reload the page and try again; "
            "nothing was charged."
        )


class FormTokenExpired(DomainError):
    """A genuine token past its age; the payer gets a fresh form."""

    status_code = 422

    def __init__(self) -> None:
        super().__init__(
            "This form timed out before it was sent; nothing was charged. Please try again."
        )


@dataclass(frozen=True)
class FormToken:
    subject: str  # "widget:<key>" or "paylink:<id>"
    nonce: str

    @property
    def purpose_key(self) -> str:
        return f"form:{self.nonce}"


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="portico-form-token")


def issue(secret: str, subject: str) -> str:
    """A new token for a form about ``subject``."""
    return _serializer(secret).dumps({"s": subject, "n": secrets.token_urlsafe(18)})


def verify(
    secret: str, token: str, *, subject: str, max_age: int = FORM_TOKEN_MAX_AGE
) -> FormToken:
    """The token's nonce if it is genuine, unexpired and for ``subject``.

    Raises:
        FormTokenExpired: genuine but older than ``max_age`` seconds.
        FormTokenInvalid: altered, malformed, or issued for another subject.
    """
    try:
        data = _serializer(secret).loads(token, max_age=max_age)
    except SignatureExpired:
        raise FormTokenExpired() from None
    except BadSignature:
        raise FormTokenInvalid() from None
    if not isinstance(data, dict) or data.get("s") != subject or not isinstance(data.get("n"), str):
        raise FormTokenInvalid()
    return FormToken(subject=subject, nonce=data["n"])
