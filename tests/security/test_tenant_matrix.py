"""The tenant isolation matrix: every route × every kind of actor × another tenant's records.

Each route of ``app.url_map`` is requested with every method it accepts (POSTs carry a
valid CSRF token of the actor's session, so CSRF is never the reason for a refusal), its
URL variables filled with the ids and tokens of a record the actor does not own:

- customer a1 aims at customer a2 (same partner) and at customer b1 (partner B), and a2
  at a1 and b1;
- partner A's admin and sales user aim at partner B's records, partner B's admin at A's;
- the operator and an anonymous visitor aim at partner B's records, partner B's customer
  b1 at a1.

Partner-level variables (product, widget, partner user, billing run) always name the
*other partner's* record. Every record carries canaries (``tenant_world``); every
response body is scanned for those its actor may not see.

What each route may answer is the table in ``route_expectations`` (one row per
endpoint, with the verdicts ``refuse``, ``own``, ``token``, ``operator``, ``public`` and
``webhook`` explained there). A route in ``app.url_map`` without a row fails
``test_does_every_route_have_an_expectation``, so a new route cannot slip past the matrix.

Beyond the URL, ``PROBES`` post another customer's or partner's id inside a form of the
actor's own record (a card on file, a product, a payment), and ``tenant_links`` checks
that no request left a row linking two tenants or two customers.

This supersedes the per-route parts of ``tests/web/test_route_protection.py`` (anonymous
requests) and ``tests/web/test_tenancy.py`` (a foreign account id), which stay as the
readable examples.

The app runs with production settings (``env="production"``): in development and test
the email outbox is readable by anyone signed in (see ``app/blueprints/operator/outbox.py``),
which would show other tenants' emails by design of that convenience.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from app import create_app
from app.config import Settings
from tests.conftest import _empty_all_tables
from tests.security.route_expectations import (
    EXPECTATIONS,
    NOT_RECORDS,
    QUERIES,
    Expect,
    Scope,
    may_see,
    related,
    verdict,
)
from tests.security.tenant_links import cross_tenant_links, tenant_snapshot
from tests.security.tenant_probes import PROBES, money, plausible_form
from tests.security.tenant_world import PASSWORD, PRICES, Actor, Path, Target, World, build_world
from tests.web.helpers import sign_in

# Requests that end or switch the actor's session run last.
LAST = ("auth.link_sign_in", "auth.logout")
SIGNED_IN_REFUSALS = frozenset({403, 404})
_VARIABLE = re.compile(r"<(?:[a-zA-Z_]\w*(?:\([^)]*\))?:)?(\w+)>")


# -- which actor aims at which records --------------------------------------------------------

MATRIX = [
    ("anonymous", "b1"),
    ("a1", "a2"),
    ("a1", "b1"),
    ("a2", "a1"),
    ("a2", "b1"),
    ("partner_admin_a", "b1"),
    ("partner_sales_a", "b1"),
    ("partner_admin_b", "a1"),
    ("operator", "b1"),
    ("b1", "a1"),  # a customer of the partner in Germany (EUR, VAT) aims at partner A
]


def _other_partner(actor: Actor) -> str:
    """The customer whose partner's records stand for "another partner" for ``actor``."""
    return "a1" if actor.tenant == "B" else "b1"


def _fill(
    world: World,
    actor: Actor,
    target: Target,
    rule: Rule,
    *,
    variant: int = 0,
    tamper: bool = False,
) -> str:
    """The rule's path with every variable naming ``target``'s record (or its partner's).

    ``variant`` picks among records of one kind in different states (an open, a paid, an
    overdue invoice and one the partner issued; a payment and its refund; an order awaiting
    approval and a draft), so the matrix's rows together reach each of them.
    """
    partner = world.targets[_other_partner(actor)]

    def pick(*ids: int) -> int:
        return ids[variant % len(ids)]

    records: dict[str, Callable[[], object]] = {
        "customer_id": lambda: target.customer_id,
        "invoice_id": lambda: pick(
            target.invoice_id,
            target.paid_invoice_id,
            target.late_invoice_id,
            target.spare_invoice_id,
        ),
        "order_id": lambda: pick(target.order_id, target.draft_order_id),
        "payment_id": lambda: pick(target.payment_id, target.refund_id),
        "subscription_id": lambda: target.subscription_id,
        "method_id": lambda: target.method_id,
        "scheduled_id": lambda: target.scheduled_id,
        "message_id": lambda: target.message_id,
        "product_id": lambda: partner.product_id,
        "widget_id": lambda: partner.widget_id,
        "user_id": lambda: pick(partner.staff_user_id, partner.user_id),
        "run_id": lambda: partner.run_id,
        "widget_key": lambda: partner.widget_key,
        "token": lambda: _token(target, partner, rule.endpoint),
    }

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in NOT_RECORDS:
            return NOT_RECORDS[name]
        if name not in records:
            raise AssertionError(f"{rule.endpoint}: no record for URL variable <{name}>")
        text = str(records[name]())
        return _tampered(text) if tamper and name in ("token", "widget_key") else text

    path = _VARIABLE.sub(value, rule.rule)
    return f"{path}?{QUERIES[rule.endpoint]}" if rule.endpoint in QUERIES else path


