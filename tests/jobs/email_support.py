"""Helpers for the email job tests: outbox rows, a mail server the jobs use, a worker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from flask import Flask
from rq import Queue
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.clock import utcnow
from app.jobs.worker import PorticoWorker
from app.models import OutboxMessage
from app.services.email import add_message
from tests.fakes.smtp_server import LocalSMTPServer


def make_messages(
    engine: Engine,
    count: int,
    *,
    prefix: str = "batch",
    to: str = "payer{n}@example.com",
    subject: str = "Receipt {n}",
    minutes_old: int = 0,
) -> list[int]:
    """Write ``count`` outbox rows (text and HTML parts); returns their ids in order."""
    with Session(engine) as session:
        rows = [
            add_message(
                session,
                dedupe_key=f"{prefix}:{n}",
                kind="receipt",
                to_address=to.format(n=n),
                subject=subject.format(n=n),
                text_body=f"Thank you, payer {n}.",
                html_body=f"<p>Thank you, payer {n}.</p>",
            )
            for n in range(count)
        ]
        for row in rows:
            row.created_at = utcnow() - timedelta(minutes=minutes_old)
            session.add(row)
        session.commit()
        return [int(r.id) for r in rows]  # type: ignore[arg-type]


def rows(engine: Engine, ids: list[int]) -> list[OutboxMessage]:
    """Fresh copies of the rows ``ids``, in that order."""
    with Session(engine) as session:
        found = session.exec(select(OutboxMessage).where(col(OutboxMessage.id).in_(ids))).all()
        by_id = {r.id: r for r in found}
        return [by_id[i] for i in ids]


def row(engine: Engine, message_id: int) -> OutboxMessage:
    return rows(engine, [message_id])[0]


def work(app: Flask, *, with_scheduler: bool = False) -> None:
    """Run a real RQ worker on the email queue until it is empty (in this process)."""
    redis = app.extensions["portico"].redis
    worker = PorticoWorker([Queue("email", connection=redis)], connection=redis)
    worker.work(burst=True, with_scheduler=with_scheduler)


@contextmanager
def mail_server(app: Flask, **options: Any) -> Iterator[LocalSMTPServer]:
    """A local SMTP server that the app's email jobs deliver to inside the block."""
    settings = app.config["PORTICO"]
    with LocalSMTPServer(**options) as smtp:
        settings.smtp_url = smtp.url
        try:
            yield smtp
        finally:
            settings.smtp_url = ""
