"""Email: messages are outbox rows first, delivered by a job after the commit."""

from __future__ import annotations

import smtplib
from datetime import datetime
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from sqlmodel import Session, col, select

from app.clock import utcnow
from app.models import OutboxMessage, OutboxStatus

SENDER = "Portico <billing@portico.example>"


def add_message(
    session: Session,
    *,
    dedupe_key: str,
    kind: str,
    to_address: str,
    subject: str,
    text_body: str,
    html_body: str,
    partner_id: int | None = None,
) -> OutboxMessage:
    """Add an outbox row to the caller's transaction (the caller commits).

    If a message with ``dedupe_key`` already exists it is returned and nothing is added,
    so a notification is written once per purpose.
    """
    existing = session.exec(
        select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key)
    ).first()
    if existing is not None:
        return existing
    message = OutboxMessage(
        dedupe_key=dedupe_key,
        kind=kind,
        to_address=to_address,
        subject=subject,
        text_body=text_body,
        html_body=html_body,
        partner_id=partner_id,
    )
    session.add(message)
    session.flush()
    return message


def deliver(session: Session, message_id: int, *, smtp_url: str) -> bool:
    """Send one outbox message if it is still unsent; commits its new state.

    With ``smtp_url`` (``smtp://user:pass@host:port``, ``smtps://`` for TLS) the message
    goes to that server; without it, it stays readable in the outbox and is marked sent.
    Returns False when there was nothing to do (unknown id, or already sent).
    Raises the SMTP error after recording it, so RQ can retry the job.
    """
    query = select(OutboxMessage).where(OutboxMessage.id == message_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    message = session.exec(query).first()
    if message is None or message.status == OutboxStatus.SENT:
        session.rollback()
        return False
    message.attempts += 1
    try:
        if smtp_url:
            _send_smtp(smtp_url, message)
    except (OSError, smtplib.SMTPException) as exc:
        message.status = OutboxStatus.FAILED
        message.last_error = f"{type(exc).__name__}: {exc}"[:500]
        session.add(message)
        session.commit()
        raise
    message.status = OutboxStatus.SENT
    message.sent_at = utcnow()
    message.last_error = ""
    session.add(message)
    session.commit()
    return True


def unsent_message_ids(session: Session, *, older_than: datetime) -> list[int]:
    """Ids of messages still pending (or failed) that were written before ``older_than``."""
    rows = session.exec(
        select(OutboxMessage.id)
        .where(col(OutboxMessage.status).in_((OutboxStatus.PENDING, OutboxStatus.FAILED)))
        .where(OutboxMessage.created_at < older_than)
        .where(OutboxMessage.attempts < 10)
        .order_by(OutboxMessage.id)
    ).all()
    return [int(r) for r in rows]


def _send_smtp(smtp_url: str, message: OutboxMessage) -> None:
    parts = urlsplit(smtp_url)
    email = EmailMessage()
    email["From"] = SENDER
    email["To"] = message.to_address
    email["Subject"] = message.subject
    email["Message-ID"] = f"<outbox-{message.id}@portico.example>"
    email.set_content(message.text_body)
    email.add_alternative(message.html_body, subtype="html")
    smtp_class = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    with smtp_class(parts.hostname or "127.0.0.1", parts.port or 25, timeout=20) as client:
        if parts.scheme == "smtp+starttls":
            client.starttls()
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        client.send_message(email)
