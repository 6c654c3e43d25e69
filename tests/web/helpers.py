"""Helpers for driving the app like a browser: CSRF tokens and signing in."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

DEMO_PASSWORD = "portico-demo"
_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token of the form on ``path`` (as a browser would read it)."""
    page = client.get(path).get_data(as_text=True)
    match = _TOKEN.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(client: FlaskClient, email: str, password: str = DEMO_PASSWORD):  # noqa: ANN201
    """Post the sign-in form with a valid CSRF token; returns the response."""
    token = csrf_token(client, "/login")
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})
