"""The customer portal's own tables: emailed sign-in and reset links, scheduled payments."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Index

from app.models.base import Field, SQLModel, created_at, instant, money


class LinkPurpose(StrEnum):
    SIGN_IN = "sign_in"
    RESET = "reset"


class SignInToken(SQLModel, table=True):
    """An emailed one-time link (sign in, or reset the password). Only a digest is kept.

    ``used_at`` is set by one conditional UPDATE (``WHERE used_at IS NULL``), so a link
    works once even when two tabs open it at the same moment.
    """

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    purpose: str = Field(max_length=20)
    token_digest: str = Field(max_length=64, unique=True)  # sha256 hex of the secret part
    expires_at: datetime = instant(nullable=False)
    used_at: datetime | None = instant()
    created_at: datetime = created_at()


class ScheduledStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting for its day
    PROCESSING = "processing"  # its attempt is committed; the processor is being asked
    PAID = "paid"
    FAILED = "failed"  # declined or errored on its day; the invoice is still open
    CANCELED = "canceled"  # by the customer, or because the invoice was settled before


class ScheduledPayment(SQLModel, table=True):
    """A customer's payment of an open invoice on a chosen future day.

    The billing run of ``pay_on`` charges it once: the attempt's purpose key is
    ``sched:{id}``, unique like every other.
    """

    __table_args__ = (Index("ix_scheduledpayment_due", "partner_id", "status", "pay_on"),)

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id")
    customer_account_id: int = Field(foreign_key="customeraccount.id", index=True)
    invoice_id: int = Field(foreign_key="invoice.id", index=True)
    payment_method_id: int | None = Field(default=None, foreign_key="paymentmethod.id")
    amount: int = money()
    currency: str = Field(max_length=3)
    pay_on: date
    status: str = Field(default=ScheduledStatus.SCHEDULED, max_length=20)
    payment_id: int | None = Field(default=None, foreign_key="payment.id")
    failure_reason: str = Field(default="", max_length=300)
    created_by_user_id: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = created_at()
    canceled_at: datetime | None = instant()
