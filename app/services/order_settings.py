"""A partner admin's order settings (seed 003, "Salesperson submit actions").

Two switches for salespeople — may they send orders for customer approval, and may
they (and those approval pages) take payments — and two numbers of days: how long an
approval link stays valid, and how long an uncaptured authorization is held before it
is voided. Admins may always do everything; only admins change these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sqlmodel import Session

from app.domain.errors import FieldsInvalid, NotFound
from app.models import Partner, User
from app.services.admin_access import admin_partner_id, audit, partner_for_update
from app.services.order_access import PAYMENT_SETTING, SEND_SETTING

APPROVAL_LINK_DAYS: Final = (1, 60)
AUTHORIZATION_DAYS: Final = (1, 30)
LABELS: Final = {"sales_send_for_approval": SEND_SETTING, "sales_collect_payment": PAYMENT_SETTING}
_WHOLE: Final = re.compile(r"[0-9]{1,6}")


class OrderSettingsInvalid(FieldsInvalid):
    """Every bad field of the order settings form, by field name (nothing was saved)."""


@dataclass(frozen=True)
class OrderSettingsForm:
    """The settings form as posted (the day counts still as typed)."""

    sales_send_for_approval: bool
    sales_collect_payment: bool
    approval_link_days: str
    authorization_days: str

    @classmethod
    def of(cls, partner: Partner) -> OrderSettingsForm:
        """The partner's current settings, as the form shows them."""
        return cls(
            partner.sales_send_for_approval,
            partner.sales_collect_payment,
            str(partner.approval_link_days),
            str(partner.authorization_days),
        )


def order_settings(session: Session, user: User) -> OrderSettingsForm:
    """The acting admin's partner's order settings. Raises NotFound for anyone else."""
    partner = session.get(Partner, admin_partner_id(user))
    if partner is None:
        raise NotFound("Not found.")
    return OrderSettingsForm.of(partner)


def _days(text: str, name: str, bounds: tuple[int, int], errors: dict[str, str]) -> int:
    low, high = bounds
    value = text.strip()
    if not _WHOLE.fullmatch(value) or not low <= int(value) <= high:
        errors[name] = f"Enter a whole number of days from {low} to {high}."
        return 0
    return int(value)


def update_order_settings(session: Session, user: User, form: OrderSettingsForm) -> Partner:
    """Store the admin's order settings and record who changed them (commits).

    Orders already sent keep their link's expiry, and holds already placed keep theirs.

    Raises:
        NotFound: the user is not a partner admin.
        OrderSettingsInvalid: approval link days outside 1–60 or authorization days
            outside 1–30 (``approval_link_days`` / ``authorization_days``); nothing saved.
    """
    admin_partner_id(user)
    errors: dict[str, str] = {}
    link_days = _days(form.approval_link_days, "approval_link_days", APPROVAL_LINK_DAYS, errors)
    hold_days = _days(form.authorization_days, "authorization_days", AUTHORIZATION_DAYS, errors)
    if errors:
        raise OrderSettingsInvalid(errors)
    partner = partner_for_update(session, user)
    partner.sales_send_for_approval = form.sales_send_for_approval
    partner.sales_collect_payment = form.sales_collect_payment
    partner.approval_link_days = link_days
    partner.authorization_days = hold_days
    session.add(partner)
    audit(
        session,
        user,
        "partner.order_settings_updated",
        "partner",
        partner.id,
        {
            "sales_send_for_approval": form.sales_send_for_approval,
            "sales_collect_payment": form.sales_collect_payment,
            "approval_link_days": link_days,
            "authorization_days": hold_days,
        },
    )
    session.commit()
    return partner