def _token(target: Target, partner: Target, endpoint: str) -> str:
    tokens = {
        "approve": target.approval_token,
        "pay": target.pay_token,
        "components.pay_now": target.pay_token,
        "components.submit_pay_now": target.pay_token,
        "auth.accept_invite": partner.invite_token,
        "auth.link_sign_in": target.sign_in_token,
        "auth.password_reset": target.reset_token,
    }
    for key in (endpoint, endpoint.partition(".")[0]):
        if key in tokens:
            return tokens[key]
    raise AssertionError(f"{endpoint}: no token of another tenant is known for it")


def _tampered(token: str) -> str:
    """The token with one character changed (a signature or nonce no longer matches)."""
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


def _token_scope(expect: Expect, target: Target, partner: Target) -> Scope:
    """The record a genuine token opens; True: what the record contains is shown too."""
    return {
        "invoice": ((*target.path, "inv", "open"), True),
        "order": ((*target.path, "order"), True),
        "customer": (target.path, False),  # who the link is for, not their invoices
        "invite": ((partner.tenant, "staff"), False),
        "widget": ((partner.tenant, "widget"), False),
    }[expect.scope]


def _problems(
    world: World,
    actor: Actor,
    kind: str,
    response: TestResponse,
    *,
    method: str,
    scope: Scope | None,
) -> list[str]:
    """What is wrong with ``response`` for the verdict ``kind`` (empty: nothing)."""
    status = response.status_code
    problems = []
    if status >= 500:
        problems.append(f"answered {status}")
    location = response.headers.get("Location", "")
    if kind == "refuse":
        to_login = status == 302 and re.match(r"^(https?://[^/]+)?/login\b", location)
        if status not in SIGNED_IN_REFUSALS and not (actor.role == "anonymous" and to_login):
            problems.append(f"answered {status} {location}".rstrip())
    if kind == "webhook" and status != 400:
        problems.append(f"an unsigned event answered {status}, not 400")
    if kind == "operator" and method == "GET" and status != 200:
        problems.append(f"the operator's console answered {status}, not 200")
    if kind == "operator":
        return problems  # reads every tenant by design
    text = response.get_data().decode("utf-8", "replace") + location
    seen = set(re.findall(r"cnry\d{4}q", text.lower()))
    for canary in sorted(seen):
        owner = world.canaries.owner[canary]
        if may_see(actor, owner) or (scope is not None and related(owner, *scope)):
            continue
        problems.append(f"shows {canary} of {'/'.join(owner)}")
    return problems


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def matrix_app(engine: Engine, database_url: str, redis_url: str) -> Iterator[Flask]:
    """The app with production settings on the test database and Redis."""
    from app.jobs.context import use_app

    settings = Settings(
        env="production",
        secret_key="tenant-matrix-secret-key-that-is-long-enough-for-production",
        database_url=database_url,
        redis_url=redis_url,
        base_url="http://localhost",
    )
    flask_app = create_app(config={"TESTING": True}, settings=settings)
    resources = flask_app.extensions["portico"]
    resources.engine.dispose()
    resources.engine = engine
    use_app(flask_app)
    yield flask_app
    _empty_all_tables(engine)
    resources.redis.flushdb()


@pytest.fixture(scope="module")
def world(matrix_app: Flask, engine: Engine) -> World:
    with Session(engine, expire_on_commit=False) as session:
        return build_world(matrix_app, session)


def _client(app: Flask, actor: Actor) -> tuple[FlaskClient, str]:
    """A browser for ``actor`` (signed in unless anonymous) and its session's CSRF token."""
    client = app.test_client()
    home = "/login"
    if actor.role != "anonymous":
        response = sign_in(client, actor.email, PASSWORD)
        assert response.status_code == 303, (actor.key, response.status_code)
        home = response.headers["Location"]
    page = client.get(home).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert match, f"no CSRF token on {home} for {actor.key}"
    return client, match.group(1)


