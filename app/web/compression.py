"""gzip for text responses (pages, CSS, JS) when the client accepts it.

Widgets load inside other sites' pages, often on phones: their weight budget counts
compressed bytes. Static files are compressed once per file version and kept in memory.
"""

from __future__ import annotations

import gzip
from functools import lru_cache

from flask import Flask, Response, request

COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")
MIN_SIZE = 512


@lru_cache(maxsize=64)
def _compressed(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=6, mtime=0)


def init_app(app: Flask) -> None:
    @app.after_request
    def compress(response: Response) -> Response:
        if (
            "gzip" not in request.headers.get("Accept-Encoding", "")
            or response.status_code < 200
            or response.status_code >= 300
            or "Content-Encoding" in response.headers
            or not (response.mimetype or "").startswith(COMPRESSIBLE)
        ):
            return response
        response.direct_passthrough = False
        body = response.get_data()
        if len(body) < MIN_SIZE:
            return response
        # Static files repeat, so their compressed form is cached; pages are compressed fresh.
        is_static = request.endpoint == "static" or request.path == "/embed.js"
        response.set_data(
            _compressed(body) if is_static else gzip.compress(body, compresslevel=5, mtime=0)
        )
        response.headers["Content-Encoding"] = "gzip"
        etag, weak = response.get_etag()
        if etag:  # the compressed bytes are a different representation
            response.set_etag(f"{etag}-gzip", weak=weak)
        response.vary.add("Accept-Encoding")
        return response
