"""Blueprints, imported inside the factory so nothing runs at import time."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from app.blueprints.approve.routes import bp as approve_bp
    from app.blueprints.auth.routes import bp as auth_bp
    from app.blueprints.components.routes import bp as components_bp
    from app.blueprints.health.routes import bp as health_bp
    from app.blueprints.operator.routes import bp as operator_bp
    from app.blueprints.partner.routes import bp as partner_bp
    from app.blueprints.pay.routes import bp as pay_bp
    from app.blueprints.portal.routes import bp as portal_bp
    from app.blueprints.webhooks.routes import bp as webhooks_bp

    for blueprint in (
        approve_bp,
        auth_bp,
        components_bp,
        health_bp,
        operator_bp,
        partner_bp,
        pay_bp,
        portal_bp,
        webhooks_bp,
    ):
        app.register_blueprint(blueprint)
    if app.config["PORTICO"].payment_gateway == "sandbox":
        from app.blueprints.sandbox.routes import bp as sandbox_bp

        app.register_blueprint(sandbox_bp)