def _requests(app: Flask) -> list[tuple[Rule, str]]:
    found = [
        (rule, method)
        for rule in app.url_map.iter_rules()
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    ]
    return sorted(
        found,
        key=lambda r: (
            r[0].endpoint in LAST,
            LAST.index(r[0].endpoint) if r[0].endpoint in LAST else 0,
            r[0].rule,
            r[1],
        ),
    )


def _send(client: FlaskClient, method: str, path: str, csrf: str) -> TestResponse:
    headers = {"X-CSRFToken": csrf} if method != "GET" else {}
    return client.open(path, method=method, headers=headers)


# -- tests ---------------------------------------------------------------------------------------


def test_does_every_route_have_an_expectation(matrix_app: Flask, world: World) -> None:
    endpoints = {rule.endpoint for rule in matrix_app.url_map.iter_rules()}

    missing = sorted(endpoints - set(EXPECTATIONS))
    stale = sorted(set(EXPECTATIONS) - endpoints)

    assert not missing, f"routes without a row in EXPECTATIONS: {missing}"
    assert not stale, f"rows for routes that no longer exist: {stale}"
    for rule in matrix_app.url_map.iter_rules():  # an unknown URL variable fails here
        assert "<" not in _fill(world, world.actors["a1"], world.targets["b1"], rule)


def test_is_the_world_built_with_every_record(world: World) -> None:
    for key in ("a1", "a2", "b1"):
        target = world.targets[key]
        assert all(vars(target).values()), target


@pytest.mark.parametrize(
    ("actor_key", "path_of", "owner"),
    [
        ("partner_admin_b", lambda t: f"/partner/customers/{t['b1'].customer_id}", ("B", "cust")),
        ("partner_admin_a", lambda t: f"/partner/invoices/{t['a2'].invoice_id}", ("A", "cust")),
        ("a1", lambda t: f"/portal/invoices/{t['a1'].invoice_id}", ("A", "cust", "a1", "inv")),
        ("operator", lambda t: f"/operator/customers/{t['b1'].customer_id}", ("B", "cust")),
        ("anonymous", lambda t: f"/pay/{t['b1'].pay_token}", ("B", "cust", "b1")),
        ("partner_admin_a", lambda t: f"/partner/?{QUERIES['partner.customers']}", ("A", "cust")),
        (
            "partner_admin_b",
            lambda t: f"/partner/exports/invoices.csv?{QUERIES['partner.export_invoices']}",
            ("B", "cust"),
        ),
        ("anonymous", lambda t: f"/approve/{t['a2'].approval_token}", ("A", "cust", "a2")),
    ],
    ids=[
        "partner-customer",
        "partner-invoice",
        "portal-invoice",
        "operator",
        "pay",
        "search",
        "export",
        "approve",
    ],
)
def test_do_the_canaries_show_where_they_belong(
    matrix_app: Flask, world: World, actor_key: str, path_of: Callable, owner: Path
) -> None:
    """The control: the scan would see a canary, because its own pages show it."""
    client, _ = _client(matrix_app, world.actors[actor_key])

    response = client.get(path_of(world.targets))

    assert response.status_code == 200
    seen = {
        world.canaries.owner[c] for c in re.findall(r"cnry\d{4}q", response.get_data(as_text=True))
    }
    assert any(path[: len(owner)] == owner for path in seen), seen


# -- another tenant's id in a form of one's own record --------------------------------------------
# These run before the matrix (pytest keeps the file's order): the matrix also posts the
# admins' own settings forms empty, after which the portal offers no product to join.


@pytest.mark.parametrize("name", list(PROBES))
def test_is_another_tenants_id_in_a_form_refused(
    matrix_app: Flask, world: World, engine: Engine, name: str
) -> None:
    probe = PROBES[name]
    actor = world.actors[probe.actor]
    client, csrf = _client(matrix_app, actor)
    data = {"csrf_token": csrf, **probe.data(world.targets)}
    if probe.form_page is not None:
        page = client.get(probe.form_page(world.targets)).get_data(as_text=True)
        match = re.search(r'name="token" value="([^"]+)"', page)
        assert match, f"no form token on {probe.form_page(world.targets)}"
        data["token"] = match.group(1)
    path = probe.path(world.targets)

    response = client.get(path) if probe.method == "GET" else client.post(path, data=data)

    assert response.status_code in probe.statuses, response.status_code
    assert not _problems(world, actor, "own", response, method=probe.method, scope=None)
    assert money(PRICES["B"]) not in response.get_data(as_text=True)
    with Session(engine) as session:
        assert not cross_tenant_links(session)


