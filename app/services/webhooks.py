"""Processor events (webhooks): verified, stored once, applied once (ADR 0018).

After dj-stripe: the view verifies the signature on the raw body, then
:func:`receive_event` commits a :class:`ProcessorEvent` row whose unique
(gateway, event id) makes every redelivery, and the same event on ten connections at
once, land once. Only the request that inserted the row applies it, in the same request
(no queue: see the ADR). Applying is idempotent on its own (the payment's conditional
settlement, the parent payment's row lock and a unique purpose key for refunds), so an
event whose application failed, or whose inserter died, is applied again safely by a
later delivery of it (the processor redelivers until it gets a 2xx) or by
:func:`apply_unapplied`.

Outcomes recorded on the row: ``applied`` (Portico's state changed), ``noop`` (it
already said so), ``stale`` (older than an event already applied to the same object),
``ignored`` (a type Portico does not act on), ``unknown_object`` (no payment of ours),
``conflict`` (the processor and Portico disagree; the reconciler's ``verify`` reports
it), ``failed`` (applying raised; the error is kept and a redelivery retries it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.domain.errors import InvalidInput
from app.gateway.base import PaymentGateway, WebhookEvent
from app.models import ProcessorEvent
from app.services import webhook_effects as effects

# A row still unapplied this long after it arrived lost its inserter (a crash between
# the insert and the application): the next delivery of the event applies it.
RETRY_AFTER: Final = timedelta(seconds=60)
UNAPPLIED: Final = ("", "failed")
MAX_ERROR: Final = 2000


class EventNotApplied(Exception):
    """The event is stored but applying it raised; the error is kept on its row.

    Not a DomainError: the processor must hear a 5xx so that it delivers the event again.
    """

    def __init__(self, event_id: str) -> None:
        super().__init__(f"processor event {event_id} is stored but not applied")
        self.event_id = event_id


@dataclass(frozen=True)
class Delivery:
    """What one delivery of an event did: the row's outcome, whether another delivery
    owns the row, and the outbox rows written (to enqueue after the commit)."""

    event_id: str
    outcome: str
    duplicate: bool = False
    email_ids: list[int] = field(default_factory=list)


def receive_event(
    session: Session, gateway: PaymentGateway, event: WebhookEvent, *, now: datetime
) -> Delivery:
    """Store a verified event once, then apply it if this delivery stored it.

    A redelivery of an event already applied, or still being applied by the delivery
    that stored it, changes nothing (``duplicate``). One left unapplied by a failure, or
    by a delivery that died more than ``RETRY_AFTER`` ago, is applied by this one.

    Raises:
        InvalidInput: an event id that is empty, longer than 255 characters or not
            printable.
        EventNotApplied: applying raised (the row keeps the error; deliver it again).
    """
    if not event.id or len(event.id) > 255 or not event.id.isprintable():
        raise InvalidInput("The event has no usable id.", "id")
    row = ProcessorEvent(
        gateway=gateway.name,
        event_id=event.id,
        type="".join(c for c in event.type[:100] if c.isprintable()),
        object_ref=effects.object_ref(event.data)[:255],
        event_created=event.created,
        payload=dict(event.data),
        received_at=now,
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = find_event(session, gateway.name, event.id)
        if existing is None:  # the constraint that fired was not the event's
            raise
        session.rollback()
        if not _left_unapplied(existing, now):
            return Delivery(event.id, existing.outcome, duplicate=True)
        row = existing
    return apply_stored(session, gateway, row, now=now)


def find_event(session: Session, gateway_name: str, event_id: str) -> ProcessorEvent | None:
    """The stored event ``event_id`` of the processor ``gateway_name``, if any."""
    return session.exec(
        select(ProcessorEvent).where(
            ProcessorEvent.gateway == gateway_name, ProcessorEvent.event_id == event_id
        )
    ).first()


def apply_stored(
    session: Session, gateway: PaymentGateway, row: ProcessorEvent, *, now: datetime
) -> Delivery:
    """Apply a stored event and record its outcome on the row (commits).

    The payment's effects commit in their own transaction (the reconciler's and the
    refund service's); the outcome is written after them, so a crash in between leaves
    the row unapplied and the next attempt finds the effects already there (``noop``).

    Raises:
        EventNotApplied: applying raised; the row records ``failed`` and the error.
    """
    try:
        applied = effects.apply_event(session, gateway, _event_of(row), now=now)
    except Exception as exc:
        session.rollback()
        _record(session, row, "failed", error=f"{type(exc).__name__}: {exc}"[:MAX_ERROR], now=None)
        raise EventNotApplied(row.event_id) from exc
    _record(session, row, applied.outcome, error=applied.note[:MAX_ERROR], now=now)
    return Delivery(row.event_id, applied.outcome, email_ids=list(applied.email_ids))


def apply_unapplied(session: Session, gateway: PaymentGateway, *, now: datetime) -> list[Delivery]:
    """Apply every event of ``gateway`` left unapplied (failed, or its inserter died).

    The sweeper's pass, for events the processor will not deliver again; rows that fail
    again keep their new error and are skipped. Returns what each application did.
    """
    rows = session.exec(
        select(ProcessorEvent)
        .where(
            ProcessorEvent.gateway == gateway.name,
            col(ProcessorEvent.applied_at).is_(None),
            col(ProcessorEvent.outcome).in_(UNAPPLIED),
        )
        .order_by(col(ProcessorEvent.event_created), col(ProcessorEvent.id))
    ).all()
    session.rollback()
    done: list[Delivery] = []
    for row in rows:
        if not _left_unapplied(row, now):
            continue
        try:
            done.append(apply_stored(session, gateway, row, now=now))
        except EventNotApplied:
            continue
    return done


def _left_unapplied(row: ProcessorEvent, now: datetime) -> bool:
    if row.applied_at is not None or row.outcome not in UNAPPLIED:
        return False
    received = row.received_at
    if received.tzinfo is None:  # SQLite returns naive UTC
        received = received.replace(tzinfo=now.tzinfo)
    return row.outcome == "failed" or received <= now - RETRY_AFTER


def _event_of(row: ProcessorEvent) -> effects.StoredEvent:
    return effects.StoredEvent(
        id=row.id,  # type: ignore[arg-type]
        gateway=row.gateway,
        event_id=row.event_id,
        type=row.type,
        object_ref=row.object_ref,
        created=row.event_created,
        data=row.payload,
    )


def _record(
    session: Session, row: ProcessorEvent, outcome: str, *, error: str, now: datetime | None
) -> None:
    session.execute(
        update(ProcessorEvent)
        .where(col(ProcessorEvent.id) == row.id)
        .values(outcome=outcome, error=error, applied_at=now)
        .execution_options(synchronize_session=False)
    )
    session.commit()
