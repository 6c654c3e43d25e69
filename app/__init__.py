"""Portico: a billing portal for a platform that sells through partners."""

from __future__ import annotations

from typing import Any

from flask import Flask

from app.config import INSTANCE_DIR, Settings, check_settings, load_settings


def create_app(config: dict[str, Any] | None = None, settings: Settings | None = None) -> Flask:
    """Build the web app: settings, extensions, blueprints, error handlers, CLI.

    ``config`` overrides Flask config keys (tests); ``settings`` replaces the settings
    read from the environment. Raises ConfigurationError for unsafe settings.
    """
    if settings is None:
        settings = load_settings()
    else:
        check_settings(settings)  # settings built in code get the same refusals
    app = Flask(__name__, instance_path=str(INSTANCE_DIR))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=1 * 1024 * 1024,
        PORTICO=settings,
    )
    if config:
        app.config.update(config)

    from app import extensions

    extensions.init_app(app, settings)

    from app.web import compression, errors, input_guard, security, templating

    errors.init_app(app)
    input_guard.init_app(app)
    security.init_app(app)
    compression.init_app(app)
    templating.init_app(app)

    from app.blueprints import register_blueprints

    register_blueprints(app)

    from app.cli import init_app as init_cli

    init_cli(app)
    return app
