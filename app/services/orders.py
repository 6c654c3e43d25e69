"""The partner's order builder: draft orders, their lines and totals, the order list.

An order starts as a ``draft`` for one customer account, numbered in the partner's
``SO`` series, in the account's currency. Only a draft's lines may change; saving them
replaces every line at once and stores the subtotal, tax (per line, half-up) and total,
and the activation date (the earliest line's). Collecting the payment, sending for
approval and the moves after that live in ``order_payments`` and ``order_approval``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import delete
from sqlmodel import Session, col, func, select

from app.domain.errors import Conflict
from app.domain.orders import EDITABLE, OrderStatus, label
from app.models import AccountStatus, CustomerAccount, Order, OrderLine, Partner, Product, User
from app.services.directory import Page
from app.services.invoices import tax_rate_for
from app.services.numbering import next_invoice_number
from app.services.order_access import lock_order, partner_order, record
from app.services.order_forms import LinesForm, Totals, check_lines, preview_totals
from app.services.tenancy import customer_for, partner_id_of, partner_of

PER_PAGE = 25
ACCOUNT_ORDERS_LIMIT = 20
_AFTER_DRAFT_HINT = {
    OrderStatus.DECLINED: " Convert it to draft first.",
    OrderStatus.VOIDED: " Convert it to draft first.",
    OrderStatus.PENDING_APPROVAL: " Convert it to draft to change it (its link stops working).",
    OrderStatus.APPROVED: " Convert it to draft to change it (the customer approves again).",
}


@dataclass(frozen=True)
class OrderRow:
    """One order in a list, with its customer's name."""

    order: Order
    customer_name: str


def not_editable_reason(order: Order) -> str:
    """Why the order's lines cannot change now ("" when they can: only drafts change)."""
    if order.status in EDITABLE:
        return ""
    hint = _AFTER_DRAFT_HINT.get(OrderStatus(order.status), "")
    return f"Only a draft order can be changed; this one is {label(order.status)}.{hint}"


def create_order(session: Session, user: User, customer_id: int, *, now: datetime) -> Order:
    """Open a draft order for one of the partner's customer accounts (commits).

    The number is the next of the partner's ``SO`` series; the currency is the account's.
    Records "order.created" in the order's history.

    Raises:
        NotFound: the user is not a partner user, or the account is not their partner's.
        Conflict: the account is closed.
    """
    partner_id = partner_id_of(user)
    account = customer_for(session, user, customer_id)
    if account.status == AccountStatus.CLOSED:
        raise Conflict(f"{account.name}'s account is closed; it cannot take new orders.")
    sequence, number = next_invoice_number(session, partner_id=partner_id, series="SO")
    order = Order(
        partner_id=partner_id,
        customer_account_id=account.id,  # type: ignore[arg-type]
        sequence=sequence,
        number=number,
        currency=account.currency,
        created_by_user_id=user.id,
        created_at=now,
        updated_at=now,
    )
    session.add(order)
    session.flush()
    record(session, order, "order.created", user=user, number=number)
    session.commit()
    return order


def products_for_sale(
    session: Session, user: User, *, currency: str | None = None
) -> list[Product]:
    """The partner's active products by name (only those in ``currency`` when given).

    Raises NotFound when the user is not a partner user.
    """
    query = select(Product).where(Product.partner_id == partner_id_of(user), col(Product.active))
    if currency is not None:
        query = query.where(Product.currency == currency)
    return list(session.exec(query.order_by(col(Product.name), col(Product.id))).all())


def order_lines(session: Session, order_id: int) -> list[OrderLine]:
    """The order's lines in their order on the form (the caller checked access)."""
    query = select(OrderLine).where(OrderLine.order_id == order_id)
    return list(session.exec(query.order_by(col(OrderLine.position), col(OrderLine.id))).all())


@dataclass(frozen=True)
class Builder:
    """What the order builder needs: the order, its customer and partner, the tax rate
    and the products that can be put on it."""

    order: Order
    account: CustomerAccount
    partner: Partner
    rate_bp: int
    products: list[Product]

    @property
    def product_map(self) -> dict[int, Product]:
        return {p.id: p for p in self.products}  # type: ignore[misc]


