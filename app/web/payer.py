"""Shared view helpers for payer-facing pages (widgets, pay links, portal Pay now)."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, request

from app.clock import local_today, utcnow
from app.config import Settings
from app.jobs.dispatch import enqueue_emails
from app.services.card_testing import DeclineLimit


def settings() -> Settings:
    return current_app.config["PORTICO"]


def decline_limit() -> DeclineLimit:
    s = settings()
    return DeclineLimit(
        attempts=s.card_testing_limit, window=timedelta(minutes=s.card_testing_window_minutes)
    )


def client_address() -> str:
    """The payer's address as the web server saw it (a trusted proxy sets remote_addr)."""
    return request.remote_addr or "unknown"


def enqueue_after_commit(email_ids: list[int]) -> None:
    """Queue the emails a service wrote; if Redis is down the outbox sweeper sends them later."""
    if not email_ids:
        return
    try:
        enqueue_emails(email_ids)
    except Exception:  # the rows are committed; never fail a paid request over a queue
        current_app.logger.exception("could not enqueue emails %s; the sweeper will", email_ids)


def now_and_today(timezone: str) -> tuple:  # noqa: ANN201
    """The current instant and the partner's local date (the only clock read of a request)."""
    return utcnow(), local_today(timezone)
