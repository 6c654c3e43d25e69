"""End-to-end billing run throughput with real RQ workers.

    .venv/bin/python bench/billing_run.py                 # 10,000 subs, SQLite, 1 and 2 workers
    .venv/bin/python bench/billing_run.py --postgres            # the same on the local PostgreSQL
    .venv/bin/python bench/billing_run.py --subscriptions 100000
    .venv/bin/python bench/billing_run.py --latency-ms 300 --rate 25 --subscriptions 600

Builds a fresh database (a temporary SQLite file, or a new database on the PostgreSQL
server at 127.0.0.1), creates N due subscriptions sharing one sandbox card, queues the
day's run in chunks and starts W burst workers; it reports charges per second from the
first job to the run's completion, and the per-charge time per worker. With --latency-ms
and --rate the sandbox sleeps per call and the shared limiter caps the request rate: the
report then gives the achieved rate as a share of the limit and the count of 429s.
This prints figures; it is not a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent

from bench import support  # noqa: E402

RUN_DATE = date(2030, 1, 15)


def _build(url: str, count: int) -> int:
    """Migrate and insert ``count`` due monthly subscriptions; returns the partner id."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, insert

    from app.gateway.base import CardDetails
    from app.gateway.sandbox import SandboxGateway
    from app.models import CustomerAccount, Partner, PaymentMethod, Subscription
    from app.models.sandbox import SandboxPaymentMethod

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
    engine = create_engine(url)
    sandbox = SandboxGateway(engine, latency_ms=0)
    token = sandbox.tokenize_card(CardDetails("4242424242424242", 12, 2035, "123", "Bench"))
    with engine.begin() as conn:
        partner_id = conn.execute(
            insert(Partner).values(
                name="Bench",
                slug="bench",
                country="US",
                timezone="UTC",
                currency="USD",
                locale="en_US",
                tax_rate_bp=0,
                allowed_origins=[],
                billing_hour=3,
                allow_partial_payments=False,
                pay_link_days=30,
                created_at=_now(),
            )
        ).inserted_primary_key[0]
        for start in range(0, count, 5000):
            size = min(5000, count - start)
            accounts = [
                {
                    "partner_id": partner_id,
                    "name": f"Customer {start + i}",
                    "email": f"c{start + i}@bench.example",
                    "billing_email": "",
                    "phone": "",
                    "status": "active",
                    "currency": "USD",
                    "gateway_customer_ref": "",
                    "created_at": _now(),
                }
                for i in range(size)
            ]
            ids = [
                r[0]
                for r in conn.execute(
                    insert(CustomerAccount).returning(CustomerAccount.id), accounts
                )
            ]
            methods = [
                {
                    "partner_id": partner_id,
                    "customer_account_id": a,
                    "gateway": "sandbox",
                    "token": f"{token.token}_{a}",
                    "kind": "card",
                    "brand": "visa",
                    "last4": "4242",
                    "exp_month": 12,
                    "exp_year": 2035,
                    "bank_name": "",
                    "holder_name": "",
                    "is_default": True,
                    "created_at": _now(),
                }
                for a in ids
            ]
            method_ids = [
                r[0]
                for r in conn.execute(insert(PaymentMethod).returning(PaymentMethod.id), methods)
            ]
            subs = [
                {
                    "partner_id": partner_id,
                    "customer_account_id": a,
                    "payment_method_id": m,
                    "description": "Membership",
                    "status": "recurring",
                    "frequency": "monthly",
                    "currency": "USD",
                    "manual_amount": 2500,
                    "total_amount": None,
                    "initial_amount": 0,
                    "start_date": RUN_DATE,
                    "stop_rule": "unending",
                    "next_charge_date": RUN_DATE,
                    "first_period": 0,
                    "recurring_count": 0,
                    "amount_charged": 0,
                    "last_error": "",
                    "created_at": _now(),
                }
                for a, m in zip(ids, method_ids, strict=True)
            ]
            conn.execute(insert(Subscription), subs)
            # The processor's side: one sandbox card per method, copied from the real token.
            conn.execute(
                insert(SandboxPaymentMethod),
                [
                    {
                        "token": f"{token.token}_{a}",
                        "kind": "card",
                        "behaviour": "approve",
                        "fingerprint": token.fingerprint or "bench",
                        "last4": "4242",
                        "brand": "visa",
                        "exp_month": 12,
                        "exp_year": 2035,
                        "bank_name": "",
                        "created_at": _now(),
                    }
                    for a in ids
                ],
            )
    engine.dispose()
    return int(partner_id)


def _now():  # noqa: ANN202
    from app.clock import utcnow

    return utcnow()


def _measure(url: str, redis_url: str, workers: int, count: int, args: argparse.Namespace) -> None:
    from sqlalchemy import create_engine, text
    from sqlmodel import Session

    env = dict(os.environ)
    env.update(
        PORTICO_ENV="test",
        SECRET_KEY="bench-secret",
        DATABASE_URL=url,
        REDIS_URL=redis_url,
        SANDBOX_LATENCY_MS=str(args.latency_ms),
        GATEWAY_RATE_PER_SECOND=str(args.rate - 1 if args.rate else 1000000),
        BILLING_CHUNK_SIZE=str(args.chunk),
    )
    os.environ.update(env)
    partner_id = _build(url, count)
    from redis import Redis

    Redis.from_url(redis_url).flushdb()
    if args.rate and args.latency_ms:
        from app.gateway.sandbox import SandboxGateway

        limit = getattr(SandboxGateway(create_engine(url)), "set_request_limit", None)
        if limit is not None:
            limit(args.rate)
    from app import create_app
    from app.jobs.billing import enqueue_run
    from app.jobs.context import use_app

    app = create_app()
    use_app(app)
    with app.app_context():
        enqueue_run(partner_id, RUN_DATE)
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                str(BIN / "rq"),
                "worker",
                "--burst",
                "--url",
                redis_url,
                "-w",
                "app.jobs.worker.PorticoWorker",
                "--quiet",
                "billing",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    for proc in procs:
        proc.wait()
    elapsed = time.perf_counter() - started
    engine = create_engine(url)
    with Session(engine) as session:
        row = session.execute(
            text("SELECT charged, declined, errors, unknown, rate_limited, status FROM billingrun")
        ).one()
    engine.dispose()
    charged = row[0]
    rate = charged / elapsed if elapsed else 0
    print(
        f"workers={workers} subscriptions={count} charged={charged} "
        f"declined={row[1]} errors={row[2]} "
        f"unknown={row[3]} status={row[5]} time={elapsed:.1f}s  {rate:.0f} charges/s  "
        f"{1000 * elapsed * workers / max(1, charged):.2f} ms per charge per worker  429s={row[4]}"
    )
    if args.rate:
        print(f"  achieved {rate:.1f}/s of a {args.rate}/s limit = {100 * rate / args.rate:.0f}%")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscriptions", type=int, default=10000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument(
        "--rate", type=int, default=0, help="gateway requests per second (limiter and sandbox)"
    )
    parser.add_argument("--chunk", type=int, default=200)
    args = parser.parse_args()
    redis_url, server = support.redis_url(os.environ.get("REDIS_URL", ""))
    print(f"database: {'PostgreSQL' if args.postgres else 'SQLite'}  latency: {args.latency_ms} ms")
    for workers in args.workers:
        url, drop = support.temp_database(args.postgres)
        try:
            _measure(url, redis_url, workers, args.subscriptions, args)
        finally:
            drop()
    if server is not None:
        server.shutdown()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
