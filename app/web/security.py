"""Security headers on every response.

First-party pages may not be framed at all; embeddable widgets set their own
``frame-ancestors`` from the partner's allowed origins (see the components blueprint).
"""

from __future__ import annotations

from flask import Flask, Response, g


def allow_framing_by(origins: list[str]) -> None:
    """Let the current response be framed by exactly ``origins``."""
    g.frame_ancestors = origins


def init_app(app: Flask) -> None:
    @app.after_request
    def set_headers(response: Response) -> Response:
        ancestors = g.get("frame_ancestors")
        frame = " ".join(ancestors) if ancestors else "'none'"
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            f"form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors {frame}",
        )
        if not ancestors:
            response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response
