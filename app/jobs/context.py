"""The app a job runs in: built once per process, lazily (never at import time)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask
from sqlmodel import Session

_app: Flask | None = None


def job_app() -> Flask:
    """The process's app, created on first use and reused by every job after."""
    global _app
    if _app is None:
        from app import create_app

        _app = create_app()
    return _app


def use_app(app: Flask) -> None:
    """Make ``app`` the process's job app (the worker and tests hand theirs over)."""
    global _app
    _app = app


@contextmanager
def job_session() -> Iterator[Session]:
    """An app context and a database session for one job."""
    from app.extensions import session_scope

    with job_app().app_context(), session_scope() as session:
        yield session
