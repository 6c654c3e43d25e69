"""``make chaos``: crash the billing and dunning runs on purpose, then check that every
charge and every email happened exactly once. Prints its figures, writes them to
``docs/reliability.md``, and exits non-zero when a check fails.

    .venv/bin/python bench/chaos.py                        # the full run (make chaos)
    .venv/bin/python bench/chaos.py --subscriptions 500 --kills 3 \\
        --invoices 200 --days 40 --dunning-kills 2 --report /tmp/reliability.md

1. Billing (``bench/chaos_billing.py``): a run of 10,000 due subscriptions with real RQ
   burst workers, 20 SIGKILLs at random moments (a worker started for each) and one
   crash of Redis (it comes back empty); then the recovery production does (reconciler,
   outbox sweeper, the run enqueued again) and the checks: the processor's records and
   the ledger agree, no period charged twice, none missed, one receipt each, received by
   the SMTP sink.
2. Dunning (``bench/chaos_dunning.py``): 60 simulated days of the default policy over
   1,000 invoices, 10 SIGKILLs; then every (invoice, stage) handled once, every due stage
   sent, one email each.

Everything runs against services of its own: a private ``redis-server`` on a free port
(never the machine's Redis), a new PostgreSQL database when 127.0.0.1:5432 answers
(dropped afterwards; SQLite otherwise), and a local SMTP sink
(``tests/fakes/smtp_server.py``) in this process.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import chaos_billing, chaos_dunning, support  # noqa: E402
from bench.chaos_billing import Check  # noqa: E402
from bench.chaos_stack import PrivateRedis, quiet, workdir  # noqa: E402


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kb = int(meminfo.read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.1f} GB RAM"
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} × {cpu}{memory}"


def database_name(postgres: bool) -> str:
    if not postgres:
        return "SQLite (a file of its own)"
    from sqlalchemy import create_engine, text

    engine = create_engine(f"{support.PG_SERVER}/postgres")
    with engine.connect() as conn:
        version = conn.execute(text("SHOW server_version")).scalar()
    engine.dispose()
    return f"PostgreSQL {version} (a database of its own, dropped afterwards)"


def report(args: argparse.Namespace, billing, dunning, started: datetime, db: str) -> str:  # noqa: ANN001
    """The Markdown of ``docs/reliability.md``."""
    nice = os.nice(0)
    minutes = (datetime.now(UTC) - started).seconds // 60
    command = "make chaos" if args.full_size else "python bench/chaos.py " + " ".join(sys.argv[1:])
    lines = [
        "# Reliability: `make chaos`",
        "",
        "Written by `bench/chaos.py` (what it does and how it recovers is in its docstring "
        "and in `bench/chaos_billing.py`, `bench/chaos_dunning.py`). Each check is pass/fail; "
        "the command exits non-zero when one fails.",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC (took {minutes} min)",
        f"- Machine: {machine()}; load average at the end {os.getloadavg()[0]:.1f}"
        + (f"; run at nice {nice}" if nice else ""),
        f"- Command: `{command}` (seed {args.seed})",
        f"- Database: {db}; Redis: a private `redis-server` (no persistence); SMTP: a local sink",
    ]
    if args.note:
        lines.append(f"- Note: {args.note}")
    for title, outcome, facts in _sections(billing, dunning, args.workers):
        lines += ["", f"## {title}", ""]
        lines += [f"- {fact}" for fact in facts]
        lines += ["- Counts checked: " + ", ".join(f"{k} {v:,}" for k, v in outcome.counts.items())]
        lines += ["", "| Check | Result | Figures |", "|---|---|---|"]
        lines += [
            f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {c.detail} |"
            for c in outcome.checks
        ]
    return "\n".join(lines) + "\n"


def _sections(billing, dunning, workers: int):  # noqa: ANN001, ANN202
    kinds = lambda o: ", ".join(f"{n} {k}" for k, n in sorted(o.kill_kinds.items()))  # noqa: E731
    if billing is not None:
        yield (
            "Billing run",
            billing,
            [
                f"{billing.subscriptions:,} due subscriptions, {workers} burst workers (billing "
                f"and email queues) at a time, finished in {billing.seconds:.0f} s over "
                f"{billing.rounds} round(s) of workers",
                f"Kills (SIGKILL): {billing.kills} (while running: {kinds(billing)}); workers that "
                f"crashed on their own (the Redis restart) and were restarted: "
                f"{billing.crashed_workers}",
                f"Redis restarts: {billing.redis_restarts} (SIGKILL; it came back empty)",
                f"Recovery: {billing.settled:,} attempts settled by the reconciler, "
                f"{billing.swept:,} emails queued again by the outbox sweeper",
            ],
        )
    if dunning is not None:
        yield (
            "Dunning",
            dunning,
            [
                f"{dunning.invoices:,} invoices over {dunning.days} simulated days (default "
                f"policy), {workers} burst workers (default and email queues), "
                f"{dunning.seconds:.0f} s",
                f"Kills (SIGKILL): {dunning.kills} (while running: {kinds(dunning)})",
                f"Recovery: {dunning.retried_jobs} killed jobs retried by RQ's abandoned-job "
                f"sweep, {dunning.swept:,} emails queued again by the outbox sweeper",
            ],
        )


def print_checks(title: str, checks: list[Check]) -> None:
    print(f"\n{title}")
    for c in checks:
        print(f"  [{'PASS' if c.passed else 'FAIL'}] {c.name}: {c.detail}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs during billing")
    parser.add_argument("--invoices", type=int, default=1000, help="dunning invoices")
    parser.add_argument("--days", type=int, default=60, help="simulated dunning days")
    parser.add_argument("--dunning-kills", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="0: a random seed")
    parser.add_argument("--sqlite", action="store_true", help="SQLite even if PostgreSQL answers")
    parser.add_argument("--only", choices=("billing", "dunning"), default="")
    parser.add_argument("--report", default=str(ROOT / "docs" / "reliability.md"))
    parser.add_argument("--note", default="", help="a line added to the report")
    args = parser.parse_args()
    args.seed = args.seed or random.randrange(1, 1_000_000)
    args.full_size = (args.subscriptions, args.kills, args.invoices, args.days,
                      args.dunning_kills) == (10_000, 20, 1000, 60, 10)  # fmt: skip
    random.seed(args.seed)
    postgres = support.postgres_reachable() and not args.sqlite
    db = database_name(postgres)
    started = datetime.now(UTC)
    print(f"chaos: seed {args.seed}; {db}; machine {machine()}", flush=True)
    from tests.fakes.smtp_server import LocalSMTPServer

    folder = workdir()
    billing = dunning = None
    try:
        if args.only in ("", "billing"):
            print(f"billing: {args.subscriptions:,} subscriptions, {args.kills} kills", flush=True)
            with support.fresh_database(postgres) as url, quiet(LocalSMTPServer()) as smtp:
                billing = chaos_billing.run(
                    url, args.subscriptions, args.kills, args.workers, folder, smtp
                )
            print_checks("billing checks", billing.checks)
        if args.only in ("", "dunning"):
            print(f"dunning: {args.invoices:,} invoices, {args.days} days, "
                  f"{args.dunning_kills} kills", flush=True)  # fmt: skip
            redis = PrivateRedis(folder)
            redis.start()
            try:
                with support.fresh_database(postgres) as url, quiet(LocalSMTPServer()) as smtp:
                    dunning = chaos_dunning.run(
                        url, args.invoices, args.days, args.dunning_kills, args.workers,
                        folder, smtp, redis.url, args.seed,
                    )  # fmt: skip
            finally:
                redis.stop()
            print_checks("dunning checks", dunning.checks)
    except BaseException:
        print(f"chaos: stopped; the workers' logs are in {folder}", file=sys.stderr)
        raise
    text = report(args, billing, dunning, started, db)
    Path(args.report).write_text(text, encoding="utf-8")
    print(f"\nwritten to {args.report}")
    failed = [c for o in (billing, dunning) if o is not None for c in o.checks if not c.passed]
    if failed:
        print(f"chaos: {len(failed)} check(s) FAILED; the workers' logs are in {folder}")
        return 1
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
