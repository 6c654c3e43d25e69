"""Security headers on every response.

First-party pages may not be framed at all; embeddable widgets set their own
``frame-ancestors`` from the partner's allowed origins (see the components blueprint).

Scripts run only from our own origin: no ``'unsafe-inline'``, no ``'unsafe-eval'``, and
no inline event handlers or ``javascript:`` URLs in templates (ADR 0019). A template that
truly needs an inline ``<script>`` writes ``<script nonce="{{ csp_nonce() }}">``; the
nonce is made on first use and only then added to ``script-src``, so pages without one
(and the widget forms cached across requests) carry no nonce at all.
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, g


def allow_framing_by(origins: list[str]) -> None:
    """Let the current response be framed by exactly ``origins``."""
    g.frame_ancestors = origins


def csp_nonce() -> str:
    """This response's script nonce (made on first call, then the same for the request)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(18)
    return g.csp_nonce


def content_security_policy(frame_ancestors: list[str] | None, nonce: str | None) -> str:
    """The CSP header value for a response framed by ``frame_ancestors`` (None: nobody)."""
    frame = " ".join(frame_ancestors) if frame_ancestors else "'none'"
    scripts = f"'self' 'nonce-{nonce}'" if nonce else "'self'"
    return (
        f"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src {scripts}; "
        f"form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors {frame}"
    )


def init_app(app: Flask) -> None:
    app.jinja_env.globals["csp_nonce"] = csp_nonce

    @app.after_request
    def set_headers(response: Response) -> Response:
        ancestors = g.get("frame_ancestors")
        response.headers.setdefault(
            "Content-Security-Policy", content_security_policy(ancestors, g.get("csp_nonce"))
        )
        if not ancestors:
            response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response
