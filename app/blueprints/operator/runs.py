"""The operator's view of billing runs: the list, and one run's live progress.

The routes are registered on the operator blueprint (``operator.*`` endpoints); its
``routes`` module imports this one. The run page's ``progress`` block is rendered alone
for htmx polling; the view loads the run through the operator-only service first.
"""

from __future__ import annotations

from werkzeug.wrappers import Response

from app.blueprints.operator.routes import bp
from app.extensions import db_session
from app.services.directory import account_overview
from app.services.run_reports import list_runs, run_detail
from app.web.auth import acting_user, operator_required
from app.web.htmx import render_view


@bp.get("/runs")
@operator_required
def runs() -> Response:
    return render_view("operator/runs.html", rows=list_runs(db_session(), acting_user()))


@bp.get("/runs/<int:run_id>")
@operator_required
def run(run_id: int) -> Response:
    """One run; while it is running, its progress block polls this view every second."""
    detail = run_detail(db_session(), acting_user(), run_id)
    return render_view("operator/run.html", block="progress", detail=detail)


@bp.get("/customers/<int:customer_id>")
@operator_required
def customer(customer_id: int) -> Response:
    """A customer account, read-only, for following up a failed charge."""
    overview = account_overview(db_session(), acting_user(), customer_id)
    return render_view("operator/customer.html", overview=overview)
