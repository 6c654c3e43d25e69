"""Small view helpers shared by first-party pages: single-use form tokens and PDF downloads."""

from __future__ import annotations

from flask import make_response, request
from werkzeug.wrappers import Response

from app.services import form_tokens
from app.web.payer import settings

TIMED_OUT = "This form timed out before it was sent; nothing was saved. Please try again."


def new_form_token(subject: str) -> str:
    """A signed, expiring token for one form of ``subject`` (its nonce makes a submission
    count once)."""
    return form_tokens.issue(settings().secret_key, subject)


def verified(subject: str) -> form_tokens.FormToken | None:
    """The posted form token for ``subject``; None when it timed out (the page is redrawn).

    Raises FormTokenInvalid (400) for an altered token or one of another form.
    """
    try:
        return form_tokens.verify(
            settings().secret_key, request.form.get("form_token", ""), subject=subject
        )
    except form_tokens.FormTokenExpired:
        return None


def pdf_response(body: bytes, filename: str) -> Response:
    """A PDF download, never cached by shared caches."""
    response = make_response(body)
    response.headers["Content-Type"] = "application/pdf"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
