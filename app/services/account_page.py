"""Everything the partner's customer account page shows, in a fixed number of statements.

Builds on :func:`app.services.directory.account_overview` (profile, methods,
subscriptions, invoices) and adds what only the partner's page shows: the expiry state
of each saved card, the latest payments, the latest orders and the history timeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, func, select

from app.domain.cards import CardExpiry, card_expiry
from app.models import Order, Payment, PaymentKind, PaymentMethod, User
from app.services.directory import AccountOverview, account_overview
from app.services.history import HistoryEntry, account_history
from app.services.orders import account_orders
from app.services.receipts import MANUAL_KINDS, payment_method_label

PAYMENTS_LIMIT = 20
INVOICES_PER_PAGE = 20
# Refunds and voids are shown on the payment they belong to, not as payments of their own.
_NOT_PAYMENTS = (PaymentKind.REFUND, PaymentKind.VOID)


@dataclass(frozen=True)
class MethodRow:
    method: PaymentMethod
    expiry: CardExpiry


@dataclass(frozen=True)
class PaymentRow:
    payment: Payment
    on: date  # the day it was received (manual) or made, in the partner's timezone
    label: str  # how it was paid: "Visa •••• 4242", "Check #1042"
    kind_label: str  # "" for a plain charge, else "Authorization", "Check", …


@dataclass(frozen=True)
class AccountPage(AccountOverview):
    methods: list[MethodRow] = field(default_factory=list)
    payments: list[PaymentRow] = field(default_factory=list)
    payment_count: int = 0
    history: list[HistoryEntry] = field(default_factory=list)
    history_count: int = 0
    orders: list[Order] = field(default_factory=list)
    order_count: int = 0


def account_page(
    session: Session, user: User, customer_id: int, *, as_of: date, invoice_page: int = 1
) -> AccountPage:
    """The account page of ``customer_id`` as seen by ``user`` on the partner's ``as_of``.

    Card expiry warnings are relative to ``as_of`` (the partner's local today). Invoices
    are page ``invoice_page`` of ``INVOICES_PER_PAGE``, newest first; payments are the
    latest ``PAYMENTS_LIMIT``, orders the latest ``ACCOUNT_ORDERS_LIMIT`` and history the
    latest ``HISTORY_LIMIT``, each with its total count. The number of statements does not
    depend on the number of rows.

    Raises NotFound when the account does not exist or the user may not see it.
    """
    overview = account_overview(
        session, user, customer_id, invoice_page=invoice_page, invoices_per_page=INVOICES_PER_PAGE
    )
    timezone = overview.partner.timezone
    payments, payment_count = latest_payments(session, overview.account.id, timezone=timezone)  # type: ignore[arg-type]
    history, history_count = account_history(session, overview.account, timezone=timezone)
    orders, order_count = account_orders(session, overview.account.id)  # type: ignore[arg-type]
    return AccountPage(
        account=overview.account,
        partner=overview.partner,
        balance_due=overview.balance_due,
        payment_methods=overview.payment_methods,
        subscriptions=overview.subscriptions,
        invoices=overview.invoices,
        invoice_count=overview.invoice_count,
        invoice_page=overview.invoice_page,
        invoice_per_page=overview.invoice_per_page,
        methods=[
            MethodRow(m, card_expiry(m.exp_month, m.exp_year, as_of=as_of))
            for m in overview.payment_methods
        ],
        payments=payments,
        payment_count=payment_count,
        history=history,
        history_count=history_count,
        orders=orders,
        order_count=order_count,
    )


def latest_payments(
    session: Session, account_id: int, *, timezone: str, limit: int = PAYMENTS_LIMIT
) -> tuple[list[PaymentRow], int]:
    """The account's latest ``limit`` payments, newest first, and how many there are.

    Every attempt counts (approved, declined, pending…), refunds and voids excepted:
    a refund shows as the refunded amount of its payment. One statement. The caller has
    checked that the account may be seen; raises nothing of its own.
    """
    shown = (Payment.customer_account_id == account_id, col(Payment.kind).not_in(_NOT_PAYMENTS))
    # The count is a subquery of its own (computed once), not a window over every row, so
    # the latest rows come straight from ix_payment_account_created in its order.
    count = select(func.count()).select_from(Payment).where(*shown).scalar_subquery()
    rows = session.exec(
        select(Payment, count)
        .where(*shown)
        .order_by(col(Payment.created_at).desc(), col(Payment.id).desc())
        .limit(limit)
    ).all()
    zone = ZoneInfo(timezone)
    payments = [
        PaymentRow(
            payment=p,
            on=p.received_on or p.created_at.astimezone(zone).date(),
            label=payment_method_label(p),
            kind_label=_kind_label(p),
        )
        for p, _count in rows
    ]
    return payments, int(rows[0][1]) if rows else 0


def _kind_label(payment: Payment) -> str:
    """A tag for payments that are not plain charges or manual ones ("Authorization")."""
    if payment.kind in (PaymentKind.CHARGE, *MANUAL_KINDS):
        return ""
    return payment.kind.replace("_", " ").capitalize()
