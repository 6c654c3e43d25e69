"""Reading a widget's configuration for its page views (app/services/widget_config.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import Engine, event
from sqlmodel import Session

from app.services.widget_config import ConfigCache, snapshot_of, widget_snapshot
from app.services.widget_payments import load_widget


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def test_is_the_plain_row_equal_to_the_loaded_objects(db: Session) -> None:
    # The components blueprint finds its rendered form by this equality (as repr).
    snapshot = widget_snapshot(db, "harbor-support")
    loaded = snapshot_of(*load_widget(db, "harbor-support"))

    assert snapshot is not None
    assert snapshot == loaded
    assert repr(snapshot) == repr(loaded)


def test_is_an_unknown_widget_remembered_as_none(db: Session, engine: Engine) -> None:
    cache = ConfigCache(ttl_ms=60_000, clock=lambda: 0)
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        statements.append(statement)

    assert cache.snapshot(db, "no-such-widget") is None
    event.listen(engine, "before_cursor_execute", record)
    try:
        again = cache.snapshot(db, "no-such-widget")
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert again is None
    assert statements == []
