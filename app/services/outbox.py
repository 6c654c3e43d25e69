"""Reading the email outbox (the operator's page) and sending a failed message again.

Who may read it is the view's decision (operators; anyone signed in during development);
these functions only read or reset rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy.orm import defer
from sqlmodel import Session, col, func, select

from app.domain.errors import Conflict, NotFound
from app.models import OutboxMessage, OutboxStatus
from app.services.email import build_email

PER_PAGE: Final = 50
STATUSES: Final = tuple(s.value for s in OutboxStatus)


@dataclass(frozen=True)
class OutboxFilters:
    """The list's filters; unknown statuses are ignored, the search matches recipients."""

    status: str = ""
    kind: str = ""
    search: str = ""

    @property
    def active(self) -> bool:
        return bool(self.status or self.kind or self.search)


@dataclass(frozen=True)
class OutboxPage:
    rows: list[OutboxMessage]
    page: int
    has_next: bool
    filters: OutboxFilters
    kinds: list[str]
    statuses: tuple[str, ...] = STATUSES


@dataclass(frozen=True)
class OutboxDetail:
    message: OutboxMessage
    headers: list[tuple[str, str]]

    @property
    def can_send_again(self) -> bool:
        return self.message.status in (OutboxStatus.FAILED, OutboxStatus.REJECTED)


def list_outbox(
    session: Session, filters: OutboxFilters, *, page: int = 1, per_page: int = PER_PAGE
) -> OutboxPage:
    """One page of outbox messages, newest first, without their bodies. Raises nothing."""
    page = max(1, page)
    query = select(OutboxMessage).options(
        defer(OutboxMessage.text_body),  # type: ignore[arg-type]
        defer(OutboxMessage.html_body),  # type: ignore[arg-type]
    )
    if filters.status in STATUSES:
        query = query.where(col(OutboxMessage.status) == filters.status)
    if filters.kind:
        query = query.where(col(OutboxMessage.kind) == filters.kind)
    if filters.search.strip():
        # Escape LIKE wildcards so "a_b" or "50%" match literally.
        term = filters.search.strip().lower()
        term = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(func.lower(OutboxMessage.to_address).like(f"%{term}%", escape="\\"))
    rows = list(
        session.exec(
            query.order_by(col(OutboxMessage.id).desc())
            .offset((page - 1) * per_page)
            .limit(per_page + 1)
        ).all()
    )
    kinds = session.exec(select(OutboxMessage.kind).distinct().order_by(OutboxMessage.kind)).all()
    return OutboxPage(
        rows=rows[:per_page],
        page=page,
        has_next=len(rows) > per_page,
        filters=filters,
        kinds=[str(k) for k in kinds],
    )


def outbox_message(session: Session, message_id: int) -> OutboxDetail:
    """One message with the headers it is sent with.

    Raises:
        NotFound: no such message.
    """
    message = session.get(OutboxMessage, message_id)
    if message is None:
        raise NotFound("We could not find that email.")
    email = build_email(message, date=message.sent_at)
    headers = [(name, str(value)) for name, value in email.items()]
    return OutboxDetail(message=message, headers=headers)


def send_again(session: Session, message_id: int) -> OutboxMessage:
    """Put a failed or rejected message back to ``pending`` and commit (a person fixed the
    address or the server); the caller then enqueues it.

    Its attempts stay counted; the last error is cleared until the next try.

    Raises:
        NotFound: no such message.
        Conflict: the message is neither failed nor rejected (pending ones are on their
            way, sent ones went out).
    """
    message = session.exec(
        select(OutboxMessage).where(OutboxMessage.id == message_id).with_for_update()
    ).first()
    if message is None:
        session.rollback()
        raise NotFound("We could not find that email.")
    if message.status not in (OutboxStatus.FAILED, OutboxStatus.REJECTED):
        session.rollback()
        raise Conflict(
            f"This email is {message.status}; only a failed or rejected email can be sent again."
        )
    message.status = OutboxStatus.PENDING
    message.last_error = ""
    session.add(message)
    session.commit()
    return message
