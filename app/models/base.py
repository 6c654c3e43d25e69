"""Column helpers shared by every table module."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, MetaData, types
from sqlmodel import Field, SQLModel

from app.clock import utcnow

# Stable constraint names so Alembic migrations are the same on SQLite and PostgreSQL.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata


class UTCDateTime(types.TypeDecorator):
    """Timezone-aware UTC instants on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored in a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def money(*, nullable: bool = False, default: int | None = 0) -> Any:
    """An integer count of minor units (the currency lives in its own column)."""
    return Field(default=default, sa_column=Column(BigInteger, nullable=nullable))


def instant(*, nullable: bool = True, index: bool = False) -> Any:
    """A UTC instant column, empty by default."""
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def created_at() -> Any:
    """A UTC instant set when the row is created."""
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


__all__ = ["Field", "SQLModel", "UTCDateTime", "created_at", "instant", "metadata", "money"]
