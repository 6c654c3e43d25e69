"""Overdue-reminder notices: one row per (invoice, stage), written before its emails."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import UniqueConstraint

from app.models.base import Field, SQLModel, created_at, instant


class DunningNotice(SQLModel, table=True):
    """A dunning stage handled for an invoice: sent, or skipped by a catch-up.

    ``(invoice_id, day)`` is unique, so a stage is handled once whatever the number of
    runs, workers or crashes; the emails are outbox rows committed with it.
    """

    __table_args__ = (UniqueConstraint("invoice_id", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    invoice_id: int = Field(foreign_key="invoice.id", index=True)
    customer_account_id: int = Field(foreign_key="customeraccount.id")
    day: int  # days overdue at which the stage is due
    stage: str = Field(max_length=20)  # reminder | warning | stop
    due_on: date
    handled_on: date
    skipped: bool = Field(default=False)  # superseded by a later stage in a catch-up
    recipients: str = Field(default="", max_length=1000)
    created_at: datetime = created_at()


class DunningRunStatus:
    RUNNING = "running"
    COMPLETE = "complete"


class DunningRun(SQLModel, table=True):
    """One partner's dunning sweep for one local day, started once (cron, CLI or both).

    The counters add up every sweep of that day (a second sweep finds nothing left).
    """

    __table_args__ = (UniqueConstraint("partner_id", "run_date"),)

    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="partner.id", index=True)
    run_date: date
    status: str = Field(default=DunningRunStatus.RUNNING, max_length=20)
    invoices: int = Field(default=0)  # invoices looked at
    sent: int = Field(default=0)  # stages sent (reminders, warnings, stops)
    skipped: int = Field(default=0)  # stages a catch-up recorded without sending
    stopped: int = Field(default=0)  # accounts whose service stopped
    emails: int = Field(default=0)
    created_at: datetime = created_at()
    finished_at: datetime | None = instant()
