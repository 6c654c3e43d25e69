"""The take-payment widget's configuration cache: fast views that still show every edit.

A view reads the widget's configuration from the app's cache (``widget_config``); a commit
in this process that changes a widget or a partner clears it, and a change made elsewhere
(another process, plain SQL) shows once the cached entry is older than its time to live.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, update
from sqlmodel import Session, select

from app.models import Partner, Widget
from app.services.widget_config import ConfigCache

WIDGET = "/embed/take-payment/harbor-support"


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock(demo: Flask) -> FakeClock:
    """The app's configuration cache on a clock the test moves (ttl 2 s)."""
    fake = FakeClock()
    demo.extensions["widget_config"] = ConfigCache(ttl_ms=2000, clock=fake)
    return fake


def heading(client: FlaskClient) -> str:
    response = client.get(WIDGET)
    assert response.status_code == 200
    match = re.search(r"<h1[^>]*>(.*?)</h1>", response.get_data(as_text=True), re.S)
    assert match
    return match.group(1).strip()


def widget(db: Session) -> Widget:
    return db.exec(select(Widget).where(Widget.key == "harbor-support")).one()


def statements_during(engine: Engine, action) -> list[str]:  # noqa: ANN001
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_does_a_repeated_view_skip_the_database(
    client: FlaskClient, clock: FakeClock, engine: Engine
) -> None:
    first = statements_during(engine, lambda: client.get(WIDGET))
    again = statements_during(engine, lambda: client.get(WIDGET))

    assert first  # the configuration was read once
    assert again == []
    clock.now += 2500
    assert statements_during(engine, lambda: client.get(WIDGET))  # and again once stale


def test_does_an_edit_show_on_the_next_load(
    client: FlaskClient, clock: FakeClock, db: Session
) -> None:
    before = heading(client)
    edited = widget(db)
    edited.title = "Keep the lights on"
    db.add(edited)
    db.commit()

    assert before != "Keep the lights on"
    assert heading(client) == "Keep the lights on"


def test_does_a_deactivated_widget_answer_404_on_the_next_load(
    client: FlaskClient, clock: FakeClock, db: Session
) -> None:
    assert client.get(WIDGET).status_code == 200
    edited = widget(db)
    edited.is_active = False
    db.add(edited)
    db.commit()

    response = client.get(WIDGET)

    assert response.status_code == 404
    assert "no longer available" in response.get_data(as_text=True)


def test_does_a_new_allowed_origin_frame_the_widget_on_the_next_load(
    client: FlaskClient, clock: FakeClock, db: Session
) -> None:
    client.get(WIDGET)
    partner = db.exec(select(Partner).where(Partner.slug == "us-partner")).one()
    partner.allowed_origins = [*partner.allowed_origins, "https://club.example"]
    db.add(partner)
    db.commit()

    policy = client.get(WIDGET).headers["Content-Security-Policy"]

    assert "https://club.example" in policy


def test_does_a_rolled_back_edit_leave_the_cache_alone(
    client: FlaskClient, clock: FakeClock, db: Session, engine: Engine
) -> None:
    client.get(WIDGET)
    edited = widget(db)
    edited.title = "Never saved"
    db.add(edited)
    db.flush()
    db.rollback()

    assert statements_during(engine, lambda: client.get(WIDGET)) == []
    assert heading(client) != "Never saved"


def test_does_another_process_edit_show_once_the_entry_is_stale(
    client: FlaskClient, clock: FakeClock, engine: Engine
) -> None:
    before = heading(client)
    with engine.begin() as conn:  # plain SQL, as another process's commit looks from here
        conn.execute(
            update(Widget).where(Widget.key == "harbor-support").values(title="From elsewhere")
        )

    assert heading(client) == before  # served from the cache
    clock.now += 2500
    assert heading(client) == "From elsewhere"
