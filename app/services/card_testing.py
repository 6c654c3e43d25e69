"""Card-testing defence: too many declines from one address or email stop the attempts.

Declines are counted per payment source (a widget, or a pay link's invoice) and per
client address or per email over a sliding window. Past the limit, attempts from that
address or email are refused before they reach the processor; payers elsewhere are not
affected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, func, select

from app.domain.errors import DomainError
from app.models import DeclineRecord


@dataclass(frozen=True)
class DeclineLimit:
    attempts: int = 5
    window: timedelta = timedelta(minutes=10)


class TooManyDeclines(DomainError):
    status_code = 429

    def __init__(self, window: timedelta) -> None:
        minutes = int(window.total_seconds() // 60)
        super().__init__(
            "Too many declined payments from this device or email. For your security, "
            f"please wait {minutes} minutes before trying again, or contact us."
        )


def ensure_allowed(
    session: Session,
    *,
    source: str,
    client_address: str,
    email: str,
    now: datetime,
    limit: DeclineLimit,
) -> None:
    """Refuse when the address or the email reached the decline limit within the window.

    Raises TooManyDeclines. Reads only.
    """
    since = now - limit.window
    email = email.strip().lower()
    by_address = session.exec(
        select(func.count())
        .select_from(DeclineRecord)
        .where(
            DeclineRecord.source == source,
            DeclineRecord.client_address == client_address,
            DeclineRecord.created_at > since,
        )
    ).one()
    by_email = 0
    if email:
        by_email = session.exec(
            select(func.count())
            .select_from(DeclineRecord)
            .where(
                DeclineRecord.source == source,
                DeclineRecord.email == email,
                DeclineRecord.created_at > since,
            )
        ).one()
    if by_address >= limit.attempts or by_email >= limit.attempts:
        raise TooManyDeclines(limit.window)


def record_decline(
    session: Session,
    *,
    partner_id: int,
    source: str,
    client_address: str,
    email: str,
    now: datetime,
) -> None:
    """Add one decline to the caller's transaction (the caller commits)."""
    session.add(
        DeclineRecord(
            partner_id=partner_id,
            source=source,
            client_address=client_address[:64],
            email=email.strip().lower()[:254],
            created_at=now,
        )
    )


def prune(session: Session, *, older_than: datetime) -> int:
    """Delete decline records older than ``older_than`` (commits); returns how many."""
    result = session.execute(
        delete(DeclineRecord).where(col(DeclineRecord.created_at) < older_than)
    )
    session.commit()
    return int(result.rowcount or 0)
