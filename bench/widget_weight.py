"""First-load weight of the take-payment widget, as Chromium transfers it.

    .venv/bin/python bench/widget_weight.py
    .venv/bin/python bench/widget_weight.py --base-url http://127.0.0.1:5000 \
        --host-url http://localhost:5001/

Without --base-url it starts Portico (gunicorn, a fresh SQLite database with the demo data,
see widget_latency.py) and the demo community page (``python -m app.demo_site``) on
another origin, which it adds to the US partner's allowed origins. With --base-url it
measures a running stack whose page --host-url (default: the ``make run`` demo page)
embeds the widget from an allowed origin.

It opens the host page in a fresh Chromium context (empty cache, so a first load), waits
until the widget has rendered inside its iframe, and sums, for ``embed.js`` and every
HTML, CSS and JS resource of the widget's frame, the response body bytes as transferred
(gzip-compressed when the server compressed them: Chromium sends Accept-Encoding) —
Playwright's ``request.sizes()``, i.e. the DevTools ``encodedDataLength`` minus headers.
Header bytes and the uncompressed sizes are shown beside them. Budget: 30 KB (30,000
bytes) of compressed HTML + CSS + JS. This prints figures; it is not a pass/fail test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Request, sync_playwright
from widget_latency import REPO_ROOT, free_port, portico_server, stop, wait_for

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


def measure(host_url: str, portico: str) -> list[Resource]:
    """Load ``host_url`` once, cold, and return the widget's HTML, CSS and JS resources."""
    finished: list[Request] = []
    with sync_playwright() as playwright:
        launch: dict[str, object] = {"headless": True, "args": ["--no-sandbox", "--disable-gpu"]}
        if executable := _chromium():
            launch["executable_path"] = executable
        browser = playwright.chromium.launch(**launch)
        try:
            context = browser.new_context()
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
        finally:
            browser.close()
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="a running Portico instead of a fresh one")
    parser.add_argument(
        "--host-url",
        default="http://localhost:5001/",
        help="with --base-url: a page on an allowed origin embedding the widget",
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.base_url:
            portico, host_url = args.base_url.rstrip("/"), args.host_url
        else:
            demo_port = free_port()
            server = stack.enter_context(
                portico_server(allowed_origins=(f"http://localhost:{demo_port}",))
            )
            portico = server.base_url
            host_url = stack.enter_context(host_page(portico, demo_port))
        print(f"host page: {host_url}  Portico: {portico}  (Chromium, empty cache)")
        report(measure(host_url, portico))


if __name__ == "__main__":
    main()
