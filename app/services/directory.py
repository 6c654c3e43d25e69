"""Read models for the landing pages: partners, customer lists, an account overview.

Each list is one query with aggregates, never a query per row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Generic, TypeVar

from sqlalchemy import exists
from sqlmodel import Session, col, func, or_, select

from app.domain.schedule import SubscriptionStatus
from app.models import (
    AccountStatus,
    CustomerAccount,
    Invoice,
    InvoiceStatus,
    Partner,
    PaymentMethod,
    Subscription,
    User,
)
from app.services.dashboard import overdue_invoice
from app.services.tenancy import customer_for, own_account, partner_id_of

T = TypeVar("T")

# Balances count open invoices only. A canceled invoice and its cancellation invoice
# (same lines, negative) net to zero, so leaving both out equals counting both; a paid
# invoice reopened by a refund is ``created``/``overdue`` again and counts.
OPEN_STATUSES = (InvoiceStatus.CREATED, InvoiceStatus.OVERDUE)


@dataclass(frozen=True)
class PartnerRow:
    partner: Partner
    customer_count: int
    outstanding: int


@dataclass(frozen=True)
class CustomerRow:
    account: CustomerAccount
    balance_due: int
    next_charge_date: date | None
    has_overdue: bool = False


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass(frozen=True)
class AccountOverview:
    """An account with its methods, subscriptions and invoices (all of them, or the page
    ``invoice_page`` of ``invoice_per_page``, newest first, of ``invoice_count``)."""

    account: CustomerAccount
    partner: Partner
    balance_due: int
    payment_methods: list[PaymentMethod]
    subscriptions: list[Subscription]
    invoices: list[Invoice]
    invoice_count: int = 0
    invoice_page: int = 1
    invoice_per_page: int = 0  # 0: every invoice is in ``invoices``

    @property
    def invoice_pages(self) -> int:
        if not self.invoice_per_page:
            return 1
        return max(1, -(-self.invoice_count // self.invoice_per_page))


def _balances():  # noqa: ANN202
    return (
        select(
            Invoice.customer_account_id.label("account_id"),
            func.coalesce(func.sum(Invoice.total - Invoice.amount_paid), 0).label("balance"),
        )
        .where(col(Invoice.status).in_(OPEN_STATUSES))
        .group_by(Invoice.customer_account_id)
        .subquery()
    )


def list_partners(session: Session) -> list[PartnerRow]:
    """Every partner with its customer count and outstanding balance (operators only)."""
    balances = _balances()
    rows = session.exec(
        select(
            Partner,
            func.count(CustomerAccount.id),
            func.coalesce(func.sum(balances.c.balance), 0),
        )
        .outerjoin(CustomerAccount, CustomerAccount.partner_id == Partner.id)
        .outerjoin(balances, balances.c.account_id == CustomerAccount.id)
        .group_by(Partner.id)
        .order_by(Partner.name)
    ).all()
    return [PartnerRow(p, int(n), int(b)) for p, n, b in rows]


@dataclass(frozen=True)
class CustomerFilters:
    """The customer list's search and filters as read from the query string.

    ``status`` is an account status or "" (any); ``on_behalf`` and ``overdue`` are "yes",
    "no" or "" (any). Unknown values read as "" so a hand-edited URL never fails.
    """

    search: str = ""
    status: str = ""
    on_behalf: str = ""
    overdue: str = ""

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> CustomerFilters:
        """Read ``q``, ``status``, ``on_behalf`` and ``overdue``; raises nothing."""
        yes_no = ("yes", "no")
        status = args.get("status", "")
        return cls(
            search=args.get("q", "").strip()[:100],
            status=status if status in tuple(AccountStatus) else "",
            on_behalf=args.get("on_behalf", "") if args.get("on_behalf") in yes_no else "",
            overdue=args.get("overdue", "") if args.get("overdue") in yes_no else "",
        )

    def query_args(self) -> dict[str, str]:
        """The non-empty filters as query-string arguments (for links that keep them)."""
        names = {"q": self.search, "status": self.status}
        names |= {"on_behalf": self.on_behalf, "overdue": self.overdue}
        return {name: value for name, value in names.items() if value}


def list_customers(
    session: Session,
    user: User,
    *,
    as_of: date,
    filters: CustomerFilters | None = None,
    page: int = 1,
    per_page: int = 25,
) -> Page[CustomerRow]:
    """The partner user's customers with balance due, next charge date and whether they
    have an overdue invoice (as of the partner-local day ``as_of``), filtered and paginated.

    Two statements (count, page) whatever ``per_page`` is; the page's sums and flags are
    computed for its own rows only, not for every customer. A page past the end shows the
    last page.

    Raises:
        NotFound: ``user`` is not a partner user.
    """
    filters = filters or CustomerFilters()
    partner_id = partner_id_of(user)
    account_id = col(CustomerAccount.id)
    conditions = [CustomerAccount.partner_id == partner_id]
    if filters.search:
        # Escape LIKE wildcards so "50%" or "a_b" match literally.
        term = filters.search.lower().replace("\\", "\\\\")
        term = term.replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{term}%"
        conditions.append(
            or_(
                func.lower(CustomerAccount.name).like(pattern, escape="\\"),
                func.lower(CustomerAccount.email).like(pattern, escape="\\"),
            )
        )
    if filters.status:
        conditions.append(CustomerAccount.status == filters.status)
    if filters.on_behalf:
        started = col(CustomerAccount.on_behalf_start)
        conditions.append(started.is_not(None) if filters.on_behalf == "yes" else started.is_(None))
    if filters.overdue:
        late = select(Invoice.customer_account_id).where(
            Invoice.partner_id == partner_id, overdue_invoice(as_of)
        )
        conditions.append(
            account_id.in_(late) if filters.overdue == "yes" else account_id.not_in(late)
        )
    total = int(
        session.exec(select(func.count()).select_from(CustomerAccount).where(*conditions)).one()
    )
    page = min(max(1, page), max(1, -(-total // per_page)))
    # The page's accounts first, then their figures: the sums run for these rows only.
    shown = (
        select(account_id)
        .where(*conditions)
        .order_by(CustomerAccount.name, account_id)
        .offset((page - 1) * per_page)
        .limit(per_page)
        .subquery()
    )
    of_account = Invoice.customer_account_id == account_id
    balance = (
        select(func.coalesce(func.sum(Invoice.total - Invoice.amount_paid), 0))
        .where(of_account, col(Invoice.status).in_(OPEN_STATUSES))
        .scalar_subquery()
    )
    next_date = (
        select(func.min(Subscription.next_charge_date))
        .where(
            Subscription.customer_account_id == account_id,
            Subscription.status == SubscriptionStatus.RECURRING,
        )
        .scalar_subquery()
    )
    has_overdue = exists().where(of_account, overdue_invoice(as_of))
    rows = session.exec(
        select(CustomerAccount, balance, next_date, has_overdue)
        .join(shown, shown.c.id == account_id)
        .order_by(CustomerAccount.name, account_id)
    ).all()
    return Page(
        rows=[CustomerRow(a, int(b), _as_date(d), bool(late)) for a, b, d, late in rows],
        page=page,
        per_page=per_page,
        total=total,
    )


def _as_date(value: object) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))  # SQLite returns aggregates of dates as text


def account_overview(
    session: Session,
    user: User,
    customer_id: int | None = None,
    *,
    invoice_page: int = 1,
    invoices_per_page: int | None = None,
) -> AccountOverview:
    """One account with its methods, subscriptions and invoices.

    Without ``customer_id`` a customer gets their own account. With it, anyone gets that
    account only if they may see it (a customer only their own). Raises NotFound otherwise.

    With ``invoices_per_page`` only that page of the invoices (newest first) is loaded;
    their number and the balance due over all of them come with it, in the same statement
    (a page past the end shows the last page, two more statements).
    """
    if customer_id is None:
        account = own_account(session, user)
    else:
        account = customer_for(session, user, customer_id)
    partner = session.get(Partner, account.partner_id)
    methods = session.exec(
        select(PaymentMethod)
        .where(PaymentMethod.customer_account_id == account.id)
        .order_by(col(PaymentMethod.is_default).desc(), PaymentMethod.id)
    ).all()
    subscriptions = session.exec(
        select(Subscription)
        .where(Subscription.customer_account_id == account.id)
        .order_by(Subscription.id)
    ).all()
    assert partner is not None
    if invoices_per_page is None:
        invoices = list(
            session.exec(
                select(Invoice)
                .where(Invoice.customer_account_id == account.id)
                .order_by(col(Invoice.issue_date).desc(), col(Invoice.id).desc())
            ).all()
        )
        balance = sum(inv.balance for inv in invoices if inv.status in OPEN_STATUSES)
        return AccountOverview(
            account, partner, balance, list(methods), list(subscriptions), invoices, len(invoices)
        )
    page = max(1, invoice_page)
    invoices, count, balance = _invoice_page(session, account.id, page, invoices_per_page)  # type: ignore[arg-type]
    if not invoices and page > 1:  # past the end: show the last page
        count = int(
            session.exec(
                select(func.count()).where(Invoice.customer_account_id == account.id)
            ).one()
        )
        page = max(1, -(-count // invoices_per_page))
        invoices, count, balance = _invoice_page(session, account.id, page, invoices_per_page)  # type: ignore[arg-type]
    return AccountOverview(
        account, partner, balance, list(methods), list(subscriptions), invoices,
        count, page, invoices_per_page,
    )  # fmt: skip


def _invoice_page(
    session: Session, account_id: int, page: int, per_page: int
) -> tuple[list[Invoice], int, int]:
    """Page ``page`` of the account's invoices (newest first), how many there are, and the
    balance due of the open ones, in one statement: the totals are subqueries computed
    once (an index-only count, a sum over the open invoices), so they come back only with
    at least one row (else 0, 0)."""
    of_account = Invoice.customer_account_id == account_id
    count = select(func.count()).select_from(Invoice).where(of_account).scalar_subquery()
    balance = (
        select(func.coalesce(func.sum(Invoice.total - Invoice.amount_paid), 0))
        .where(of_account, col(Invoice.status).in_(OPEN_STATUSES))
        .scalar_subquery()
    )
    rows = session.exec(
        select(Invoice, count, balance)
        .where(of_account)
        .order_by(col(Invoice.issue_date).desc(), col(Invoice.id).desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    if not rows:
        return [], 0, 0
    return [inv for inv, _, _ in rows], int(rows[0][1]), int(rows[0][2])