def builder(session: Session, user: User, order_id: int) -> Builder:
    """The order with what its builder shows. Raises NotFound for another partner's order."""
    order = partner_order(session, user, order_id)
    account = session.get(CustomerAccount, order.customer_account_id)
    partner = partner_of(session, user)
    assert account is not None
    return Builder(
        order=order,
        account=account,
        partner=partner,
        rate_bp=tax_rate_for(account, partner),
        products=products_for_sale(session, user, currency=order.currency),
    )


def lines_preview(
    session: Session, user: User, order_id: int, form: LinesForm, *, as_of: date
) -> Totals:
    """The totals ``form`` would give the order, without saving anything.

    Raises NotFound for another partner's order.
    """
    b = builder(session, user, order_id)
    return preview_totals(
        form, currency=b.order.currency, rate_bp=b.rate_bp, products=b.product_map, as_of=as_of
    )


def save_lines(
    session: Session, user: User, order_id: int, form: LinesForm, *, now: datetime, as_of: date
) -> Order:
    """Replace the draft order's lines with ``form``'s and store its totals (commits).

    Tax is per line with the account's rate (else the partner's), rounded half-up; the
    activation date becomes the earliest line's. Records "order.lines_saved".

    Raises:
        NotFound: another partner's order (or not a partner user).
        LinesInvalid: every bad field at once (nothing is written).
        Conflict: the order is no longer a draft (nothing is written).
    """
    b = builder(session, user, order_id)
    lines = check_lines(
        form, currency=b.order.currency, rate_bp=b.rate_bp, products=b.product_map, as_of=as_of
    )
    order = lock_order(session, order_id)
    reason = not_editable_reason(order)
    if reason:
        session.rollback()
        raise Conflict(reason)
    session.execute(delete(OrderLine).where(col(OrderLine.order_id) == order_id))
    for position, line in enumerate(lines):
        session.add(
            OrderLine(
                order_id=order_id,
                position=position,
                product_id=line.product_id,
                description=line.description,
                quantity=line.quantity,
                unit_amount=line.unit_amount,
                tax_rate_bp=b.rate_bp,
                amount=line.amount,
                tax_amount=line.tax_amount,
                frequency=line.frequency,
                activation_date=line.activation_date,
            )
        )
    order.subtotal = sum(line.amount for line in lines)
    order.tax = sum(line.tax_amount for line in lines)
    order.total = order.subtotal + order.tax
    order.activation_date = min(line.activation_date for line in lines)
    order.updated_at = now
    session.add(order)
    record(session, order, "order.lines_saved", user=user, lines=len(lines), total=order.total)
    session.commit()
    return order


def list_orders(
    session: Session, user: User, *, status: str = "", page: int = 1, per_page: int = PER_PAGE
) -> Page[OrderRow]:
    """One page of the partner's orders, newest first, optionally of one status.

    An unknown ``status`` means any status. Two statements. Raises NotFound when the user
    is not a partner user.
    """
    partner_id = partner_id_of(user)
    conditions = [Order.partner_id == partner_id]
    if status in {s.value for s in OrderStatus}:
        conditions.append(Order.status == status)
    total = session.exec(select(func.count()).select_from(Order).where(*conditions)).one()
    page = max(1, min(page, max(1, -(-int(total) // per_page))))
    rows = session.exec(
        select(Order, CustomerAccount.name)
        .join(CustomerAccount, col(CustomerAccount.id) == Order.customer_account_id)
        .where(*conditions)
        .order_by(col(Order.created_at).desc(), col(Order.id).desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return Page([OrderRow(o, name) for o, name in rows], page, per_page, int(total))


def account_orders(
    session: Session, account_id: int, *, limit: int = ACCOUNT_ORDERS_LIMIT
) -> tuple[list[Order], int]:
    """The account's latest ``limit`` orders, newest first, and how many there are.

    One statement; the caller has checked that the account may be seen.
    """
    rows = session.exec(
        select(Order, func.count().over())
        .where(Order.customer_account_id == account_id)
        .order_by(col(Order.created_at).desc(), col(Order.id).desc())
        .limit(limit)
    ).all()
    return [order for order, _ in rows], int(rows[0][1]) if rows else 0


def order_statuses() -> Sequence[OrderStatus]:
    """Every order status, in the order the list's filter offers them."""
    return list(OrderStatus)
