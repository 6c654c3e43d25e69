"""Hostile input: every POST endpoint fuzzed with hypothesis through the real app.

Each endpoint has a row in ``TARGETS`` (``fuzz_targets.py``): who posts it (signed in,
with a valid CSRF token), its URL, a valid base payload and the fields to spoil.
Hypothesis spoils some of the fields (wrong types, empty, 10,000 characters, control
characters and NUL, overflowing, negative and zero amounts, impossible dates, wrong
currencies, SQL and HTML metacharacters) and ``fuzz_support`` checks every answer: no
5xx, no row changed when the input was refused, a 422 names its field, markup comes back
escaped. Forms with a signed single-use token (widgets, pay links, approvals, manual
payments, refunds…) are rendered first for a fresh token per example. A POST endpoint
without a row fails the test.

The demo data is seeded once for the module; the rows run in order and may change it
(an accepted example is a real submission), so each row points at records it owns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import Engine

from tests.security import fuzz_support as fz
from tests.security import fuzz_world as w
from tests.security.fuzz_targets import EXEMPT, TARGETS, Target


@pytest.fixture(scope="module")
def ctx(engine: Engine, settings: Any) -> Iterator[w.Ctx]:
    with w.open_world(engine, settings) as world:
        yield world


# -- the tests --------------------------------------------------------------------------------


def test_does_every_post_endpoint_have_a_fuzz_row(ctx: w.Ctx) -> None:
    posts = {
        rule.endpoint for rule in ctx.app.url_map.iter_rules() if "POST" in (rule.methods or set())
    }
    missing = sorted(posts - set(TARGETS) - set(EXEMPT))
    assert not missing, f"POST endpoints with no hostile-input row: {missing}"
    stale = sorted(set(TARGETS) - posts)
    assert not stale, f"rows for endpoints that no longer exist: {stale}"


def _fresh_token(ctx: w.Ctx, target: Target, path: str) -> dict[str, str]:
    if target.token_page is None:
        return {}
    page = ctx.clients[target.actor].get(target.token_page(ctx))
    if page.status_code != 200:  # no form any more (the review was confirmed): post none
        return {}
    return {target.token_field: fz.hidden_value(page.get_data(as_text=True), target.token_field,
                                                action=path)}  # fmt: skip


def _check(ctx: w.Ctx, name: str, target: Target, changes: dict[str, object]) -> None:
    path = target.path(ctx)
    data = fz.apply_changes(target.base(ctx), changes)
    data.update(_fresh_token(ctx, target, path))
    before = fz.fingerprint(ctx.engine)
    response = ctx.post(target.actor, path, data)
    body = response.get_data(as_text=True)
    status = response.status_code
    shown = {k: (v[:60] + "…" if isinstance(v, str) and len(v) > 60 else v)
             for k, v in changes.items()}  # fmt: skip
    assert status < 500, f"{name}: {status} for {shown!r}\n{body[:2000]}"
    if status >= 400 and status != 402:  # 402: a processed decline records its attempt
        changed = fz.changed_tables(before, fz.fingerprint(ctx.engine))
        assert not changed, f"{name}: refused ({status}) but changed {changed} for {shown!r}"
    if status == 422:
        named = fz.fields_named_in_errors(body, response.content_type or "")
        assert fz.names_a_field(named, target.fields), (
            f"{name}: 422 names no field of {target.fields} (errors at {sorted(named)}) "
            f"for {shown!r}"
        )
    if "html" in (response.content_type or ""):
        raw = fz.unescaped_markup(body, data)
        assert not raw, f"{name}: unescaped markup {raw} in the answer"


@pytest.mark.parametrize("name", list(TARGETS))
def test_does_the_endpoint_survive_hostile_input(ctx: w.Ctx, name: str) -> None:
    target = TARGETS[name]
    if target.prepare is not None:
        target.prepare(ctx)
    path = target.path(ctx)
    baseline = ctx.post(target.actor, path, {**target.base(ctx), **_fresh_token(ctx, target, path)})
    body = baseline.get_data(as_text=True)
    assert baseline.status_code < 500, body[:3000]
    if target.accepts and target.fields != w.JUNK:  # the base payload is valid as it is
        errors = re.findall(r'class="error"[^>]*>([^<]*)', body)
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))
        assert baseline.status_code < 400, (name, baseline.status_code, errors or text[-800:])
    # Every field at once: a NUL (PostgreSQL refuses it in text), then 10,000 characters.
    for value in ("a\x00b", fz.LONG[0]):
        _check(ctx, name, target, dict.fromkeys(target.fields, value))

    @settings(
        max_examples=target.examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(changes=fz.hostile_changes(target.fields))
    def run(changes: dict[str, object]) -> None:
        _check(ctx, name, target, changes)

    run()


@pytest.mark.parametrize(
    "path", ["/operator/outbox?q=a%00b", "/operator/outbox?status=%00", "/operator/runs?x=%00"]
)
def test_is_a_nul_in_a_query_refused_with_its_name(ctx: w.Ctx, path: str) -> None:
    before = fz.fingerprint(ctx.engine)
    response = ctx.clients["operator"].get(path)
    assert response.status_code == 422
    assert fz.names_a_field(fz.fields_named_in_errors(response.get_data(as_text=True), ""),
                            ("q", "status", "x"))  # fmt: skip
    assert not fz.changed_tables(before, fz.fingerprint(ctx.engine))


def test_does_a_stale_capture_form_say_why_it_is_refused(ctx: w.Ctx) -> None:
    """A capture posted after the hold was voided: the page no longer has the capture form,
    so a bad amount must not be the answer (it would show nowhere): the state is."""
    order_id = w.held_order(ctx)
    assert ctx.post("admin", f"/partner/orders/{order_id}/void", {}).status_code in (302, 303)
    before = fz.fingerprint(ctx.engine)
    response = ctx.post("admin", f"/partner/orders/{order_id}/capture", {"amount": "²"})
    assert response.status_code == 409
    assert "Only an authorized order can be captured" in response.get_data(as_text=True)
    assert not fz.changed_tables(before, fz.fingerprint(ctx.engine))
