"""The email outbox: a message is a row first, sent by a job after commit."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Text

from app.models.base import Field, SQLModel, created_at, instant


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # refused for now (4xx, connection): retried with backoff
    REJECTED = "rejected"  # refused for good (5xx): left for a person to correct and resend


class OutboxMessage(SQLModel, table=True):
    """One email. ``dedupe_key`` is unique so a notification is written once per purpose."""

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int | None = Field(default=None, foreign_key="partner.id", index=True)
    dedupe_key: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=60)
    to_address: str = Field(max_length=500)
    subject: str = Field(max_length=300)
    text_body: str = Field(sa_column=Column(Text, nullable=False))
    html_body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=OutboxStatus.PENDING, max_length=20, index=True)
    attempts: int = Field(default=0)
    last_error: str = Field(default="", max_length=500)
    created_at: datetime = created_at()
    sent_at: datetime | None = instant()
