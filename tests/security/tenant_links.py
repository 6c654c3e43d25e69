"""Rows that point across tenants: the database side of the tenant isolation matrix.

A request that slipped past a tenancy check may leave no trace in its answer but still
write a row that links one tenant's record to another's (an order line selling partner
B's product, a payment charged to another customer's card). ``cross_tenant_links`` reads
every such reference and names the rows whose two ends belong to different partners, or
to different customers where both ends belong to a customer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel, select

from app.models import (
    CustomerAccount,
    Invoice,
    InvoiceLine,
    Order,
    OrderLine,
    Payment,
    PaymentMethod,
    Product,
    Subscription,
)
from app.models.portal import ScheduledPayment

# (table, column, referenced table, what must agree)
CUSTOMER = "customer_account_id"
PARTNER = "partner_id"
LINKS: tuple[tuple[type[SQLModel], str, type[SQLModel], str], ...] = (
    (Invoice, CUSTOMER, CustomerAccount, PARTNER),
    (Invoice, "subscription_id", Subscription, CUSTOMER),
    (Subscription, CUSTOMER, CustomerAccount, PARTNER),
    (Subscription, "payment_method_id", PaymentMethod, CUSTOMER),
    (Subscription, "product_id", Product, PARTNER),
    (PaymentMethod, CUSTOMER, CustomerAccount, PARTNER),
    (Payment, CUSTOMER, CustomerAccount, PARTNER),
    (Payment, "payment_method_id", PaymentMethod, CUSTOMER),
    (Payment, "invoice_id", Invoice, CUSTOMER),
    (Payment, "subscription_id", Subscription, CUSTOMER),
    (Payment, "order_id", Order, CUSTOMER),
    (Payment, "parent_payment_id", Payment, CUSTOMER),
    (Order, CUSTOMER, CustomerAccount, PARTNER),
    (ScheduledPayment, CUSTOMER, CustomerAccount, PARTNER),
    (ScheduledPayment, "invoice_id", Invoice, CUSTOMER),
    (ScheduledPayment, "payment_method_id", PaymentMethod, CUSTOMER),
)


def _owner(row: Any, field: str) -> Any:
    """The partner or customer a row belongs to (a customer account is its own customer)."""
    if field == CUSTOMER and isinstance(row, CustomerAccount):
        return row.id
    return getattr(row, field)


def _by_id(session: Session, model: type[SQLModel]) -> dict[int, Any]:
    return {row.id: row for row in session.exec(select(model)).all()}  # type: ignore[attr-defined]


def cross_tenant_links(session: Session) -> list[str]:
    """Every reference whose two rows belong to different partners (or customers)."""
    tables: dict[type[SQLModel], dict[int, Any]] = {}

    def rows(model: type[SQLModel]) -> dict[int, Any]:
        if model not in tables:
            tables[model] = _by_id(session, model)
        return tables[model]

    found = []
    for model, column, target, field in LINKS:
        for row in rows(model).values():
            ref = getattr(row, column)
            if ref is None:
                continue
            other = rows(target).get(ref)
            if other is None:
                continue  # a dangling id is the foreign keys' business
            if _owner(row, field) is not None and _owner(row, field) != _owner(other, field):
                found.append(f"{model.__name__} {row.id}.{column} -> {target.__name__} {ref}")
    found += _lines(session, OrderLine, "order_id", rows(Order), rows(Product))
    found += _lines(session, InvoiceLine, "invoice_id", rows(Invoice), rows(Product))
    return found


def _lines(
    session: Session,
    model: type[SQLModel],
    parent_column: str,
    parents: dict[int, Any],
    products: dict[int, Product],
) -> Iterable[str]:
    """Lines selling a product of another partner than their order's or invoice's."""
    for line in session.exec(select(model)).all():
        product = products.get(line.product_id) if line.product_id else None  # type: ignore[attr-defined]
        parent = parents.get(getattr(line, parent_column))
        if product is not None and parent is not None and product.partner_id != parent.partner_id:
            name = f"{model.__name__} {line.id}"  # type: ignore[attr-defined]
            yield f"{name}.product_id -> Product {product.id} of another partner"


def tenant_snapshot(session: Session, partner_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the partner's tables (the audit log aside), to compare before and after.

    The audit log is left out: recording a refused attempt there is not a change to the
    tenant's records.
    """
    snapshot: dict[str, list[tuple[Any, ...]]] = {}
    for table in SQLModel.metadata.sorted_tables:
        if table.name == "partner":
            query = sa_select(table).where(table.c.id == partner_id)
        elif "partner_id" in table.c and table.name != "auditevent":
            query = sa_select(table).where(table.c.partner_id == partner_id)
        else:
            continue
        rows = session.execute(query.order_by(*table.primary_key.columns)).all()
        snapshot[table.name] = [tuple(row) for row in rows]
    return snapshot
