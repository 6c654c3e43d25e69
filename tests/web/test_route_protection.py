"""Every route that needs a login refuses an anonymous request; roles stay in their area.

The routes are read from ``app.url_map``, so a route added by a later issue is covered
the day it is registered. Only the allow-list below may answer an anonymous request:

- ``static``: stylesheets and scripts;
- ``auth.index``, ``auth.login``, ``auth.logout``: the way in (and out: signing out an
  anonymous session is harmless, and ``/logout`` is still CSRF-protected);
- ``health.healthz``: load balancers call it without a session;
- ``auth.accept_invite``: an invited partner user has no password yet; the signed,
  expiring, single-use token in the emailed link is the credential (its own tests in
  ``test_partner_users_pages.py`` prove a bad, used or expired token is refused);
- ``auth.link_request``, ``auth.password_forgot``: asking for an emailed sign-in or
  reset link is for people who cannot sign in; the answer is the same whether or not
  the email has an account, and sends at most a few links per user per 15 minutes;
- ``auth.link_sign_in``, ``auth.password_reset``: the random, expiring, single-use token
  in the emailed link is the credential; opening it signs nobody in, only a
  CSRF-protected POST does (``test_sign_in_links.py`` proves unknown, used and expired
  links are refused);
- every endpoint of the blueprints ``components`` (embedded widgets, cookie-less by
  design), ``pay`` (signed payment links) and ``webhooks`` (signed processor events):
  those authenticate with a signed token or signature instead of a login, and their own
  tests prove it;
- ``sandbox``: the sandbox processor's hosted card entry (card fields in, token out),
  standing in for a processor's own servers; registered only with the sandbox gateway.

Adding an endpoint to this list is a security decision: say why in the review.

``tests/security/test_tenant_matrix.py`` supersedes the anonymous sweep for every method
and every actor (with other tenants' ids and canaries); this file stays as the short,
readable statement of who may open what.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session
from werkzeug.routing import Rule
from werkzeug.security import generate_password_hash

from app import create_app
from app.config import Settings
from app.models import CustomerAccount, Partner, Role, User
from tests.web.helpers import csrf_token, sign_in

PUBLIC_ENDPOINTS = frozenset(
    {
        "static",
        "auth.login",
        "auth.index",
        "auth.logout",
        "auth.accept_invite",
        "auth.link_request",
        "auth.link_sign_in",
        "auth.password_forgot",
        "auth.password_reset",
        "health.healthz",
    }
)
PUBLIC_BLUEPRINTS = frozenset({"components", "pay", "approve", "webhooks", "sandbox"})
EXPECTED_PROTECTED = {
    "operator.partners",
    "partner.customers",
    "partner.customer",
    "portal.account",
}
PASSWORD = "a-long-test-password"
_CONVERTER = re.compile(r"<(?:(?P<converter>[a-zA-Z_][a-zA-Z0-9_]*)(?:\([^)]*\))?:)?(?P<name>\w+)>")


def _is_public(endpoint: str) -> bool:
    blueprint = endpoint.rpartition(".")[0]
    return endpoint in PUBLIC_ENDPOINTS or blueprint.split(".")[0] in PUBLIC_BLUEPRINTS


def _fill(rule: Rule) -> str:
    """The rule's path with ``<int:…>`` filled with 1 and any other variable with "x"."""

    def value(match: re.Match[str]) -> str:
        return "1" if match.group("converter") == "int" else "x"

    return _CONVERTER.sub(value, rule.rule)


def _route_map_app() -> Flask:
    """An app built only to read its url_map (it never connects to anything)."""
    return create_app(
        settings=Settings(
            env="test",
            secret_key="route-map-only",
            database_url="sqlite:///:memory:",
            redis_url="redis://127.0.0.1:1/0",
        )
    )


def _protected_requests() -> list[tuple[str, str, str]]:
    """(endpoint, method, path) for every method of every route not on the allow-list."""
    found = []
    for rule in _route_map_app().url_map.iter_rules():
        if _is_public(rule.endpoint):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, _fill(rule)))
    return sorted(found)


PROTECTED = _protected_requests()


def test_does_the_route_list_cover_the_known_protected_pages() -> None:
    assert {endpoint for endpoint, _, _ in PROTECTED} >= EXPECTED_PROTECTED


@pytest.mark.parametrize(
    ("endpoint", "method", "path"), PROTECTED, ids=[f"{m} {p}" for _, m, p in PROTECTED]
)
def test_does_an_anonymous_request_get_refused(
    client: FlaskClient, endpoint: str, method: str, path: str
) -> None:
    headers = {}
    if method != "GET":
        # A valid CSRF token, so the answer is about the login and not about CSRF.
        headers["X-CSRFToken"] = csrf_token(client, "/login")
    response = client.open(path, method=method, headers=headers)

    assert response.status_code in (302, 401, 404), (endpoint, response.status_code)
    if response.status_code == 302:
        assert response.headers["Location"].startswith("/login"), response.headers["Location"]


@cache
def _password_hash() -> str:
    # A real werkzeug hash, with few rounds so each check is fast (the demo users' hashes
    # come from hash_password, and the sign-in tests use those).
    return generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")


def _users(session: Session) -> None:
    partner = Partner(name="Tenant One", slug="tenant-one", country="US")
    session.add(partner)
    session.flush()
    account = CustomerAccount(
        partner_id=partner.id, name="Casey Customer", email="casey@example.com", currency="USD"
    )
    session.add(account)
    session.flush()
    password_hash = _password_hash()
    session.add_all(
        [
            User(
                email="casey@example.com",
                password_hash=password_hash,
                role=Role.CUSTOMER,
                partner_id=partner.id,
                customer_account_id=account.id,
            ),
            User(
                email="admin@tenant-one.example",
                password_hash=password_hash,
                role=Role.PARTNER_ADMIN,
                partner_id=partner.id,
            ),
            User(
                email="sales@tenant-one.example",
                password_hash=password_hash,
                role=Role.PARTNER_SALES,
                partner_id=partner.id,
            ),
        ]
    )
    session.commit()


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    """A session on the app's database; the ``app`` fixture empties it afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def people(app: Flask, db: Session) -> None:
    _users(db)


@pytest.mark.usefixtures("people")
@pytest.mark.parametrize("path", ["/partner/", "/partner/customers/1", "/operator/"])
def test_can_a_customer_open_the_partner_or_operator_pages(client: FlaskClient, path: str) -> None:
    assert sign_in(client, "casey@example.com", PASSWORD).status_code == 303
    assert client.get("/portal/").status_code == 200  # signed in, in their own area

    assert client.get(path).status_code == 404


@pytest.mark.usefixtures("people")
@pytest.mark.parametrize("email", ["admin@tenant-one.example", "sales@tenant-one.example"])
@pytest.mark.parametrize("path", ["/operator/", "/portal/"])
def test_can_a_partner_user_open_the_operator_or_customer_pages(
    client: FlaskClient, email: str, path: str
) -> None:
    assert sign_in(client, email, PASSWORD).status_code == 303
    assert client.get("/partner/").status_code == 200  # signed in, in their own area

    assert client.get(path).status_code == 404