# -- the matrix ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("actor_key", "target_key"), MATRIX, ids=[f"{a}->{t}" for a, t in MATRIX])
def test_can_an_actor_reach_another_tenants_records(
    matrix_app: Flask, world: World, actor_key: str, target_key: str
) -> None:
    actor, target = world.actors[actor_key], world.targets[target_key]
    partner = world.targets[_other_partner(actor)]
    client, csrf = _client(matrix_app, actor)
    failures = []

    variant = MATRIX.index((actor_key, target_key))
    for rule, method in _requests(matrix_app):
        expect = EXPECTATIONS.get(rule.endpoint)
        if expect is None:
            continue  # test_does_every_route_have_an_expectation names it
        kind = verdict(expect, actor, rule)
        path = _fill(world, actor, target, rule, variant=variant)
        scope = _token_scope(expect, target, partner) if kind == "token" else None
        if rule.endpoint == "auth.logout":
            scope = (target.path, False)  # the sign-in link signed the browser in as its user
        try:
            response = _send(client, method, path, csrf)
        except Exception as exc:  # noqa: BLE001  (TESTING propagates a 500's exception)
            failures.append(f"{method} {path} [{rule.endpoint}, {kind}]: raised {exc!r}")
            continue
        for problem in _problems(world, actor, kind, response, method=method, scope=scope):
            failures.append(f"{method} {path} [{rule.endpoint}, {kind}]: {problem}")

    assert not failures, f"{actor_key} aiming at {target_key}:\n" + "\n".join(failures)


TOKEN_ENDPOINTS = sorted(e for e, x in EXPECTATIONS.items() if x.area == "token")


@pytest.mark.parametrize("actor_key", ["anonymous", "partner_admin_a"])
def test_is_a_tampered_token_refused(matrix_app: Flask, world: World, actor_key: str) -> None:
    actor = world.actors[actor_key]
    client, csrf = _client(matrix_app, actor)
    failures = []

    for rule, method in _requests(matrix_app):
        if rule.endpoint not in TOKEN_ENDPOINTS:
            continue
        path = _fill(world, actor, world.targets["b1"], rule, tamper=True)
        response = _send(client, method, path, csrf)
        if response.status_code not in (400, 404, 410):
            failures.append(f"{method} {path} [{rule.endpoint}]: {response.status_code}")
        failures += [
            f"{method} {path}: {problem}"
            for problem in _problems(world, actor, "public", response, method=method, scope=None)
        ]

    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("actor_key", "target_key"), [("partner_admin_a", "b1"), ("a1", "a2")])
def test_does_an_htmx_block_request_get_refused_too(
    matrix_app: Flask, world: World, actor_key: str, target_key: str
) -> None:
    """A block rendered alone for htmx goes through the same checks as its page, and a
    block of one's own list shows no more than the page."""
    actor, target = world.actors[actor_key], world.targets[target_key]
    client, _ = _client(matrix_app, actor)
    failures = []

    for rule, method in _requests(matrix_app):
        kind = verdict(EXPECTATIONS[rule.endpoint], actor, rule)
        if method != "GET" or kind not in ("refuse", "own"):
            continue
        path = _fill(world, actor, target, rule)
        response = client.get(path, headers={"HX-Request": "true"})
        for problem in _problems(world, actor, kind, response, method=method, scope=None):
            failures.append(f"GET {path} (htmx) [{rule.endpoint}, {kind}]: {problem}")

    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("actor_key", "target_key"),
    [("partner_admin_a", "b1"), ("a1", "a2"), ("partner_admin_b", "a1"), ("anonymous", "b1")],
)
def test_does_a_plausible_form_on_another_tenants_record_change_nothing(
    matrix_app: Flask, world: World, engine: Engine, actor_key: str, target_key: str
) -> None:
    actor, target = world.actors[actor_key], world.targets[target_key]
    client, csrf = _client(matrix_app, actor)
    with Session(engine) as session:
        before = tenant_snapshot(session, target.partner_id)
    failures = []

    for rule, method in _requests(matrix_app):
        expect = EXPECTATIONS[rule.endpoint]
        if method != "POST" or verdict(expect, actor, rule) != "refuse":
            continue
        path = _fill(world, actor, target, rule)
        response = client.post(path, data=plausible_form(csrf))
        for problem in _problems(world, actor, "refuse", response, method=method, scope=None):
            failures.append(f"POST {path} [{rule.endpoint}]: {problem}")

    with Session(engine) as session:
        after = tenant_snapshot(session, target.partner_id)
    changed = sorted(name for name in before if before[name] != after[name])
    assert not failures, "\n".join(failures)
    assert not changed, f"refused requests changed {changed} of {target.tenant}"


def test_does_any_row_point_at_another_tenants_record(world: World, engine: Engine) -> None:
    """After every request above (run in this order): no row links two tenants or customers."""
    with Session(engine) as session:
        assert not cross_tenant_links(session)
