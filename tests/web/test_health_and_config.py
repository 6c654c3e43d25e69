"""Liveness (/healthz), start-up refusals of unsafe settings, and security headers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.config import DEV_SECRET_KEY, ConfigurationError, Settings, load_settings

UNREACHABLE_DATABASE = "postgresql+psycopg://x@127.0.0.1:1/none"  # nothing listens on port 1
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
STRONG_KEY = "k" * 48


# -- /healthz --------------------------------------------------------------------------------


def test_does_healthz_answer_ok_when_database_and_redis_answer(client: FlaskClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json()["checks"] == {"database": "ok", "redis": "ok"}


@pytest.fixture
def app_with(settings: Settings) -> Iterator:  # noqa: ANN201
    """Build an app from the suite's settings with some of them changed."""
    built: list[Flask] = []

    def build(**changes: str) -> Flask:
        flask_app = create_app(config={"TESTING": True}, settings=replace(settings, **changes))
        built.append(flask_app)
        return flask_app

    yield build
    for flask_app in built:
        flask_app.extensions["portico"].engine.dispose()


def test_does_healthz_name_an_unreachable_database(app_with) -> None:  # noqa: ANN001
    response = app_with(database_url=UNREACHABLE_DATABASE).test_client().get("/healthz")

    assert response.status_code == 503
    body = response.get_json()
    assert body["failing"] == ["database"]
    assert body["checks"]["database"].startswith("unreachable")
    assert body["checks"]["redis"] == "ok"


def test_does_healthz_name_an_unreachable_redis(
    app_with,
    settings: Settings,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    database_url = settings.database_url
    if database_url.startswith("sqlite"):
        # Its own file: the app's engine turns on WAL, which would outlive this test.
        database_url = f"sqlite:///{tmp_path / 'health.db'}"
    flask_app = app_with(database_url=database_url, redis_url=UNREACHABLE_REDIS)

    response = flask_app.test_client().get("/healthz")

    assert response.status_code == 503
    body = response.get_json()
    assert body["failing"] == ["redis"]
    assert body["checks"]["redis"].startswith("unreachable")
    assert body["checks"]["database"] == "ok"


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "environ",
    [
        {},  # PORTICO_ENV defaults to production
        {"PORTICO_ENV": "production"},
        {"PORTICO_ENV": "production", "SECRET_KEY": ""},
        {"PORTICO_ENV": "production", "SECRET_KEY": DEV_SECRET_KEY},
    ],
    ids=["no-env", "missing", "empty", "development-default"],
)
def test_is_a_missing_or_default_secret_key_refused_outside_development(
    environ: dict[str, str],
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings(environ)

    message = str(refused.value)
    assert "SECRET_KEY" in message
    assert "forge" in message  # it says why, not only what


@pytest.mark.parametrize("env", ["development", "test"])
def test_is_a_missing_secret_key_accepted_in_development(env: str) -> None:
    settings = load_settings({"PORTICO_ENV": env})

    assert settings.secret_key == DEV_SECRET_KEY


def test_is_a_real_secret_key_accepted_in_production() -> None:
    settings = load_settings({"PORTICO_ENV": "production", "SECRET_KEY": STRONG_KEY})

    assert settings.secret_key == STRONG_KEY


@pytest.mark.parametrize("env", ["development", "production"])
def test_is_the_stripe_gateway_refused_without_its_key(env: str) -> None:
    environ = {"PORTICO_ENV": env, "SECRET_KEY": STRONG_KEY, "PAYMENT_GATEWAY": "stripe"}

    with pytest.raises(ConfigurationError, match="STRIPE_SECRET_KEY"):
        load_settings(environ)
    assert load_settings({**environ, "STRIPE_SECRET_KEY": "sk_test_x"}).payment_gateway == "stripe"


def test_does_create_app_refuse_production_with_the_default_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORTICO_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)

    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        create_app()

    monkeypatch.setenv("SECRET_KEY", DEV_SECRET_KEY)
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        create_app()


@pytest.mark.parametrize("secret_key", ["", DEV_SECRET_KEY])
def test_does_create_app_refuse_production_settings_with_the_default_key(
    settings: Settings, secret_key: str
) -> None:
    unsafe = replace(settings, env="production", secret_key=secret_key)

    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        create_app(settings=unsafe)


# -- security headers ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/healthz", "/no-such-page"])
def test_may_a_first_party_page_be_framed(client: FlaskClient, path: str) -> None:
    response = client.get(path)

    policy = response.headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in policy
    assert response.headers.get("X-Frame-Options") == "DENY"
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
