"""The one place that knows about htmx headers (built on htmx-flask).

Views call :func:`render_view` with the template and the named block that an htmx
request swaps; a full request gets the whole page. Permission checks happen in the view
before this is called, so rendering a block alone can never skip one.
"""

from __future__ import annotations

from typing import Any

from flask import Response, make_response, render_template, request
from jinja2_fragments.flask import render_block


def is_htmx() -> bool:
    """True when the request came from htmx (and is not a history restore)."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def render_view(
    template: str, *, block: str | None = None, status: int = 200, **context: Any
) -> Response:
    """Render ``block`` alone for htmx requests, else the full ``template``."""
    if block is not None and is_htmx():
        body = render_block(template, block, **context)
    else:
        body = render_template(template, **context)
    response = make_response(body, status)
    if block is not None:
        response.vary.add("HX-Request")
    return response


def redirect_to(url: str) -> Response:
    """Redirect that works for both htmx (HX-Redirect) and plain form posts (303)."""
    if is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    response = make_response("", 303)
    response.headers["Location"] = url
    return response


def trigger(response: Response, event_name: str) -> Response:
    """Ask htmx to fire ``event_name`` on the client after the swap."""
    response.headers["HX-Trigger"] = event_name
    return response
