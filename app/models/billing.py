"""Products, subscriptions (payment schedules), invoices and payment attempts."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, Index, UniqueConstraint

from app.domain.schedule import StopRule, SubscriptionStatus
from app.models.base import Field, SQLModel, created_at, instant, money


class Product(SQLModel, table=True):
    """Something a partner sells, with a list price."""

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    name: str = Field(max_length=200)
    sku: str = Field(default="", max_length=60)
    unit_amount: int = money()
    currency: str = Field(max_length=3)
    frequency: str | None = Field(default=None, max_length=20)
    active: bool = Field(default=True)
    # Offered in the customer portal's catalog (recurring products only); with
    # payer_sets_amount the customer chooses the amount (a donation), unit_amount is
    # the suggestion.
    self_service: bool = Field(default=False)
    payer_sets_amount: bool = Field(default=False)
    created_at: datetime = created_at()


class Subscription(SQLModel, table=True):
    """A customer's recurring payment schedule (ARCHITECTURE §1, Subscriptions)."""

    __table_args__ = (Index("ix_subscription_due", "status", "next_charge_date"),)

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    customer_account_id: int = Field(foreign_key="customeraccount.id", index=True)
    product_id: int | None = Field(default=None, foreign_key="product.id")
    payment_method_id: int | None = Field(default=None, foreign_key="paymentmethod.id")
    description: str = Field(max_length=200)
    status: str = Field(default=SubscriptionStatus.RECURRING, max_length=20)
    frequency: str = Field(max_length=20)
    currency: str = Field(max_length=3)
    total_amount: int | None = money(nullable=True, default=None)
    manual_amount: int | None = money(nullable=True, default=None)
    initial_amount: int = money()
    start_date: date
    charge_day: int | None = Field(default=None)
    stop_rule: str = Field(default=StopRule.UNENDING, max_length=20)
    end_date: date | None = Field(default=None)
    stop_count: int | None = Field(default=None)
    # Derived, kept on the row so the billing run can select due schedules by index.
    next_charge_date: date | None = Field(default=None)
    first_period: int = Field(default=0)
    recurring_count: int = Field(default=0)
    amount_charged: int = money()
    last_error: str = Field(default="", max_length=500)
    # Set when the customer canceled at the end of the current period (the stop rule
    # then says the last day; nothing more is charged).
    canceled_at: datetime | None = instant()
    created_at: datetime = created_at()
    updated_at: datetime | None = instant()


class InvoiceStatus(StrEnum):
    CREATED = "created"
    PAID = "paid"
    OVERDUE = "overdue"
    CANCELED = "canceled"
    CANCELLATION = "cancellation"


class Invoice(SQLModel, table=True):
    """An invoice; numbers are gapless per partner and series."""

    __table_args__ = (
        UniqueConstraint("partner_id", "series", "sequence"),
        Index("ix_invoice_account_status", "customer_account_id", "status"),
        # Open and overdue invoices of a partner (dashboard figures, the customer list's
        # overdue filter): a small part of all invoices, found without reading the rest.
        Index("ix_invoice_partner_status_due", "partner_id", "status", "due_date"),
    )

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    customer_account_id: int = Field(foreign_key="customeraccount.id")
    subscription_id: int | None = Field(default=None, foreign_key="subscription.id")
    cancels_invoice_id: int | None = Field(default=None, foreign_key="invoice.id")
    series: str = Field(max_length=10)
    sequence: int
    number: str = Field(max_length=40)
    status: str = Field(default=InvoiceStatus.CREATED, max_length=20)
    currency: str = Field(max_length=3)
    issue_date: date
    due_date: date
    subtotal: int = money()
    tax: int = money()
    total: int = money()
    amount_paid: int = money()
    billing_email: str = Field(default="", max_length=254)
    memo: str = Field(default="", max_length=500)
    # The day the dunning sweep next looks at this invoice (None: paid, canceled, or no
    # stage left), and the overdue day of the last stage it handled.
    next_dunning_on: date | None = Field(default=None, index=True)
    dunning_day: int = Field(default=0)
    created_at: datetime = created_at()

    @property
    def balance(self) -> int:
        return self.total - self.amount_paid


class InvoiceLine(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoice.id", index=True)
    product_id: int | None = Field(default=None, foreign_key="product.id")
    description: str = Field(max_length=300)
    quantity: int = Field(default=1)
    unit_amount: int = money()
    tax_rate_bp: int = Field(default=0)
    amount: int = money()
    tax_amount: int = money()


class InvoiceSequence(SQLModel, table=True):
    """The next number of one (partner, series); its row lock makes numbering gapless."""

    partner_id: int = Field(foreign_key="partner.id", primary_key=True)
    series: str = Field(max_length=10, primary_key=True)
    next_value: int = Field(default=1)


class PaymentKind(StrEnum):
    CHARGE = "charge"
    AUTHORIZATION = "authorization"
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"
    CHECK = "check"
    CASH = "cash"
    BANK_TRANSFER = "bank_transfer"


class PaymentStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"
    ERROR = "error"
    UNKNOWN = "unknown"


class Payment(SQLModel, table=True):
    """One attempt to move money; ``purpose_key`` is unique, so a purpose is paid once."""

    __table_args__ = (
        Index("ix_payment_account_created", "customer_account_id", "created_at"),
        # The dashboard's money collected per month: approved payments of a partner by
        # day, with every column the sum reads (PostgreSQL answers from the index alone).
        Index(
            "ix_payment_partner_received",
            "partner_id",
            "status",
            "received_on",
            "currency",
            "kind",
            "amount",
        ),  # fmt: skip
    )

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    customer_account_id: int | None = Field(default=None, foreign_key="customeraccount.id")
    invoice_id: int | None = Field(default=None, foreign_key="invoice.id", index=True)
    subscription_id: int | None = Field(default=None, foreign_key="subscription.id", index=True)
    payment_method_id: int | None = Field(default=None, foreign_key="paymentmethod.id")
    parent_payment_id: int | None = Field(default=None, foreign_key="payment.id")
    order_id: int | None = Field(default=None, foreign_key="sales_order.id", index=True)
    purpose_key: str = Field(max_length=200, unique=True)
    idempotency_key: str = Field(max_length=200)
    kind: str = Field(max_length=20)
    method: str = Field(max_length=20)  # card | bank_account | manual
    status: str = Field(default=PaymentStatus.PENDING, max_length=20)
    amount: int = money()
    currency: str = Field(max_length=3)
    is_recurring: bool = Field(default=False)
    period_date: date | None = Field(default=None)
    gateway: str = Field(default="", max_length=20)
    gateway_reference: str = Field(default="", max_length=120)
    brand: str = Field(default="", max_length=30)
    last4: str = Field(default="", max_length=4)
    decline_code: str = Field(default="", max_length=60)
    decline_reason: str = Field(default="", max_length=300)
    reference: str = Field(default="", max_length=120)  # check number, transfer reference
    received_on: date | None = Field(default=None)
    refunded_amount: int = money()
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = created_at()
    settled_at: datetime | None = instant()
