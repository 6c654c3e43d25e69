"""A stand-in "community page" on another origin, for trying the embeddable widgets."""

from __future__ import annotations

import argparse
import contextlib
import html
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Harbor Community — Support us</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto}}</style>
</head><body>
<h1>Harbor Community</h1>
<p>This page stands for a partner's community site. It is served from a different
origin than Portico ({portico}), as a real community page would be.</p>
<section id="widget-slot">
<h2>Support us</h2>
<p data-testid="no-widget">No Portico widget is embedded here yet: the take-payment and
pay-now components arrive with the widgets feature. When they do, this page embeds the demo
partner's widget with one line:<br>
<code>&lt;script src="{portico}/embed.js" data-widget="…" async&gt;&lt;/script&gt;</code></p>
</section>
</body></html>
"""


def make_handler(portico: str) -> type[BaseHTTPRequestHandler]:
    body = PAGE.format(portico=html.escape(portico)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path not in ("/", "/index.html"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--portico", default="http://127.0.0.1:5000")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.portico))
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
