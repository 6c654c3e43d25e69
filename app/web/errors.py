"""Map domain errors to HTTP answers: 404/409/422 pages, never a traceback."""

from __future__ import annotations

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.domain.errors import DomainError


def init_app(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(error: DomainError):  # noqa: ANN202
        return render_template(
            "errors/error.html", message=error.message, status=error.status_code
        ), error.status_code

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):  # noqa: ANN202
        message = (
            "This form has expired or was not sent from Portico. Reload the page and try again."
        )
        return render_template("errors/error.html", message=message, status=400), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):  # noqa: ANN202
        status = error.code or 500
        messages = {404: "We could not find that page.", 405: "That action is not allowed here."}
        message = messages.get(status, error.description or "Something went wrong.")
        return render_template("errors/error.html", message=message, status=status), status
