"""Overdue-reminder notices (one row per invoice and stage, written before its emails),
the daily dunning runs and their chunks, and the index the sweep selects by."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Index, UniqueConstraint, text

from app.models.base import Field, SQLModel, created_at, instant
from app.models.billing import Invoice

# The sweep's selection (partner, next_dunning_on <= day) answered from this index alone
# (an index-only scan: ~40 pages for 10,000 due among 1M invoices, where the single-column
# index made PostgreSQL visit a heap page per due invoice). Paid and canceled invoices
# (None) are left out, which keeps it a third of a full index. Declared here, beside the
# sweep's other tables, because it serves only the sweep.
_invoice = Invoice.__table__  # type: ignore[attr-defined]
Index(
    "ix_invoice_dunning_due",
    _invoice.c.partner_id,
    _invoice.c.next_dunning_on,
    _invoice.c.id,
    postgresql_where=text("next_dunning_on IS NOT NULL"),
    sqlite_where=text("next_dunning_on IS NOT NULL"),
)


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

    A sweep selects the invoices due and splits them into chunks (jobs, or steps of the
    CLI); each chunk adds its counts here in the transaction that does its work, so the
    counters add up every sweep of that day (a second sweep finds nothing left). ``sweeps``
    numbers the day's sweeps; the latest one's ``chunks_done`` reaching ``chunks`` completes
    the run.
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
    sweeps: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    chunks: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # latest sweep's
    chunks_done: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = created_at()
    finished_at: datetime | None = instant()


class DunningRunChunk(SQLModel, table=True):
    """A chunk of a run's sweep whose counts are in: written with its completion step, so
    a chunk run twice (a retry, a crash, a duplicate job) completes the run once."""

    run_id: int = Field(foreign_key="dunningrun.id", primary_key=True)
    sweep: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    chunk: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    created_at: datetime = created_at()
