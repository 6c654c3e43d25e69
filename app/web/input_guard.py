"""Refuse form fields and query parameters that hold a NUL character, before any view.

No person types a NUL, but a hostile client can post one, and PostgreSQL refuses to store
it in a text column (the request would end in a 500 halfway through a service). It is
refused for every route at once, with the field named, before anything is read or saved.
"""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from werkzeug.wrappers import Response

STATUS = 422


def _field_with_nul() -> str | None:
    for source in (request.args, request.form):
        for name, value in source.items(multi=True):
            if "\x00" in name or "\x00" in value:
                return name.replace("\x00", "")
    return None


def init_app(app: Flask) -> None:
    @app.before_request
    def refuse_nul() -> Response | tuple[Response | str, int] | None:
        field = _field_with_nul()
        if field is None:
            return None
        message = f"“{field}” contains a character that is not allowed (NUL). Remove it."
        if request.accept_mimetypes.best == "application/json":
            return jsonify({"errors": {field: message}}), STATUS
        return render_template(
            "errors/input_refused.html", status=STATUS, field=field, message=message
        ), STATUS
