"""Email: messages are outbox rows first, delivered by a job after the commit (ADR 0004)."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, getaddresses, parseaddr
from typing import Any, Final

from sqlalchemy import and_, or_, text, update
from sqlmodel import Session, col, select

from app.clock import utcnow
from app.models import OutboxMessage, OutboxStatus
from app.services.smtp_transport import (
    ConnectionLost,
    SmtpBatchConnection,
    TransportGaveUp,
    describe,
    is_permanent,
)

SENDER = "Portico <billing@portico.example>"
MESSAGE_ID_DOMAIN = "portico.example"
_ENVELOPE_SENDER: Final = parseaddr(SENDER)[1]
# Bodies go out as UTF-8, quoted-printable: readable, 7-bit safe, short lines.
_UTF8_QP: Final = Charset("utf-8")
_UTF8_QP.body_encoding = QP
_WIRE: Final = compat32.clone(linesep="\r\n")
# The sweeper stops retrying a failed message after this many attempts in all ("Send
# again" on the outbox page still works).
MAX_ATTEMPTS: Final = 12
# A message never enqueued (a crash between commit and enqueue) is swept after this.
PENDING_GRACE: Final = timedelta(minutes=1)


class DeliveryFailed(Exception):
    """Some messages of a batch were not accepted; each row says why (status failed).

    Raised after every message of the batch was tried, so RQ retries the job and the
    retry sends only those (the others are already marked sent).
    """

    def __init__(self, failed: dict[int, str]) -> None:
        first = next(iter(failed.items()), (0, ""))
        super().__init__(f"{len(failed)} email(s) not delivered; #{first[0]}: {first[1]}")
        self.failed = failed


@dataclass
class DeliveryReport:
    """What one delivery pass did: ids sent, ids failed (retried) or rejected for good
    (5xx, not retried) with their error, ids left alone."""

    sent: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)
    skipped: int = 0
    connections: int = 0


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
    so a notification is written once per purpose. Raises nothing of its own.
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
    """Send one outbox message if it is still unsent (see :func:`deliver_many`).

    Returns False when there was nothing to do (unknown id, already sent, or being sent
    by another worker right now).

    Raises:
        DeliveryFailed: the message was not accepted; its row is marked failed first.
    """
    return bool(deliver_many(session, [message_id], smtp_url=smtp_url).sent)


def deliver_many(session: Session, message_ids: list[int], *, smtp_url: str) -> DeliveryReport:
    """Send every still-unsent message of ``message_ids`` over one SMTP connection.

    Each message, in id order, is claimed alone: its row is locked (``FOR UPDATE SKIP
    LOCKED`` on PostgreSQL, so a message another worker holds is skipped, not waited for;
    on SQLite the claim takes the database's write lock), its ``attempts`` counted, and it
    is sent while the lock is held. Right after the server accepts it the row is marked
    ``sent`` in its own short commit; a refused message is marked ``failed`` with the
    server's answer (``rejected`` when the refusal is permanent, 5xx: it is not tried
    again), and the batch goes on. Two workers given the same batch therefore
    never both send a message, and a crash mid-batch can re-send at most the one message
    in flight.

    The trade-off: SMTP has no idempotency key, so if the process dies (or the database
    commit fails) after the server accepted a message and before the ``sent`` commit,
    that one message is sent again by the next attempt; so is a message whose
    connection drops after its data went out but before the server's answer came back
    (it is re-sent on the new connection). On PostgreSQL these commits do not wait for
    the disk: a database crash can lose the last fraction of a second of ``sent`` marks,
    re-sending those few. Each keeps its stable ``Message-ID`` so mail clients can fold
    the duplicate. We prefer that rare duplicate to a lost receipt (ADR 0004).

    The connection is opened before any row is claimed. If it drops mid-batch it is
    opened again once and the batch continues with the same message; if it drops again,
    or cannot be opened at all, that message and every later one are marked failed with
    that error. Without ``smtp_url`` nothing is sent: the messages are marked sent and
    stay readable in the outbox.

    Raises:
        DeliveryFailed: after the whole batch was tried, when any message was not
            accepted (RQ then retries the job with backoff; sent ones are skipped).
        SQLAlchemyError: the database failed; the job fails and RQ retries it.
    """
    ids = _still_unsent(session, message_ids)
    if not smtp_url:
        return _keep_in_outbox(session, ids)
    report = DeliveryReport()
    try:
        connection = SmtpBatchConnection(smtp_url)
    except ValueError as exc:
        report.failed.update(_fail_all(session, ids, f"Configuration: {exc}"))
        raise DeliveryFailed(report.failed) from exc
    try:
        index = 0
        while index < len(ids):
            message_id = ids[index]
            try:
                connection.open()  # before the claim: no lock is held while connecting
            except TransportGaveUp as exc:
                report.failed.update(_fail_all(session, ids[index:], describe(exc)))
                break
            row = _claim(session, message_id)
            if row is None:
                session.rollback()
                report.skipped += 1
                index += 1
                continue
            try:
                recipients, data = _wire_message(row)
                refused = connection.send(_ENVELOPE_SENDER, recipients, data)
            except ConnectionLost:
                session.rollback()  # not an attempt: tried again on a new connection
                continue
            except Exception as exc:  # refused, or unsendable: this message only
                error = describe(exc)
                if is_permanent(exc):
                    _finish(session, message_id, status=OutboxStatus.REJECTED, error=error)
                    report.rejected[message_id] = error
                else:
                    _finish(session, message_id, status=OutboxStatus.FAILED, error=error)
                    report.failed[message_id] = error
                index += 1
                continue
            partly = describe(smtplib.SMTPRecipientsRefused(refused)) if refused else ""
            _finish(session, message_id, status=OutboxStatus.SENT, error=partly)
            report.sent.append(message_id)
            index += 1
    finally:
        connection.close()
        report.connections = connection.connections
    if report.failed:
        raise DeliveryFailed(report.failed)
    return report


def unsent_message_ids(session: Session, *, now: datetime) -> list[int]:
    """Ids the outbox sweeper should hand to a job again, oldest first (read-only).

    A ``pending`` message older than a minute was never enqueued (or its job was lost). A
    ``failed`` message with ``n`` attempts is due again once it is older than 2**n
    minutes, so the sweeper backs off further after RQ's own retries of the job
    (10 s … 30 min) are spent; after ``MAX_ATTEMPTS`` attempts it is left for a person
    (the outbox page's "Send again"). Raises nothing of its own.
    """
    failed_due = [
        and_(
            col(OutboxMessage.attempts) == attempts,
            col(OutboxMessage.created_at) < now - timedelta(minutes=2**attempts),
        )
        for attempts in range(MAX_ATTEMPTS)
    ]
    rows = session.exec(
        select(OutboxMessage.id)
        .where(
            or_(
                and_(
                    col(OutboxMessage.status) == OutboxStatus.PENDING,
                    col(OutboxMessage.created_at) < now - PENDING_GRACE,
                ),
                and_(col(OutboxMessage.status) == OutboxStatus.FAILED, or_(*failed_due)),
            )
        )
        .order_by(col(OutboxMessage.id))
    ).all()
    return [int(r) for r in rows]


def _still_unsent(session: Session, message_ids: list[int]) -> list[int]:
    ids = sorted(set(message_ids))
    found: list[int] = []
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        found += session.exec(
            select(OutboxMessage.id)
            .where(col(OutboxMessage.id).in_(chunk))
            .where(col(OutboxMessage.status).not_in((OutboxStatus.SENT, OutboxStatus.REJECTED)))
        ).all()
    session.rollback()
    return sorted(int(i) for i in found)


def _claim(session: Session, message_id: int) -> Any | None:
    """Lock one unsent row and count the attempt; None if sent or held by another worker."""
    target: Any = message_id
    if session.get_bind().dialect.name == "postgresql":
        # This transaction need not wait for the disk: losing its commit in a database
        # crash re-sends one message, the duplicate we already accept (see deliver_many).
        session.connection().execute(text("SET LOCAL synchronous_commit TO OFF"))
        target = (
            select(OutboxMessage.id)
            .where(col(OutboxMessage.id) == message_id)
            .where(col(OutboxMessage.status).not_in((OutboxStatus.SENT, OutboxStatus.REJECTED)))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    claim = (
        update(OutboxMessage)
        .where(col(OutboxMessage.id) == target)
        .where(col(OutboxMessage.status) != OutboxStatus.SENT)
        .values(attempts=col(OutboxMessage.attempts) + 1)
        .returning(
            col(OutboxMessage.id),
            col(OutboxMessage.to_address),
            col(OutboxMessage.subject),
            col(OutboxMessage.text_body),
            col(OutboxMessage.html_body),
        )
    )
    # On the session's connection, as Core: the ORM's bulk-update layer adds nothing here.
    return session.connection().execute(claim).first()


def _finish(session: Session, message_id: int, *, status: str, error: str) -> None:
    """Record the outcome of the claimed message and commit (releasing its lock)."""
    values: dict[str, Any] = {"status": status, "last_error": error}
    if status == OutboxStatus.SENT:
        values["sent_at"] = utcnow()
    session.connection().execute(
        update(OutboxMessage).where(col(OutboxMessage.id) == message_id).values(**values)
    )
    session.commit()


def _fail_all(session: Session, ids: list[int], error: str) -> dict[int, str]:
    """Mark every still-unsent message of ``ids`` failed with ``error`` (one attempt each).

    Rows another worker holds right now (PostgreSQL) are left to that worker.
    """
    failed: dict[int, str] = {}
    for message_id in ids:
        if _claim(session, message_id) is None:
            session.rollback()
            continue
        _finish(session, message_id, status=OutboxStatus.FAILED, error=error)
        failed[message_id] = error
    return failed


def _keep_in_outbox(session: Session, ids: list[int]) -> DeliveryReport:
    """No SMTP server configured: the messages count as sent and stay in the outbox."""
    report = DeliveryReport()
    for message_id in ids:
        if _claim(session, message_id) is None:
            session.rollback()
            report.skipped += 1
            continue
        _finish(session, message_id, status=OutboxStatus.SENT, error="")
        report.sent.append(message_id)
    return report


def build_email(row: Any, *, date: datetime | None = None) -> Message:
    """The MIME message sent for an outbox row: text and HTML alternatives, the stable
    ``Message-ID``, and a ``Date`` header when ``date`` is given. Raises nothing.

    Built with the classic ``email.mime`` classes (compat32): about five times cheaper
    than ``EmailMessage`` and its header registry, which was most of a send's CPU time.
    """
    email = MIMEMultipart("alternative")
    email["From"] = SENDER
    email["To"] = row.to_address
    email["Subject"] = row.subject if row.subject.isascii() else Header(row.subject, "utf-8")
    email["Message-ID"] = message_id_header(int(row.id))
    if date is not None:
        email["Date"] = format_datetime(date, usegmt=True)
    email.attach(_text_part(row.text_body, "plain"))
    email.attach(_text_part(row.html_body, "html"))
    return email


def _wire_message(row: Any) -> tuple[list[str], bytes]:
    """Envelope recipients and CRLF bytes of a claimed row; ValueError without a recipient."""
    recipients = [a for _, a in getaddresses([row.to_address]) if "@" in a]
    if not recipients:
        raise ValueError(f"no recipient address in {row.to_address!r}")
    return recipients, build_email(row, date=utcnow()).as_bytes(policy=_WIRE)


def _text_part(body: str, subtype: str) -> MIMEText:
    # Quoted-printable even for ASCII: it keeps every line under SMTP's 998-octet limit.
    return MIMEText(body, subtype, _UTF8_QP)  # type: ignore[arg-type]


def message_id_header(message_id: int) -> str:
    """The stable ``Message-ID`` of outbox message ``message_id`` (the same on every try)."""
    return f"<outbox-{message_id}@{MESSAGE_ID_DOMAIN}>"
