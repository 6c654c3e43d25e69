"""Tenant scoping: the one place that decides which rows a user may reach.

A record of another tenant answers NotFound, exactly like a record that does not exist.
"""

from __future__ import annotations

from typing import TypeVar

from sqlmodel import Session, SQLModel, select

from app.domain.errors import NotFound
from app.models import CustomerAccount, Partner, Role, User

T = TypeVar("T", bound=SQLModel)

PARTNER_ROLES = (Role.PARTNER_ADMIN, Role.PARTNER_SALES)


def partner_id_of(user: User) -> int:
    """The partner a partner user works for. Raises NotFound for any other role."""
    if user.role not in PARTNER_ROLES or user.partner_id is None:
        raise NotFound("Not found.")
    return user.partner_id


def partner_of(session: Session, user: User) -> Partner:
    """The partner of a partner user. Raises NotFound for any other role."""
    partner = session.get(Partner, partner_id_of(user))
    if partner is None:
        raise NotFound("Not found.")
    return partner


def customer_for(session: Session, user: User, customer_id: int) -> CustomerAccount:
    """A customer account the user may see: their partner's, or (customers) their own.

    Raises NotFound for anything else, including ids of other tenants.
    """
    query = select(CustomerAccount).where(CustomerAccount.id == customer_id)
    if user.role in PARTNER_ROLES:
        query = query.where(CustomerAccount.partner_id == partner_id_of(user))
    elif user.role == Role.CUSTOMER:
        query = query.where(CustomerAccount.id == user.customer_account_id)
    elif user.role != Role.OPERATOR:
        raise NotFound("Not found.")
    account = session.exec(query).first()
    if account is None:
        raise NotFound("Not found.")
    return account


def own_account(session: Session, user: User) -> CustomerAccount:
    """The customer's own account. Raises NotFound for other roles."""
    if user.role != Role.CUSTOMER or user.customer_account_id is None:
        raise NotFound("Not found.")
    return customer_for(session, user, user.customer_account_id)


def owned(session: Session, user: User, model: type[T], record_id: int) -> T:
    """A row of ``model`` (with partner_id / customer_account_id) the user may see.

    Raises NotFound when it does not exist or belongs to another tenant.
    """
    query = select(model).where(model.id == record_id)  # type: ignore[attr-defined]
    if user.role in PARTNER_ROLES:
        query = query.where(model.partner_id == partner_id_of(user))  # type: ignore[attr-defined]
    elif user.role == Role.CUSTOMER:
        query = query.where(model.customer_account_id == user.customer_account_id)  # type: ignore[attr-defined]
    elif user.role != Role.OPERATOR:
        raise NotFound("Not found.")
    row = session.exec(query).first()
    if row is None:
        raise NotFound("Not found.")
    return row
