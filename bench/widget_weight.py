"""First-load weight of the take-payment widget, as Chromium transfers it.

    .venv/bin/python bench/widget_weight.py                # SQLite, Redis as below
    .venv/bin/python bench/widget_weight.py --postgres     # the same on the local PostgreSQL
    .venv/bin/python bench/widget_weight.py --repeats 3 --json out.jsonl
    .venv/bin/python bench/widget_weight.py --base-url http://127.0.0.1:5000 \
        --host-url http://localhost:5001/

Without --base-url it starts Portico (gunicorn with the Procfile's ``web`` command on a
fresh demo database, see ``widget_latency.py``; ``--postgres`` and ``--redis-url`` as
there) and the demo community page (``python -m app.demo_site``) on another origin, which
it adds to the US partner's allowed origins. With --base-url it measures a running stack
whose page --host-url (default: the ``make run`` demo page) embeds the widget from an
allowed origin.

Each repeat opens the host page in a fresh Chromium context (empty cache, so a first
load), waits until the widget has rendered inside its iframe, and sums, for ``embed.js``
and every HTML, CSS and JS resource of the widget's frame, the response body bytes as
transferred (gzip-compressed when the server compressed them: Chromium sends
Accept-Encoding) — Playwright's ``request.sizes()``, i.e. the DevTools
``encodedDataLength`` minus headers. Header bytes and the uncompressed sizes are shown
beside them. The page is the same on every load but for its form token, so the repeats
agree to within a few bytes. Budget: 30 KB (30,000 bytes) of compressed HTML + CSS + JS.
Figures (``--json``): "first-load bytes compressed" (budget <= 30,000) and "first-load
bytes uncompressed", one value per repeat. This prints figures; it is not a pass/fail
test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Request, sync_playwright
from widget_latency import REPO_ROOT, bench_redis_url, free_port, portico_server, stop, wait_for

from bench import support  # widget_latency put the repository on sys.path

BUDGET_BYTES = 30_000
WIDGET_KEY = "harbor-support"
KINDS = {"document": "HTML", "stylesheet": "CSS", "script": "JS"}


@dataclass
class Resource:
    url: str
    kind: str
    encoding: str
    body: int  # bytes on the wire, compressed when the server compressed it
    headers: int
    decoded: int  # bytes after decompression


@contextlib.contextmanager
def host_page(portico: str, port: int) -> Iterator[str]:
    """The demo community page on its own origin, embedding the widget from ``portico``."""
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"portico-demo-site-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.demo_site", "--port", str(port), "--portico", portico]
            + ["--widget", WIDGET_KEY],
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://localhost:{port}/"
        wait_for(url, proc, log)
        yield url
    finally:
        stop(proc)
        log.unlink(missing_ok=True)


def _chromium() -> str | None:
    for candidate in (os.environ.get("PLAYWRIGHT_CHROMIUM_EXECUTABLE", ""), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def measure(host_url: str, portico: str, repeats: int) -> list[list[Resource]]:
    """Load ``host_url`` ``repeats`` times, each cold; the widget's HTML, CSS and JS each time."""
    with sync_playwright() as playwright:
        launch: dict[str, object] = {"headless": True, "args": ["--no-sandbox", "--disable-gpu"]}
        if executable := _chromium():
            launch["executable_path"] = executable
        browser = playwright.chromium.launch(**launch)
        try:
            return [_first_load(browser, host_url, portico) for _ in range(repeats)]
        finally:
            browser.close()


