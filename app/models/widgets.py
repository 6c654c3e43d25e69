"""Embeddable payment widgets, invoice pay links and the card-testing decline log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index, Text

from app.models.base import Field, SQLModel, created_at, instant, money


class AmountMode:
    FIXED = "fixed"
    PAYER = "payer"


class Widget(SQLModel, table=True):
    """A partner's take-payment widget, embedded by its public ``key``."""

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    key: str = Field(max_length=40, unique=True)
    title: str = Field(max_length=120)
    purpose: str = Field(default="", sa_column=Column(Text, nullable=False))
    currency: str = Field(max_length=3)
    amount_mode: str = Field(default=AmountMode.FIXED, max_length=10)
    fixed_amount: int | None = money(nullable=True, default=None)
    min_amount: int | None = money(nullable=True, default=None)
    max_amount: int | None = money(nullable=True, default=None)
    accept_card: bool = Field(default=True)
    accept_bank: bool = Field(default=False)
    allow_one_time: bool = Field(default=True)
    # Frequencies offered for recurring payments ("monthly", "annual", …); empty: none.
    recurring_frequencies: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    success_message: str = Field(default="Thank you for your payment.", max_length=500)
    is_active: bool = Field(default=True)
    created_at: datetime = created_at()
    updated_at: datetime | None = instant()


class PayLink(SQLModel, table=True):
    """A signed link to pay one invoice; regenerating revokes the previous one."""

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    invoice_id: int = Field(foreign_key="invoice.id", index=True)
    nonce: str = Field(max_length=64, unique=True)
    expires_at: datetime = instant(nullable=False)
    revoked_at: datetime | None = instant()
    created_by_user_id: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = created_at()


class DeclineRecord(SQLModel, table=True):
    """One declined payer attempt, counted by the card-testing defence."""

    __table_args__ = (
        Index("ix_declinerecord_address", "source", "client_address", "created_at"),
        Index("ix_declinerecord_email", "source", "email", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id")
    source: str = Field(max_length=60)  # "widget:12", "paylink:invoice:7"
    client_address: str = Field(max_length=64)
    email: str = Field(default="", max_length=254)
    created_at: datetime = created_at()
