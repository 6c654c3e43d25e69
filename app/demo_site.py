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
<p>The form below is Portico's take-payment widget, embedded with one line:<br>
<code>&lt;script src="{portico}/embed.js" data-widget="{widget}" async&gt;&lt;/script&gt;</code></p>
<script src="{portico}/embed.js" data-widget="{widget}" async
  data-title="Support Harbor Community"></script>
</section>
</body></html>
"""


def make_handler(portico: str, widget: str = "harbor-support") -> type[BaseHTTPRequestHandler]:
    body = PAGE.format(portico=html.escape(portico), widget=html.escape(widget)).encode()

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
    parser.add_argument("--widget", default="harbor-support", help="the widget key to embed")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.portico, args.widget))
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