def _first_load(browser, host_url: str, portico: str) -> list[Resource]:  # noqa: ANN001
    finished: list[Request] = []
    context = browser.new_context()  # a new profile: empty cache
    page = context.new_page()
    page.on("requestfinished", lambda request: finished.append(request))
    page.goto(host_url)
    frame = page.frame_locator("iframe")
    frame.get_by_role("heading", level=1).wait_for(timeout=15_000)
    page.wait_for_load_state("networkidle")
    resources = []
    for request in finished:
        kind = KINDS.get(request.resource_type)
        in_widget = request.frame != page.main_frame
        if kind is None or not request.url.startswith(portico):
            continue
        if not in_widget and not request.url.endswith("/embed.js"):
            continue
        response = request.response()
        assert response is not None, request.url
        sizes = request.sizes()
        resources.append(
            Resource(
                url=request.url.removeprefix(portico),
                kind=kind,
                encoding=response.headers.get("content-encoding", "-"),
                body=sizes["responseBodySize"],
                headers=sizes["responseHeadersSize"],
                decoded=len(response.body()),
            )
        )
    context.close()
    order = ["HTML", "CSS", "JS"]  # after embed.js (on the host page): the frame's resources
    return sorted(resources, key=lambda r: (r.url != "/embed.js", order.index(r.kind), r.url))


def report(resources: list[Resource]) -> None:
    width = max(len(r.url) for r in resources) + 2
    print(
        f"{'resource':<{width}}{'type':<6}{'encoding':<10}{'compressed':>11}{'headers':>9}"
        f"{'uncompressed':>14}"
    )
    for r in resources:
        print(
            f"{r.url:<{width}}{r.kind:<6}{r.encoding:<10}{r.body:>11,}{r.headers:>9,}"
            f"{r.decoded:>14,}"
        )
    body = sum(r.body for r in resources)
    headers = sum(r.headers for r in resources)
    decoded = sum(r.decoded for r in resources)
    print(f"{'total':<{width + 16}}{body:>11,}{headers:>9,}{decoded:>14,}")
    verdict = "within" if body <= BUDGET_BYTES else "OVER"
    print(
        f"compressed HTML + CSS + JS: {body:,} bytes ({body / 1024:.1f} KiB), "
        f"{body + headers:,} with headers -> {verdict} the budget of {BUDGET_BYTES:,} bytes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", action="store_true", help="a database on the local PG")
    parser.add_argument("--redis-url", default="", help="default: REDIS_URL or the local one")
    parser.add_argument("--base-url", help="a running Portico instead of a fresh one")
    parser.add_argument(
        "--host-url",
        default="http://localhost:5001/",
        help="with --base-url: a page on an allowed origin embedding the widget",
    )
    support.add_report_arguments(parser)
    args = parser.parse_args()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if args.base_url:
            portico, host_url = args.base_url.rstrip("/"), args.host_url
            where = f"running server {portico}"
        else:
            demo_port = free_port()
            server = stack.enter_context(
                portico_server(
                    allowed_origins=(f"http://localhost:{demo_port}",),
                    postgres=args.postgres,
                    redis_url=bench_redis_url(args.redis_url),
                )
            )
            portico, where = server.base_url, f"{server.database}, {server.command}"
            host_url = stack.enter_context(host_page(portico, demo_port))
        print(f"host page: {host_url}  Portico: {portico}  (Chromium, empty cache)")
        loads = measure(host_url, portico, args.repeats)
    report(loads[0])
    compressed = [sum(r.body for r in load) for load in loads]
    uncompressed = [sum(r.decoded for r in load) for load in loads]
    print(
        f"{len(loads)} first loads, compressed bytes: {', '.join(f'{b:,}' for b in compressed)} "
        f"({time.perf_counter() - started:.0f} s in all, set-up included)"
    )
    note = f"embed.js + the widget frame's HTML, CSS and JS, Chromium, empty cache; {where}"
    support.save_figures(
        args.json,
        [
            support.Figure(
                "widget_weight", "first-load bytes compressed", "bytes",
                [float(b) for b in compressed], limit=BUDGET_BYTES, higher_is_better=False,
                note=note,
            ),
            support.Figure(
                "widget_weight", "first-load bytes uncompressed", "bytes",
                [float(b) for b in uncompressed], higher_is_better=False, note=note,
            ),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
