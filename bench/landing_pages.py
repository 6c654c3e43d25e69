"""Latency and size of the landing pages, on the demo data set.

    .venv/bin/python bench/landing_pages.py [--requests 300] [--postgres] [--repeats 3]

Builds a throw-away database (SQLite, or a new database on the local PostgreSQL with
--postgres, dropped afterwards), loads the demo data, signs in as each role through the
Flask test client (in-process, no network) and prints latency percentiles and page bytes,
once per repeat. This prints figures; it is not a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import support  # noqa: E402

PAGES = (
    ("operator@example.com", "/operator/"),
    ("admin@us-partner.example", "/partner/"),
    ("admin@us-partner.example", "/partner/customers/1"),
    ("customer@example.com", "/portal/"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--postgres", action="store_true")
    support.add_report_arguments(parser)
    args = parser.parse_args()
    with support.fresh_database(args.postgres) as url:
        figures = measure(url, args)
    support.save_figures(args.json, figures)


def measure(url: str, args: argparse.Namespace) -> list[support.Figure]:
    """Seed the demo data into ``url`` and time each landing page ``args.repeats`` times."""
    from alembic import command
    from alembic.config import Config

    from app import create_app
    from app.config import Settings
    from app.extensions import gateway, session_scope
    from app.services.demo import seed_demo

    config = Config("alembic.ini")
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
    settings = Settings(
        env="test", secret_key="bench", database_url=url, redis_url=os.environ.get("REDIS_URL", "")
    )
    app = create_app(config={"WTF_CSRF_ENABLED": False}, settings=settings)
    with app.app_context(), session_scope() as session:
        seed_demo(session, gateway())

    print(f"database: {url.split('@')[-1]}  requests per page: {args.requests}")
    print(f"{'page':<28}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'req/s':>8}{'bytes':>8}")
    p50s: dict[str, list[float]] = {path: [] for _email, path in PAGES}
    p99s: dict[str, list[float]] = {path: [] for _email, path in PAGES}
    sign_ins: list[float] = []
    for _repeat in range(args.repeats):
        for email, path in PAGES:
            client = app.test_client()
            started = time.perf_counter()
            client.post("/login", data={"email": email, "password": "portico-demo"})
            sign_ins.append((time.perf_counter() - started) * 1000)
            samples = []
            size = 0
            for _ in range(args.requests):
                t0 = time.perf_counter()
                response = client.get(path)
                samples.append((time.perf_counter() - t0) * 1000)
                size = len(response.data)
                assert response.status_code == 200, (path, response.status_code)
            rps = 1000 / statistics.mean(samples)
            p50s[path].append(support.percentile(samples, 50))
            p99s[path].append(support.percentile(samples, 99))
            print(
                f"{path:<28}{p50s[path][-1]:>8.2f}{support.percentile(samples, 95):>8.2f}"
                f"{p99s[path][-1]:>8.2f}{rps:>8.0f}{size:>8}"
            )
    print(f"sign-in (password hash check): median {statistics.median(sign_ins):.0f} ms")
    html = app.test_client()
    html.post("/login", data={"email": "admin@us-partner.example", "password": "portico-demo"})
    page = html.get("/partner/").data.decode()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    total = sum(len(html.get(a).data) for a in assets)
    print(f"static assets on a page: {len(assets)} files, {total} bytes uncompressed")
    figures = [
        support.Figure("landing_pages", f"{path} {label}", "ms", values)
        for path in p50s
        for label, values in (("p50", p50s[path]), ("p99", p99s[path]))
    ]
    figures.append(support.Figure("landing_pages", "sign-in (password check)", "ms", sign_ins))
    return figures


if __name__ == "__main__":
    main()
