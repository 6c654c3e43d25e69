"""Who did what, when: the history timeline of accounts and orders, and the audit trail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index

from app.models.base import Field, SQLModel, created_at


class AuditEvent(SQLModel, table=True):
    __table_args__ = (
        Index("ix_auditevent_subject", "subject_type", "subject_id"),
        Index("ix_auditevent_account_created", "customer_account_id", "created_at"),
        # The operator's newest-first listing, of every partner or of one.
        Index("ix_auditevent_created", "created_at"),
        Index("ix_auditevent_partner_created", "partner_id", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int | None = Field(default=None, foreign_key="partner.id", index=True)
    customer_account_id: int | None = Field(default=None, foreign_key="customeraccount.id")
    actor_user_id: int | None = Field(default=None, foreign_key="user.id")
    actor_label: str = Field(default="", max_length=200)  # "system", "billing run", a name
    action: str = Field(max_length=80)
    subject_type: str = Field(max_length=40)
    subject_id: int | None = Field(default=None)
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = created_at()
