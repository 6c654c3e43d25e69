"""Headers and sessions (issue 10, ADR 0019): CSP on every page, cookie flags, sessions
renewed at sign-in and ended at sign-out and password reset, sign-in throttled per
address, passwords hashed with scrypt.

The CSP walk reads every GET route from ``app.url_map`` and opens it, as a user whose
role may open it, with ids and tokens of real records (``walk_helpers.build_world``), so
a route added later is walked the day it is registered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app import create_app
from app.config import Settings, load_settings
from app.models import OutboxMessage, User
from app.services.auth import hash_password
from app.services.auth_throttle import (
    ADDRESS_LIMIT,
    ADDRESS_WINDOW,
    TooManyAttempts,
    ensure_address_allowed,
    record_address_failure,
)
from tests.web.helpers import DEMO_PASSWORD, csrf_token, sign_in
from tests.web.walk_helpers import CUSTOMER, OPERATOR, PARTNER_ADMIN, World, build_world

NEW_PASSWORD = "a brand new passphrase"
ACTOR_BY_BLUEPRINT = {"operator": OPERATOR, "partner": PARTNER_ADMIN, "portal": CUSTOMER}
ACTOR_BY_ENDPOINT = {"auth.change_password_page": CUSTOMER}  # any signed-in user's page
# Documents only our own pages frame: an email's HTML part in the outbox's preview frame.
FRAMED_BY_OURSELVES = {"operator.outbox_html"}
# Answers other than 200 that the walk expects, with why.
EXPECTED_STATUS = {"auth.index": 302}  # the home of an anonymous visitor is the sign-in page
# Query strings a route needs to answer 200.
QUERY = {
    "partner.export_invoices": "?from=2020-01-01&to=2030-12-31",
    "partner.export_payments": "?from=2020-01-01&to=2030-12-31",
}
_UNSAFE_SCRIPT_SOURCES = {"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "data:"}
_CONTROL_AND_SPACE = re.compile(r"[\x00-\x20]+")


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def world(app: Flask) -> World:
    return build_world(app)


# -- the CSP walk ---------------------------------------------------------------------------


class _PageScan(HTMLParser):
    """Inline scripts (with their nonce), inline event handlers and ``javascript:`` URLs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.inline_script_nonces: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {name.lower(): value or "" for name, value in attrs}
        for name, value in named.items():
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=…> (inline event handler)")
            if name.startswith(("hx-on", "data-hx-on")):
                self.problems.append(f"<{tag} {name}=…> (htmx runs it with eval)")
            plain = _CONTROL_AND_SPACE.sub("", value).lower()
            if plain.startswith("javascript:"):
                self.problems.append(f"<{tag} {name}={value!r}> (javascript: URL)")
            if name.startswith(("hx-", "data-hx-")) and plain.startswith("js:"):
                self.problems.append(f"<{tag} {name}={value!r}> (htmx runs it with eval)")
        if tag == "script":
            src = named.get("src")
            if src is None:
                self.inline_script_nonces.append(named.get("nonce"))
            elif not src.startswith("/") or src.startswith("//"):
                self.problems.append(f"<script src={src!r}> (not from our origin)")


