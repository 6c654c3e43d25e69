"""Processor events received on ``/webhooks/<gateway>``: one row per event id, ever."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, UniqueConstraint

from app.models.base import Field, SQLModel, created_at, instant


class ProcessorEvent(SQLModel, table=True):
    """A verified webhook event. The unique (gateway, event_id) makes a redelivery, or the
    same event arriving on several connections at once, land once."""

    __table_args__ = (UniqueConstraint("gateway", "event_id", name="uq_processorevent_event"),)

    id: int | None = Field(default=None, primary_key=True)
    gateway: str = Field(max_length=20)
    event_id: str = Field(max_length=255)
    type: str = Field(max_length=100)
    # The processor object the event is about (a charge or refund reference), for lookups.
    object_ref: str = Field(default="", max_length=255, index=True)
    # The processor's own creation time of the event (seconds since the epoch): events
    # arriving out of order are compared by it.
    event_created: int = Field(default=0)
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    outcome: str = Field(default="", max_length=40)  # applied, ignored, stale, unknown_object
    error: str = Field(default="", max_length=2000)  # why applying it failed, when it did
    received_at: datetime = created_at()
    applied_at: datetime | None = instant()
