"""Orders: what a partner user sells a customer, and how its first payment is collected."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint

from app.domain.orders import OrderStatus
from app.models.base import Field, SQLModel, created_at, instant, money


class Order(SQLModel, table=True):
    """A sales order (ARCHITECTURE §1 Orders, seed 003); status moves only through
    ``app.domain.orders.transition``.

    ``submit_count`` numbers the payment submissions: submission ``n`` has the purpose key
    ``order:{id}:submit:{n}``, so a double click or a second tab charges once.
    ``approval_nonce`` is the current approval link's secret part; re-sending replaces it
    (the old link stops working) and approving clears it (single use).
    """

    __tablename__ = "sales_order"  # "order" is a reserved word in SQL
    __table_args__ = (
        UniqueConstraint("partner_id", "sequence"),
        Index("ix_order_partner_status", "partner_id", "status"),
        Index("ix_order_due", "status", "activation_date"),
    )

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id")
    customer_account_id: int = Field(foreign_key="customeraccount.id", index=True)
    sequence: int
    number: str = Field(max_length=40)
    status: str = Field(default=OrderStatus.DRAFT, max_length=20)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    currency: str = Field(max_length=3)
    subtotal: int = money()
    tax: int = money()
    total: int = money()
    activation_date: date | None = Field(default=None)  # the earliest line's date
    memo: str = Field(default="", max_length=500)
    payment_choice: str = Field(default="", max_length=20)  # charge | authorize | approval
    submit_count: int = Field(default=0)
    decline_reason: str = Field(default="", max_length=300)
    created_by_user_id: int | None = Field(default=None, foreign_key="user.id")
    # Sent for customer approval: by whom, whether the approval page takes a card, the link.
    sent_by_user_id: int | None = Field(default=None, foreign_key="user.id")
    approval_takes_payment: bool = Field(default=False)
    approval_nonce: str = Field(default="", max_length=64)
    approval_sent_at: datetime | None = instant()
    approval_expires_at: datetime | None = instant()
    # The customer's approval: who signed, how, when and from where.
    signer_name: str = Field(default="", max_length=200)
    signature_kind: str = Field(default="", max_length=10)  # typed | drawn
    signature: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    signed_at: datetime | None = instant()
    signer_address: str = Field(default="", max_length=64)
    # The payment that settled the order (a charge, or the held authorization).
    payment_id: int | None = Field(default=None)  # no FK: payment.order_id points back
    authorized_at: datetime | None = instant()
    invoice_id: int | None = Field(default=None, foreign_key="invoice.id")
    activated_on: date | None = Field(default=None)
    created_at: datetime = created_at()
    updated_at: datetime | None = instant()


class OrderLine(SQLModel, table=True):
    """One product on an order; a recurring product becomes a subscription on activation."""

    __tablename__ = "sales_order_line"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="sales_order.id", index=True)
    position: int = Field(default=0)
    product_id: int | None = Field(default=None, foreign_key="product.id")
    description: str = Field(max_length=300)
    quantity: int = Field(default=1)
    unit_amount: int = money()
    tax_rate_bp: int = Field(default=0)
    amount: int = money()  # quantity × unit amount, before tax
    tax_amount: int = money()
    frequency: str = Field(default="once", max_length=20)
    activation_date: date
    subscription_id: int | None = Field(default=None, foreign_key="subscription.id")
