"""The "Customer portal" section of the partner settings page: admins only.

Registered on the partner blueprint (``partner.*`` endpoints) by an import at the end of
``routes``. The page itself is ``settings.settings_page``; this module saves the section.
"""

from __future__ import annotations

from flask import flash, request, url_for
from werkzeug.wrappers import Response

from app.blueprints.partner.routes import bp
from app.blueprints.partner.settings import settings_page
from app.domain.errors import FieldsInvalid
from app.extensions import db_session
from app.services.portal_settings import PortalSettingsForm, update_portal_settings
from app.web.auth import acting_user, partner_admin_only
from app.web.htmx import redirect_to

admin_only = partner_admin_only(
    "Only partner admins can change the customer portal settings. Ask an admin of your "
    "organisation to change them."
)


@bp.post("/settings/portal")
@admin_only
def portal_settings() -> Response:
    """Save what customers may do in the portal and which products its catalog offers."""
    session, user = db_session(), acting_user()
    form = PortalSettingsForm(
        portal_cancel_allowed=request.form.get("portal_cancel_allowed") == "on",
        portal_schedule_after_due=request.form.get("portal_schedule_after_due") == "on",
        offered=tuple(request.form.getlist("offered")),
        payer_sets_amount=tuple(request.form.getlist("payer_sets_amount")),
    )
    try:
        update_portal_settings(session, user, form)
    except FieldsInvalid as exc:
        return settings_page(session, user, status=422, portal_form=form, portal_errors=exc.errors)
    flash("Customer portal settings saved.")
    return redirect_to(url_for("partner.settings") + "#portal-heading")