def _directives(header: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            found[words[0].lower()] = words[1:]
    return found


def _csp_problems(endpoint: str, rule: str, response, world: World) -> list[str]:  # noqa: ANN001
    header = response.headers.get("Content-Security-Policy")
    if not header:
        return ["no Content-Security-Policy header"]
    policy = _directives(header)
    problems = []
    scripts = policy.get("script-src", policy.get("default-src"))
    if scripts is None:
        problems.append("neither script-src nor default-src")
    else:
        problems += [f"script-src allows {s}" for s in scripts if s in _UNSAFE_SCRIPT_SOURCES]
    if policy.get("object-src") != ["'none'"]:
        problems.append(f"object-src is {policy.get('object-src')}")
    if policy.get("base-uri") != ["'none'"]:
        problems.append(f"base-uri is {policy.get('base-uri')}")
    framing = world.embed_origins if rule.startswith("/embed/") else ["'none'"]
    if endpoint in FRAMED_BY_OURSELVES:
        framing = ["'self'"]
    if policy.get("frame-ancestors") != framing:
        problems.append(f"frame-ancestors is {policy.get('frame-ancestors')}, not {framing}")
    if response.mimetype == "text/html":
        scan = _PageScan()
        scan.feed(response.get_data(as_text=True))
        problems += scan.problems
        nonces = [s.removeprefix("'nonce-").removesuffix("'") for s in scripts or []]
        for nonce in scan.inline_script_nonces:
            if nonce is None or nonce not in nonces or not nonce:
                problems.append(f"inline <script> whose nonce {nonce!r} is not the CSP's")
    return problems


def _signed_in_clients(app: Flask) -> dict[str | None, FlaskClient]:
    clients: dict[str | None, FlaskClient] = {None: app.test_client()}
    for email in (OPERATOR, PARTNER_ADMIN, CUSTOMER):
        clients[email] = app.test_client()
        assert sign_in(clients[email], email).status_code == 303, email
    return clients


def test_does_every_page_carry_a_strict_content_security_policy(app: Flask, world: World) -> None:
    clients = _signed_in_clients(app)
    rules = [r for r in app.url_map.iter_rules() if "GET" in (r.methods or set())]
    failures: dict[str, list[str]] = {}
    walked = set()
    for rule in sorted(rules, key=lambda r: r.rule):
        endpoint = rule.endpoint
        try:
            path = world.path(endpoint, rule.rule) + QUERY.get(endpoint, "")
        except KeyError as exc:
            failures[rule.rule] = [f"walk_helpers.World knows no value for {exc}: add one"]
            continue
        actor = ACTOR_BY_ENDPOINT.get(endpoint) or ACTOR_BY_BLUEPRINT.get(
            endpoint.partition(".")[0]
        )
        response = clients[actor].get(path)
        expected = EXPECTED_STATUS.get(endpoint, 200)
        problems = _csp_problems(endpoint, rule.rule, response, world)
        if response.status_code != expected:
            problems.insert(0, f"answered {response.status_code}, not {expected} as {actor}")
        if problems:
            failures[f"{path} ({endpoint})"] = problems
        walked.add(endpoint)
    assert not failures, "\n".join(f"{page}: {'; '.join(p)}" for page, p in failures.items())
    # The walk reached the first-party pages, the widgets and the token pages alike.
    assert {"partner.customer", "portal.account", "operator.run", "components.take_payment",
            "components.pay_now", "approve.page", "auth.password_reset"} <= walked  # fmt: skip


def test_does_a_template_nonce_reach_the_policy(app: Flask) -> None:
    with app.test_request_context("/"):
        template = app.jinja_env.from_string('<script nonce="{{ csp_nonce() }}">1</script>')
        html = template.render()
        response = app.process_response(app.make_response(html))

    scripts = _directives(response.headers["Content-Security-Policy"])["script-src"]
    nonce = re.search(r'nonce="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    assert scripts == ["'self'", f"'nonce-{nonce}'"]


def test_does_an_error_page_carry_the_policy_too(client: FlaskClient) -> None:
    response = client.get("/no-such-page")

    assert response.status_code == 404
    policy = _directives(response.headers["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"]


def test_are_inline_handlers_and_javascript_urls_found_by_the_walk() -> None:
    scan = _PageScan()
    scan.feed(
        '<a href=" JaVa\tscript:alert(1)">x</a><button onclick="go()">y</button>'
        '<div hx-on:click="x()"></div><script>evil()</script><script src="/static/a.js"></script>'
    )
    assert len(scan.problems) == 3
    assert scan.inline_script_nonces == [None]


# -- cookies --------------------------------------------------------------------------------


def _app_with(settings: Settings, engine: Engine) -> Flask:
    flask_app = create_app(config={"TESTING": True}, settings=settings)
    resources = flask_app.extensions["portico"]
    resources.engine.dispose()
    resources.engine = engine
    return flask_app


def _production_settings(test_settings: Settings) -> Settings:
    return Settings(
        env="production",
        secret_key="a-production-secret-that-is-long-and-random-0123456789",
        database_url=test_settings.database_url,
        redis_url=test_settings.redis_url,
        base_url="http://portal.example",  # even a base URL that says http
    )


def _session_cookie_header(response) -> str:  # noqa: ANN001
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("session=")]
    assert len(headers) == 1, response.headers.getlist("Set-Cookie")
    return headers[0]


@pytest.mark.usefixtures("demo")
def test_are_production_session_cookies_secure_httponly_and_samesite(
    app: Flask, engine: Engine
) -> None:
    production = _app_with(_production_settings(app.config["PORTICO"]), engine)
    client = production.test_client()
    token = csrf_token(client, "/login")
    response = client.post(
        "/login", data={"email": CUSTOMER, "password": DEMO_PASSWORD, "csrf_token": token}
    )

    assert response.status_code == 303
    flags = [flag.strip().lower() for flag in _session_cookie_header(response).split(";")]
    assert "secure" in flags and "httponly" in flags and "samesite=lax" in flags
    assert not any(h.startswith("remember_token=") for h in response.headers.getlist("Set-Cookie"))
    assert production.config["REMEMBER_COOKIE_SECURE"] is True
    assert production.config["REMEMBER_COOKIE_HTTPONLY"] is True
    assert production.config["REMEMBER_COOKIE_SAMESITE"] == "Lax"


def test_does_production_default_to_secure_cookies_whatever_the_base_url() -> None:
    environ = {"SECRET_KEY": "x" * 48, "PORTICO_BASE_URL": "http://portal.example"}
    assert load_settings(environ).secure_cookies is True  # PORTICO_ENV defaults to production
    development = load_settings({**environ, "PORTICO_ENV": "development"})
    assert development.secure_cookies is False  # `make run` serves plain http
    https = load_settings(
        {**environ, "PORTICO_ENV": "development", "PORTICO_BASE_URL": "https://x"}
    )
    assert https.secure_cookies is True


def test_does_development_keep_its_cookie_usable_over_http(app: Flask, client: FlaskClient) -> None:
    response = client.get("/login")

    flags = [flag.strip().lower() for flag in _session_cookie_header(response).split(";")]
    assert "secure" not in flags and "httponly" in flags and "samesite=lax" in flags


# -- sessions -------------------------------------------------------------------------------


def _emailed_path(db: Session, kind: str, to: str) -> str:
    db.expire_all()
    message = db.exec(
        select(OutboxMessage)
        .where(OutboxMessage.kind == kind, OutboxMessage.to_address == to)
        .order_by(col(OutboxMessage.id).desc())
    ).first()
    assert message is not None, f"no {kind} email to {to}"
    match = re.search(r"http://localhost(/\S+)", message.text_body)
    assert match, message.text_body
    return match.group(1)


def _ask_for_email(client: FlaskClient, path: str, email: str) -> None:
    response = client.post(path, data={"email": email, "csrf_token": csrf_token(client, path)})
    assert response.status_code == 200


def _by_password(client: FlaskClient, db: Session, app: Flask) -> str:
    assert sign_in(client, CUSTOMER).status_code == 303
    return CUSTOMER


def _by_link(client: FlaskClient, db: Session, app: Flask) -> str:
    _ask_for_email(client, "/login/link", CUSTOMER)
    link = _emailed_path(db, "sign_in_link", CUSTOMER)
    response = client.post(link, data={"csrf_token": csrf_token(client, link)})
    assert response.status_code == 303
    return CUSTOMER


def _by_reset(client: FlaskClient, db: Session, app: Flask) -> str:
    _ask_for_email(client, "/password/forgot", CUSTOMER)
    link = _emailed_path(db, "password_reset", CUSTOMER)
    data = {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    response = client.post(link, data={**data, "csrf_token": csrf_token(client, link)})
    assert response.status_code == 303
    return CUSTOMER


def _by_invitation(client: FlaskClient, db: Session, app: Flask) -> str:
    admin = app.test_client()
    assert sign_in(admin, PARTNER_ADMIN).status_code == 303
    form = {"name": "Robin", "email": "robin@us-partner.example", "role": "partner_sales"}
    response = admin.post(
        "/partner/users/invite", data={**form, "csrf_token": csrf_token(admin, "/partner/users")}
    )
    assert response.status_code in (200, 303), response.status_code
    link = _emailed_path(db, "invite", "robin@us-partner.example")
    data = {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    response = client.post(link, data={**data, "csrf_token": csrf_token(client, link)})
    assert response.status_code == 303
    return "robin@us-partner.example"


def _session_state(client: FlaskClient) -> dict:
    with client.session_transaction() as session:
        return dict(session)


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("way_in", [_by_password, _by_link, _by_reset, _by_invitation])
def test_does_every_way_in_start_a_fresh_session(
    app: Flask, client: FlaskClient, db: Session, way_in
) -> None:  # noqa: ANN001
    token_before = csrf_token(client, "/login")  # the anonymous session exists now
    with client.session_transaction() as session:
        session["planted"] = "set before sign-in"
    cookie_before = client.get_cookie("session").value  # type: ignore[union-attr]

    email = way_in(client, db, app)

    state = _session_state(client)
    user = db.exec(select(User).where(User.email == email)).one()
    db.refresh(user)
    assert client.get_cookie("session").value != cookie_before  # type: ignore[union-attr]
    assert "planted" not in state
    assert state["_user_id"] == str(user.id)
    assert state["_session_version"] == user.session_version
    page = "/partner/" if email != CUSTOMER else "/portal/"
    token_after = re.search(
        r'name="csrf-token" content="([^"]+)"', client.get(page).get_data(as_text=True)
    )
    assert token_after is not None and token_after.group(1) != token_before


@pytest.mark.usefixtures("demo")
def test_does_a_copied_cookie_stop_working_after_sign_out(app: Flask, client: FlaskClient) -> None:
    assert sign_in(client, CUSTOMER).status_code == 303
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)  # type: ignore[union-attr]
    assert thief.get("/portal/").status_code == 200  # the copy works while the owner is in

    signed_out = client.post("/logout", data={"csrf_token": csrf_token(client, "/portal/")})

    assert signed_out.status_code == 303
    assert client.get("/portal/").status_code == 302
    response = thief.get("/portal/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


@pytest.mark.usefixtures("demo")
def test_does_a_password_reset_end_the_session_on_another_device(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    other_device = app.test_client()
    assert sign_in(other_device, CUSTOMER).status_code == 303
    assert other_device.get("/portal/").status_code == 200

    _by_reset(client, db, app)

    # The device that chose the new password is signed in with it (changing it while
    # signed in does the same: tests/web/test_change_password.py).
    assert client.get("/portal/").status_code == 200
    response = other_device.get("/portal/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert sign_in(other_device, CUSTOMER).status_code == 401  # the old password is gone
    assert sign_in(other_device, CUSTOMER, NEW_PASSWORD).status_code == 303


@pytest.mark.usefixtures("demo")
def test_does_reactivation_leave_the_old_session_ended(app: Flask, db: Session) -> None:
    sales = app.test_client()
    assert sign_in(sales, "sales@us-partner.example").status_code == 303
    sales_id = db.exec(select(User.id).where(User.email == "sales@us-partner.example")).one()
    admin = app.test_client()
    assert sign_in(admin, PARTNER_ADMIN).status_code == 303
    token = csrf_token(admin, "/partner/users")

    for action in ("deactivate", "reactivate"):
        response = admin.post(f"/partner/users/{sales_id}/{action}", data={"csrf_token": token})
        assert response.status_code in (200, 303), (action, response.status_code)

    assert sales.get("/partner/").status_code == 302  # signed out, and stays so
    assert sign_in(sales, "sales@us-partner.example").status_code == 303


# -- sign-in throttle and password hashes ---------------------------------------------------


@pytest.mark.usefixtures("demo")
def test_is_sign_in_throttled_per_address_when_emails_rotate(client: FlaskClient) -> None:
    sprayer = {"REMOTE_ADDR": "203.0.113.7"}
    for n in range(ADDRESS_LIMIT):
        data = {
            "email": f"victim{n}@example.com",
            "password": "Summer2026!",
            "csrf_token": csrf_token(client),
        }
        assert client.post("/login", data=data, environ_base=sprayer).status_code == 401

    data = {"email": CUSTOMER, "password": DEMO_PASSWORD, "csrf_token": csrf_token(client)}
    refused = client.post("/login", data=data, environ_base=sprayer)

    assert refused.status_code == 429  # even the right password, so guessing stays useless
    page = refused.get_data(as_text=True)
    assert "Too many failed sign-in attempts from your network" in page
    assert 'name="email"' in page  # the answer is the form, with the message on it
    assert 0 < int(refused.headers["Retry-After"]) <= 600
    with client.session_transaction() as session:
        assert "_user_id" not in session
    # Someone at another address is not affected.
    elsewhere = client.post("/login", data=data, environ_base={"REMOTE_ADDR": "198.51.100.4"})
    assert elsewhere.status_code == 303


def test_does_the_address_window_slide(app: Flask) -> None:
    redis = app.extensions["portico"].redis
    start = datetime(2026, 12, 7, 9, 59, 30, tzinfo=UTC)  # straddles 10:00 on purpose
    for second in range(ADDRESS_LIMIT):
        record_address_failure(redis, "203.0.113.8", now=start + timedelta(seconds=second))
    ensure_address_allowed(redis, "198.51.100.4", now=start)  # other addresses unaffected

    with pytest.raises(TooManyAttempts) as refused:
        ensure_address_allowed(redis, "203.0.113.8", now=start + timedelta(minutes=9))
    assert refused.value.retry_after == timedelta(minutes=1)
    ensure_address_allowed(redis, "203.0.113.8", now=start + ADDRESS_WINDOW)  # first one left


@pytest.mark.usefixtures("demo")
def test_are_passwords_hashed_with_scrypt(client: FlaskClient, db: Session, app: Flask) -> None:
    _by_reset(client, db, app)

    hashes = {u.email: u.password_hash for u in db.exec(select(User))}
    assert hashes[CUSTOMER].startswith("scrypt:32768:8:1$")  # set from the reset form
    assert hashes[PARTNER_ADMIN].startswith("scrypt:32768:8:1$")  # the demo seed
    assert hash_password("anything at all").startswith("scrypt:32768:8:1$")
