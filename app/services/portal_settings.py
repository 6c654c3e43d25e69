"""A partner admin's customer-portal settings: what customers may do themselves.

Two switches — may customers cancel a subscription at the end of its current period,
and may they schedule an invoice payment after its due date — and, per recurring
product, whether the portal's catalog offers it and whether the customer chooses the
amount (a donation). Only admins change them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlmodel import Session, col, select

from app.domain import schedule as rules
from app.domain.errors import FieldsInvalid, NotFound
from app.domain.ids import parse_id
from app.models import Partner, Product, User
from app.services.admin_access import admin_partner_id, audit, partner_for_update

CANCEL_LABEL: Final = "Customers may cancel subscriptions at the end of the current period"
SCHEDULE_LABEL: Final = "Customers may schedule invoice payments after the due date"


@dataclass(frozen=True)
class PortalSettingsForm:
    """The section's form as posted (or as stored); product ids as posted."""

    portal_cancel_allowed: bool
    portal_schedule_after_due: bool
    offered: tuple[str, ...] = ()  # product ids offered in the catalog
    payer_sets_amount: tuple[str, ...] = ()  # product ids whose amount the customer sets


@dataclass(frozen=True)
class PortalSettings:
    """The partner's portal switches and the recurring products the catalog may offer."""

    form: PortalSettingsForm
    products: list[Product]


def _recurring_products(session: Session, partner_id: int) -> list[Product]:
    rows = session.exec(
        select(Product)
        .where(Product.partner_id == partner_id, col(Product.active).is_(True))
        .order_by(col(Product.name), col(Product.id))
    ).all()
    return [p for p in rows if p.frequency and p.frequency != rules.Frequency.ONCE]


def portal_settings(session: Session, user: User) -> PortalSettings:
    """The acting admin's partner's portal settings. Raises NotFound for anyone else."""
    partner = session.get(Partner, admin_partner_id(user))
    if partner is None:
        raise NotFound("Not found.")
    products = _recurring_products(session, partner.id)  # type: ignore[arg-type]
    form = PortalSettingsForm(
        portal_cancel_allowed=partner.portal_cancel_allowed,
        portal_schedule_after_due=partner.portal_schedule_after_due,
        offered=tuple(str(p.id) for p in products if p.self_service),
        payer_sets_amount=tuple(str(p.id) for p in products if p.payer_sets_amount),
    )
    return PortalSettings(form, products)


def _ids(values: tuple[str, ...]) -> set[int]:
    ids: set[int] = set()
    for value in values:
        found = parse_id(value)
        if found is None:
            raise NotFound("Not found.")  # no product of any partner has such an id
        ids.add(found)
    return ids


def update_portal_settings(session: Session, user: User, form: PortalSettingsForm) -> Partner:
    """Store the admin's portal settings and record who changed them (commits).

    Every active recurring product of the partner is offered in the catalog exactly
    when its id is in ``form.offered``, and is a donation exactly when it is in
    ``form.payer_sets_amount``. Subscriptions already started keep their price.

    Raises:
        NotFound: the user is not a partner admin, or a product id is not one of the
            partner's products (another partner's, or none); nothing is saved.
        FieldsInvalid: a product of the partner that cannot be offered (one-time or
            inactive) was posted (field ``products``); nothing is saved.
    """
    partner_id = admin_partner_id(user)
    offered, donations = _ids(form.offered), _ids(form.payer_sets_amount)
    posted = offered | donations
    own = {
        p.id: p
        for p in session.exec(
            select(Product).where(col(Product.id).in_(posted), Product.partner_id == partner_id)
        ).all()
    }
    if set(own) != posted:
        session.rollback()
        raise NotFound("Not found.")
    products = _recurring_products(session, partner_id)
    choosable = {p.id for p in products}
    if posted - choosable:
        session.rollback()
        raise FieldsInvalid(
            {"products": "Only active recurring products can be offered in the customer portal."}
        )
    partner = partner_for_update(session, user)
    partner.portal_cancel_allowed = form.portal_cancel_allowed
    partner.portal_schedule_after_due = form.portal_schedule_after_due
    session.add(partner)
    for product in products:
        product.self_service = product.id in offered
        product.payer_sets_amount = product.id in donations
        session.add(product)
    audit(
        session,
        user,
        "partner.portal_settings_updated",
        "partner",
        partner.id,
        {
            "portal_cancel_allowed": form.portal_cancel_allowed,
            "portal_schedule_after_due": form.portal_schedule_after_due,
            "offered": sorted(offered),
            "payer_sets_amount": sorted(donations),
        },
    )
    session.commit()
    return partner
