"""The partner dashboard and the CSV exports of invoices and payments.

Registered on the partner blueprint by an import at the end of ``routes``. Any partner
user (admin or sales) sees them; the services scope every figure and row to the user's
partner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from flask import Response as FlaskResponse
from flask import request
from sqlmodel import Session
from werkzeug.wrappers import Response

from app.blueprints.partner.routes import bp
from app.clock import local_today
from app.extensions import db_session
from app.models import User
from app.services.charts import dashboard_charts
from app.services.dashboard import dashboard as dashboard_figures
from app.services.exports import (
    DateRange,
    ExportRangeInvalid,
    invoice_csv,
    parse_range,
    payment_csv,
)
from app.services.tenancy import partner_of
from app.web.auth import acting_user, partner_required
from app.web.htmx import render_view

Export = Callable[[Session, User, DateRange], Iterator[str]]


@bp.get("/dashboard")
@partner_required
def dashboard() -> Response:
    """Collected, outstanding, overdue by age, recurring revenue and expected charges."""
    return _dashboard_page()


@bp.get("/exports/invoices.csv")
@partner_required
def export_invoices() -> Response:
    """Invoices issued from ``from`` to ``to`` (both included) as CSV."""
    return _export("invoices", invoice_csv)


@bp.get("/exports/payments.csv")
@partner_required
def export_payments() -> Response:
    """Payments made from ``from`` to ``to`` (both included) as CSV."""
    return _export("payments", payment_csv)


def _dashboard_page(
    *, status: int = 200, errors: dict[str, str] | None = None, typed: dict[str, str] | None = None
) -> Response:
    session = db_session()
    user = acting_user()
    partner = partner_of(session, user)  # kept: the service finds it in the session
    as_of = local_today(partner.timezone)
    figures = dashboard_figures(session, user, as_of=as_of)
    export = typed or {"from": as_of.replace(day=1).isoformat(), "to": as_of.isoformat()}
    return render_view(
        "partner/dashboard.html",
        status=status,
        dash=figures,
        charts=dashboard_charts(figures),
        export=export,
        export_errors=errors or {},
    )


def _export(name: str, export: Export) -> Response:
    typed = {"from": request.args.get("from", "")[:40], "to": request.args.get("to", "")[:40]}
    session = db_session()
    user = acting_user()
    try:
        period = parse_range(typed["from"], typed["to"])
    except ExportRangeInvalid as exc:
        if request.accept_mimetypes.best_match(["text/csv", "text/html"]) == "text/html":
            return _dashboard_page(status=400, errors=exc.errors, typed=typed)
        text = "".join(f"{field}: {message}\n" for field, message in exc.errors.items())
        return FlaskResponse(text, status=400, mimetype="text/plain")
    lines = export(session, user, period)
    response = FlaskResponse(_closing(lines, session), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}-{period.slug}.csv"'
    return response


def _closing(lines: Iterator[str], session: Session) -> Iterator[str]:
    """Stream ``lines``, then end their read transaction.

    The request's teardown (which closes its session) runs when the view returns, before
    the server reads a streamed body; the rows are read afterwards, on the same session,
    so it is closed here once the last line is sent or the client goes away.
    """
    try:
        yield from lines
    finally:
        session.close()
