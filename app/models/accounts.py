"""Tenants and people: partners, users, customer accounts, payment methods."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, Index, UniqueConstraint

from app.models.base import Field, SQLModel, created_at, instant


class Role(StrEnum):
    OPERATOR = "operator"
    PARTNER_ADMIN = "partner_admin"
    PARTNER_SALES = "partner_sales"
    CUSTOMER = "customer"


class Partner(SQLModel, table=True):
    """A tenant: a reseller whose customers Portico bills."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    slug: str = Field(max_length=80, unique=True)
    country: str = Field(max_length=2)  # ISO 3166-1 alpha-2
    timezone: str = Field(default="UTC", max_length=64)
    currency: str = Field(default="USD", max_length=3)
    locale: str = Field(default="en_US", max_length=16)
    tax_rate_bp: int = Field(default=0)  # basis points: 1900 = 19 %
    allowed_origins: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    billing_hour: int = Field(default=3)
    allow_partial_payments: bool = Field(default=False)
    pay_link_days: int = Field(default=30)
    # Overdue-reminder stages, [{"day": 5, "stage": "reminder", "recipients": [...]}, …];
    # None means the default policy (app.domain.dunning.DEFAULT_POLICY).
    dunning_policy: list[dict] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    receipt_wording: str = Field(default="", max_length=1000)  # donation receipts
    # Order settings (seed 003, "Salesperson submit actions"); admins may always do both.
    sales_send_for_approval: bool = Field(default=True)
    sales_collect_payment: bool = Field(default=False)
    approval_link_days: int = Field(default=14)
    authorization_days: int = Field(default=7)  # an uncaptured hold is voided after this
    # Customer portal: may customers cancel subscriptions (at the end of the current
    # period), and schedule an invoice payment after its due date?
    portal_cancel_allowed: bool = Field(default=False)
    portal_schedule_after_due: bool = Field(default=False)
    created_at: datetime = created_at()


class User(SQLModel, table=True):
    """A person who signs in. Partner users carry partner_id; customers their account."""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254, unique=True)
    name: str = Field(default="", max_length=200)
    password_hash: str = Field(max_length=256)
    role: str = Field(max_length=20)
    partner_id: int | None = Field(default=None, foreign_key="partner.id", index=True)
    customer_account_id: int | None = Field(
        default=None, foreign_key="customeraccount.id", index=True
    )
    is_active: bool = Field(default=True)
    # ISO instants of failed sign-ins in the last 15 minutes (a sliding window).
    recent_failed_logins: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    locked_until: datetime | None = instant()
    last_login_at: datetime | None = instant()
    # Bumped by sign-out and by a password change or reset: a session cookie carrying an
    # older number no longer signs anyone in (cookies are signed, not stored).
    session_version: int = Field(default=0)
    created_at: datetime = created_at()

    # Flask-Login's user protocol (``is_active`` is the column above).
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)


class AccountStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class CustomerAccount(SQLModel, table=True):
    """A partner's customer: who is billed, and where invoices go."""

    __table_args__ = (Index("ix_customeraccount_partner_name", "partner_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id")
    name: str = Field(max_length=200)
    email: str = Field(max_length=254)
    billing_email: str = Field(default="", max_length=254)
    phone: str = Field(default="", max_length=40)
    status: str = Field(default=AccountStatus.ACTIVE, max_length=20)
    currency: str = Field(max_length=3)
    tax_rate_bp: int | None = Field(default=None)  # overrides the partner's rate
    gateway_customer_ref: str = Field(default="", max_length=120)
    service_stopped_on: date | None = Field(default=None)  # set while dunning stopped service
    # Billing on behalf: from this date on, the platform bills the customer directly and
    # invoices go to on_behalf_email.
    on_behalf_start: date | None = Field(default=None)
    on_behalf_email: str = Field(default="", max_length=254)
    created_at: datetime = created_at()


class MethodKind(StrEnum):
    CARD = "card"
    BANK_ACCOUNT = "bank_account"


class PaymentMethod(SQLModel, table=True):
    """A tokenized card or bank account. Never a card number or CVC."""

    __table_args__ = (UniqueConstraint("gateway", "token"),)

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    customer_account_id: int = Field(foreign_key="customeraccount.id", index=True)
    gateway: str = Field(max_length=20)
    token: str = Field(max_length=120)
    kind: str = Field(max_length=20)
    brand: str = Field(default="", max_length=30)
    last4: str = Field(max_length=4)
    exp_month: int | None = Field(default=None)
    exp_year: int | None = Field(default=None)
    bank_name: str = Field(default="", max_length=120)
    holder_name: str = Field(default="", max_length=200)
    is_default: bool = Field(default=False)
    created_at: datetime = created_at()
