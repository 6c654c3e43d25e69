"""Liveness for load balancers: the database and Redis must answer."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text
from werkzeug.wrappers import Response

from app.extensions import resources

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    checks: dict[str, str] = {}
    res = resources()
    try:
        with res.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:  # any failure means unreachable; details go to the log, not the body
        current_app.logger.exception("healthz: database unreachable")
        checks["database"] = "unreachable"
    try:
        res.redis.ping()
        checks["redis"] = "ok"
    except Exception:
        current_app.logger.exception("healthz: redis unreachable")
        checks["redis"] = "unreachable"
    failing = [name for name, state in checks.items() if state != "ok"]
    body = {"status": "ok" if not failing else "unavailable", "checks": checks}
    if failing:
        body["failing"] = failing
    return jsonify(body), (200 if not failing else 503)
