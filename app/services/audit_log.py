"""The audit trail: one way to write an event, and the operator's filtered reading of it.

Every money-moving or permission-changing service adds an :class:`AuditEvent` with
:func:`add_event` inside the transaction that does the work, so the event and the action
commit (or roll back) together. Which actions write one, and why the billing run's
approvals do not, is recorded in ``docs/decisions/0020-audit-trail.md``.

Details never carry card data: the services put brands, last four digits and amounts in
them, and :func:`add_event` masks any run of twelve or more digits on the way in, so a
card number that slips into a note or a processor message is not kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from sqlalchemy import or_
from sqlmodel import Session, col, func, select

from app.domain.errors import FieldsInvalid
from app.domain.ids import parse_id
from app.models import AuditEvent, Partner, User

PAGE_SIZE: Final = 50
# What events are about (the operator's "Subject" choices; a DISTINCT over the table
# would read all of it).
SUBJECT_TYPES: Final = (
    "account", "billing_run", "customer_account", "invoice", "order", "partner", "payment",
    "scheduled_payment", "subscription", "user", "widget",
)  # fmt: skip
MASK: Final = "[masked]"
# Twelve or more digits, optionally split by single spaces or dashes: a card number's
# shape (a 16-digit PAN written "4242 4242 4242 4242" included).
_DIGIT_RUN: Final = re.compile(r"\d(?:[ -]?\d){11,}")


def add_event(
    session: Session,
    *,
    action: str,
    subject_type: str,
    subject_id: int | None,
    partner_id: int | None,
    customer_account_id: int | None = None,
    actor: User | None = None,
    actor_user_id: int | None = None,
    actor_label: str = "",
    detail: Mapping[str, object] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Add one audit event to the caller's transaction (no flush, no commit).

    The actor is ``actor`` (a signed-in user: id and email) or else ``actor_user_id``
    and ``actor_label`` ("billing run", "payer ann@example.com"); with neither it is
    "system". ``at`` overrides the row's creation time (services that take ``now``).
    """
    label = actor_label or (actor.email if actor is not None else "") or "system"
    event = AuditEvent(
        partner_id=partner_id,
        customer_account_id=customer_account_id,
        actor_user_id=actor.id if actor is not None else actor_user_id,
        actor_label=label[:200],
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        detail=_scrubbed(dict(detail or {})),
    )
    if at is not None:
        event.created_at = at
    session.add(event)
    return event


def _scrubbed(value: object) -> object:
    """``value`` with every card-number-shaped digit run masked (nested values too)."""
    if isinstance(value, str):
        return _DIGIT_RUN.sub(MASK, value)
    if isinstance(value, Mapping):
        return {str(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return value


@dataclass(frozen=True)
class AuditFilters:
    """The operator's filters; empty strings and None mean "any"."""

    partner_id: int | None = None
    action: str = ""
    actor: str = ""
    subject_type: str = ""
    since: date | None = None
    until: date | None = None

    @property
    def active(self) -> bool:
        """Whether any filter is set (the empty list then says "No events match")."""
        return any(getattr(self, name) for name in self.__dataclass_fields__)


@dataclass(frozen=True)
class AuditRow:
    """One listed event with its partner's name and its actor's email (if a user)."""

    event: AuditEvent
    partner_name: str
    actor_email: str


@dataclass(frozen=True)
class AuditPage:
    """One page of the listing, with the choices the filter form offers."""

    filters: AuditFilters
    rows: list[AuditRow]
    page: int
    has_next: bool
    partners: list[tuple[int, str]] = field(default_factory=list)
    subject_types: list[str] = field(default_factory=list)


def parse_filters(args: Mapping[str, str]) -> AuditFilters:
    """The filters from a query string.

    Raises:
        FieldsInvalid: a partner that is not a number, a date that is not YYYY-MM-DD, or
            a "to" date before the "from" date (each error names its field).
    """
    errors: dict[str, str] = {}
    partner_id: int | None = None
    raw_partner = args.get("partner", "").strip()
    if raw_partner:
        partner_id = parse_id(raw_partner)
        if partner_id is None:
            errors["partner"] = "Choose a partner from the list."
    days: dict[str, date | None] = {}
    for name in ("since", "until"):
        raw = args.get(name, "").strip()
        days[name] = None
        if raw:
            try:
                days[name] = date.fromisoformat(raw[:10])
            except ValueError:
                errors[name] = "Enter a date as YYYY-MM-DD."
    since, until = days["since"], days["until"]
    if since and until and until < since:
        errors["until"] = "The end date is before the start date."
    if errors:
        raise FieldsInvalid(errors)
    return AuditFilters(
        partner_id=partner_id,
        action=args.get("action", "").strip()[:80],
        actor=args.get("actor", "").strip()[:200],
        subject_type=args.get("subject_type", "").strip()[:40],
        since=since,
        until=until,
    )


def list_events(session: Session, filters: AuditFilters, *, page: int = 1) -> AuditPage:
    """Events matching ``filters``, newest first, ``PAGE_SIZE`` a page (1-based).

    ``action`` matches a whole action ("payment.refunded") or an area prefix ending in a
    dot ("payment."); ``actor`` matches a user's email or the event's label, case
    insensitively and in part; the dates are UTC days, both included.
    """
    page = max(1, min(page, 10_000))
    query = (
        select(AuditEvent, Partner.name, User.email)
        .outerjoin(Partner, col(Partner.id) == AuditEvent.partner_id)
        .outerjoin(User, col(User.id) == AuditEvent.actor_user_id)
    )
    if filters.partner_id is not None:
        query = query.where(AuditEvent.partner_id == filters.partner_id)
    if filters.action.endswith("."):
        query = query.where(col(AuditEvent.action).startswith(filters.action, autoescape=True))
    elif filters.action:
        query = query.where(AuditEvent.action == filters.action)
    if filters.subject_type:
        query = query.where(AuditEvent.subject_type == filters.subject_type)
    if filters.actor:
        needle = f"%{_escape_like(filters.actor.lower())}%"
        query = query.where(
            or_(
                func.lower(AuditEvent.actor_label).like(needle, escape="\\"),
                func.lower(User.email).like(needle, escape="\\"),
            )
        )
    if filters.since:
        query = query.where(AuditEvent.created_at >= _midnight(filters.since))
    if filters.until:
        query = query.where(AuditEvent.created_at < _midnight(filters.until + timedelta(days=1)))
    query = query.order_by(col(AuditEvent.created_at).desc(), col(AuditEvent.id).desc())
    found = session.exec(query.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)).all()
    rows = [AuditRow(event, name or "—", email or "") for event, name, email in found]
    return AuditPage(
        filters=filters,
        rows=rows[:PAGE_SIZE],
        page=page,
        has_next=len(rows) > PAGE_SIZE,
        partners=[(p.id, p.name) for p in session.exec(select(Partner).order_by(Partner.name))],  # type: ignore[misc]
        subject_types=list(SUBJECT_TYPES),
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)
