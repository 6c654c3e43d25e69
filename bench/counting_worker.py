"""RQ's worker CLI with every database statement counted, for the benchmarks.

    python bench/counting_worker.py COUNTS.json worker --burst --url URL \\
        -w app.jobs.worker.PorticoWorker billing

Registers listeners on SQLAlchemy's ``Engine`` and ``Pool`` classes (so every engine the
process creates is counted: the app's and the sandbox processor's own), then runs
``rq``'s command line with the remaining arguments. At exit it writes the counts to
COUNTS.json, split by engine: ``app`` (the app's engine), ``processor`` (the sandbox's
engine) and ``other``. Per engine: ``statements`` (cursor executions: an ``executemany``
is one), ``commits``, ``rollbacks``, ``checkouts`` (connections taken from the pool; on an
engine with ``pool_pre_ping`` each is a ``SELECT 1`` round trip too) and ``connects``
(new database connections: on PostgreSQL each starts a server process).

The instrumentation lives here, in bench/, so the app has none of it. A listener call
costs about a microsecond per statement, against a few milliseconds per charge.
"""

from __future__ import annotations

import atexit
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("statements", "commits", "rollbacks", "checkouts", "connects")


class StatementCounter:
    """Counts statements, commits, rollbacks and pool checkouts per engine (by id)."""

    def __init__(self) -> None:
        self.by_engine: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self.by_pool: Counter[int] = Counter()

    def install(self) -> None:
        """Listen on every Engine and Pool of the process, present and future."""
        from sqlalchemy import Engine, event
        from sqlalchemy.pool import Pool

        event.listen(Engine, "before_cursor_execute", self._statement)
        event.listen(Engine, "commit", self._commit)
        event.listen(Engine, "rollback", self._rollback)
        event.listen(Engine, "engine_connect", self._checkout)
        event.listen(Pool, "connect", self._connect)

    def _statement(self, conn: Any, *_args: Any) -> None:
        self.by_engine[id(conn.engine)]["statements"] += 1

    def _commit(self, conn: Any) -> None:
        self.by_engine[id(conn.engine)]["commits"] += 1

    def _rollback(self, conn: Any) -> None:
        self.by_engine[id(conn.engine)]["rollbacks"] += 1

    def _checkout(self, conn: Any) -> None:
        self.by_engine[id(conn.engine)]["checkouts"] += 1

    def _connect(self, _dbapi: Any, record: Any) -> None:
        # The record knows its pool only by a private name; the pool knows its engine
        # not at all, so connections are counted by pool and matched at report time.
        self.by_pool[id(getattr(record, "_ConnectionRecord__pool", None))] += 1

    def report(self) -> dict[str, dict[str, int]]:
        """Counts by role: ``app``, ``processor`` (the sandbox engine), ``other``."""
        roles = _engine_roles()
        out: dict[str, Counter[str]] = {role: Counter() for role in ("app", "processor", "other")}
        for engine_id, counts in self.by_engine.items():
            out[roles.get(engine_id, "other")].update(counts)
        pools = _pool_roles()
        for pool_id, connects in self.by_pool.items():
            out[pools.get(pool_id, "other")]["connects"] += connects
        return {role: {k: int(counts[k]) for k in KINDS} for role, counts in out.items()}


def _pool_roles() -> dict[int, str]:
    """{id(pool): role} for the job app's engine and its gateway's."""
    from app.jobs import context

    app = context._app  # noqa: SLF001
    if app is None:
        return {}
    resources = app.extensions["portico"]
    roles = {id(resources.engine.pool): "app"}
    engine = getattr(resources._gateway, "engine", None)  # noqa: SLF001
    if engine is not None and engine is not resources.engine:
        roles[id(engine.pool)] = "processor"
    return roles


def _engine_roles() -> dict[int, str]:
    """{id(engine): role} for the job app's engine and its gateway's."""
    from app.jobs import context

    app = context._app  # noqa: SLF001
    if app is None:
        return {}
    resources = app.extensions["portico"]
    roles = {id(resources.engine): "app"}
    gateway = resources._gateway  # noqa: SLF001
    engine = getattr(gateway, "engine", None)
    if engine is not None and engine is not resources.engine:
        roles[id(engine)] = "processor"
    return roles


def read_counts(path: Path) -> dict[str, dict[str, int]]:
    """The counts a counting worker wrote to ``path`` (empty when it wrote none)."""
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def main() -> None:
    out = Path(sys.argv[1])
    counter = StatementCounter()
    counter.install()
    atexit.register(lambda: out.write_text(json.dumps(counter.report()), encoding="utf-8"))
    sys.path.insert(0, str(ROOT))
    from rq.cli import main as rq_main

    sys.argv = ["rq", *sys.argv[2:]]
    rq_main()


if __name__ == "__main__":
    main()
