"""Cost of one sandbox processor call: time and database work per money call.

    .venv/bin/python bench/sandbox_calls.py                  # SQLite and PostgreSQL, 1000 calls
    .venv/bin/python bench/sandbox_calls.py --charges 5000 --repeats 7 --backend postgres

For each backend it builds a fresh database (a temporary SQLite file, or a new database
on the PostgreSQL server at 127.0.0.1, dropped afterwards), migrates it with Alembic and
builds the sandbox exactly as the app does (``app.extensions.build_gateway``: on
PostgreSQL its own pool with ``synchronous_commit=off``; on SQLite WAL). Each repeat then
makes N calls of every money operation, one after another in one thread, with no latency,
no request limit and no injected failure (the billing run's normal case):

    charge, charge again with the same keys (replays), authorize, capture (half of the
    authorizations), void (the other half), refund (part of each charge), retrieve

and prints, per operation, the time per call in microseconds (the median over repeats of
each repeat's mean) and, from SQLAlchemy's ``before_cursor_execute`` and ``commit`` events
and the pool's ``checkout`` event, the statements, commits and connection checkouts per
call. ``--json FILE`` appends the figures (each repeat's mean time and statements per
call, per operation and backend; ``bench/support.py``). This prints figures; it is not a
pass/fail test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import support  # noqa: E402

OPERATIONS = ("charge", "charge replay", "authorize", "capture", "void", "refund", "retrieve")


def migrate(url: str) -> None:
    """Build the schema with the project's Alembic migrations."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


class Meter:
    """Counts statements, commits and pool checkouts on one engine."""

    def __init__(self, engine) -> None:  # noqa: ANN001
        from sqlalchemy import event

        self.counts: Counter[str] = Counter()
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)
        event.listen(engine.pool, "checkout", self._checkout)

    def _statement(self, *_args: object) -> None:
        self.counts["statements"] += 1

    def _commit(self, *_args: object) -> None:
        self.counts["commits"] += 1

    def _checkout(self, *_args: object) -> None:
        self.counts["checkouts"] += 1


def run_backend(backend: str, calls: int, repeats: int) -> list[support.Figure]:
    from app.config import Settings
    from app.extensions import build_engine, build_gateway
    from app.gateway.base import CardDetails

    with support.fresh_database(backend == "postgres") as url:
        migrate(url)
        settings = Settings(env="test", secret_key="bench", database_url=url)
        app_engine = build_engine(url)
        gateway = build_gateway(settings, app_engine)
        meter = Meter(gateway.engine)  # type: ignore[attr-defined]
        token = gateway.tokenize_card(CardDetails("4242424242424242", 12, 2035, "123")).token
        for i in range(20):  # warm up caches and the pool
            gateway.charge(amount=100, currency="USD", token=token, idempotency_key=f"w{i}")

        times: dict[str, list[float]] = {op: [] for op in OPERATIONS}
        statements: dict[str, list[float]] = {op: [] for op in OPERATIONS}
        work: dict[str, Counter[str]] = {op: Counter() for op in OPERATIONS}
        made: Counter[str] = Counter()

        def measure(op: str, call: Callable[[int], object], count: int) -> list[object]:
            before = Counter(meter.counts)
            started = time.perf_counter()
            results = [call(i) for i in range(count)]
            elapsed = time.perf_counter() - started
            times[op].append(1e6 * elapsed / count)
            done = meter.counts - before
            statements[op].append(done["statements"] / count)
            work[op] += done
            made[op] += count
            return results

        half = calls // 2
        for r in range(repeats):
            tag = f"r{r}"

            def charge(i: int, tag: str = tag) -> object:
                return gateway.charge(
                    amount=2500, currency="USD", token=token, idempotency_key=f"{tag}-c{i}"
                )

            def authorize(i: int, tag: str = tag) -> object:
                return gateway.authorize(
                    amount=2500, currency="USD", token=token, idempotency_key=f"{tag}-a{i}"
                )

            charges = measure("charge", charge, calls)
            assert all(c.approved for c in charges), charges[:3]  # type: ignore[attr-defined]
            measure("charge replay", charge, calls)
            auths = measure("authorize", authorize, calls)
            measure(
                "capture",
                lambda i, t=tag, a=auths: gateway.capture(
                    reference=a[i].reference, amount=2500, idempotency_key=f"{t}-cap{i}"
                ),
                half,
            )
            measure(
                "void",
                lambda i, t=tag, a=auths: gateway.void(
                    reference=a[half + i].reference, idempotency_key=f"{t}-v{i}"
                ),
                calls - half,
            )
            measure(
                "refund",
                lambda i, t=tag, c=charges: gateway.refund(
                    reference=c[i].reference, amount=500, idempotency_key=f"{t}-re{i}"
                ),
                calls,
            )
            measure(
                "retrieve",
                lambda i, t=tag: gateway.retrieve(idempotency_key=f"{t}-c{i}"),
                calls,
            )
        gateway.engine.dispose()  # type: ignore[attr-defined]
        app_engine.dispose()

    print(f"\n{backend}: {calls} calls per operation, {repeats} repeats")
    print(f"  {'operation':<14} {'µs/call':>9} {'statements':>11} {'commits':>8} {'checkouts':>10}")
    for op in OPERATIONS:
        total = made[op]
        print(
            f"  {op:<14} {statistics.median(times[op]):>9.0f} "
            f"{work[op]['statements'] / total:>11.2f} {work[op]['commits'] / total:>8.2f} "
            f"{work[op]['checkouts'] / total:>10.2f}"
        )
    db = "PostgreSQL" if backend == "postgres" else "SQLite"
    note = f"{calls} calls per repeat, one thread, no latency, {db}"
    figures = []
    for op in OPERATIONS:
        figures.append(
            support.Figure(
                benchmark="sandbox_calls",
                name=f"{op}: time per call, {db}",
                unit="µs",
                values=times[op],
                higher_is_better=False,
                note=note,
            )
        )
        figures.append(
            support.Figure(
                benchmark="sandbox_calls",
                name=f"{op}: statements per call, {db}",
                unit="statements",
                values=statements[op],
                higher_is_better=False,
                note="cursor executions on the sandbox's engine",
            )
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--charges", type=int, default=1000, help="calls per operation")
    support.add_report_arguments(parser, repeats=5)
    parser.add_argument(
        "--backend", choices=("sqlite", "postgres", "both"), default="both", help="database"
    )
    args = parser.parse_args()
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    figures = []
    for backend in backends:
        figures += run_backend(backend, args.charges, args.repeats)
    support.save_figures(args.json, figures)


if __name__ == "__main__":
    main()
