"""The billing-on-behalf wizard's server-side draft (one per account and user)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Column, UniqueConstraint

from app.models.base import Field, SQLModel, created_at, instant


class OnBehalfDraft(SQLModel, table=True):
    """Where a partner user is in the activation wizard for one customer account.

    ``changes`` maps a subscription id (as a string) to its new ``start_date`` (ISO) and
    ``price`` (minor units); ``chosen`` lists the subscriptions to change, in order.
    ``version`` grows with every save, so a stale tab's submission is recognised.
    """

    __table_args__ = (UniqueConstraint("customer_account_id", "user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    customer_account_id: int = Field(foreign_key="customeraccount.id")
    user_id: int = Field(foreign_key="user.id")
    start_date: date | None = Field(default=None)
    billing_email: str = Field(default="", max_length=254)
    wants_changes: bool = Field(default=False)
    chosen: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    changes: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    version: int = Field(default=0)
    created_at: datetime = created_at()
    updated_at: datetime | None = instant()
