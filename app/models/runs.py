"""Billing runs: one per partner and local day, with live counters for the operator."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Column, UniqueConstraint

from app.models.base import Field, SQLModel, created_at, instant


class RunStatus:
    RUNNING = "running"
    COMPLETE = "complete"


class BillingRun(SQLModel, table=True):
    """The billing of one partner's due subscriptions for one day (``run_date``)."""

    __table_args__ = (UniqueConstraint("partner_id", "run_date"),)

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    run_date: date
    status: str = Field(default=RunStatus.RUNNING, max_length=20)
    due: int = Field(default=0)
    processed: int = Field(default=0)
    charged: int = Field(default=0)
    declined: int = Field(default=0)
    unknown: int = Field(default=0)
    errors: int = Field(default=0)
    skipped: int = Field(default=0)
    chunks: int = Field(default=0)
    chunks_done: int = Field(default=0)
    rate_limited: int = Field(default=0)
    totals: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = created_at()
    finished_at: datetime | None = instant()
