"""The history timeline of a customer account: who did what, in words people read.

History rows are ``AuditEvent`` rows written by the services that act (subscriptions,
billing on behalf, widget payments, …). This module only reads them: the rows of one
account and of its subscriptions, newest first, with the actor's current name and the
subscription's description loaded by the same statement (never a query per row).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, union_all
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, func, select

from app.domain.money import format_money
from app.models import AuditEvent, CustomerAccount, Subscription, User

HISTORY_LIMIT = 30


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime  # in the partner's timezone
    actor: str
    text: str
    details: list[str]
    action: str


@dataclass(frozen=True)
class Subject:
    """What an event is about, as far as the timeline needs it."""

    description: str  # the subscription's description, or ""
    currency: str


def account_history(
    session: Session, account: CustomerAccount, *, timezone: str, limit: int = HISTORY_LIMIT
) -> tuple[list[HistoryEntry], int]:
    """The latest ``limit`` history entries of ``account`` and the number there are in all.

    Covers events recorded against the account and events about any of its
    subscriptions, newest first. One statement, whatever the number of rows. The caller
    has already checked that the user may see ``account``; raises nothing of its own.
    """
    # Three index lookups: the account's own events, then events of its subscriptions and
    # events about the account that carry no (or another) account id, so no event comes
    # twice and no other account's events are read.
    elsewhere = or_(
        col(AuditEvent.customer_account_id).is_(None),
        AuditEvent.customer_account_id != account.id,
    )
    own = select(AuditEvent).where(AuditEvent.customer_account_id == account.id)
    of_subscriptions = select(AuditEvent).where(
        AuditEvent.subject_type == "subscription",
        col(AuditEvent.subject_id).in_(
            select(Subscription.id).where(Subscription.customer_account_id == account.id)
        ),
        elsewhere,
    )
    about_account = select(AuditEvent).where(
        col(AuditEvent.subject_type).in_(("account", "customer_account")),
        AuditEvent.subject_id == account.id,
        elsewhere,
    )
    event = aliased(AuditEvent, union_all(own, of_subscriptions, about_account).subquery())
    rows = session.exec(
        select(
            event,
            User.name,
            User.email,
            Subscription.description,
            Subscription.currency,
            func.count().over(),
        )
        .outerjoin(User, col(User.id) == event.actor_user_id)
        .outerjoin(
            Subscription,
            and_(event.subject_type == "subscription", col(Subscription.id) == event.subject_id),
        )
        .order_by(event.created_at.desc(), event.id.desc())
        .limit(limit)
    ).all()
    zone = ZoneInfo(timezone)
    entries = []
    for event, name, email, description, currency, _total in rows:
        subject = Subject(description or "", currency or account.currency)
        text, details = describe(event.action, event.detail or {}, subject)
        entries.append(
            HistoryEntry(
                at=event.created_at.astimezone(zone),
                actor=name or email or _label(event.actor_label),
                text=text,
                details=details,
                action=event.action,
            )
        )
    total = int(rows[0][-1]) if rows else 0
    return entries, total


def _label(actor_label: str) -> str:
    """A stored actor label ("system", "billing run", "payer a@b.example") for people."""
    label = actor_label.strip() or "system"
    return label[:1].upper() + label[1:]


# -- readable text ---------------------------------------------------------------------------

Describer = Callable[[Mapping[str, object], Subject], tuple[str, list[str]]]


def _sub(subject: Subject) -> str:
    """“subscription “Gym””, or “a subscription” when it has no description."""
    return f"subscription “{subject.description}”" if subject.description else "a subscription"


def _money(value: object, subject: Subject) -> str:
    """Minor units in the subject's currency, or "—" for a missing amount."""
    return format_money(value, subject.currency) if isinstance(value, int) else "—"


def _on_behalf_rescheduled(detail: Mapping[str, object], subject: Subject) -> tuple[str, list[str]]:
    """The new start date and price a billing-on-behalf activation gave a subscription."""
    changes = []
    if detail.get("old_start") != detail.get("new_start"):
        changes.append(f"Start date {detail.get('old_start')} → {detail.get('new_start')}")
    if detail.get("old_price") != detail.get("new_price"):
        old = _money(detail.get("old_price"), subject)
        new = _money(detail.get("new_price"), subject)
        changes.append(f"Price {old} → {new}")
    return f"Changed {_sub(subject)} for billing on behalf", changes


def _skipped_periods(detail: Mapping[str, object]) -> list[str]:
    """The detail line for missed charges skipped on resuming, if any."""
    skipped = detail.get("periods_skipped")
    if isinstance(skipped, int) and skipped > 0:
        return [f"{skipped} missed charge{'s' if skipped != 1 else ''} skipped"]
    return []


_DESCRIBERS: dict[str, Describer] = {
    "subscription.created": lambda d, s: (
        f"Created {_sub(s)}",
        [f"Initial charge {_money(d['initial_amount'], s)}"] if d.get("initial_amount") else [],
    ),
    "subscription.updated": lambda d, s: (f"Changed {_sub(s)}", []),
    "subscription.stopped": lambda d, s: (f"Stopped {_sub(s)}", []),
    "subscription.resumed": lambda d, s: (f"Resumed {_sub(s)}", _skipped_periods(d)),
    "subscription.set_recurring": lambda d, s: (
        f"Set {_sub(s)} back to recurring",
        _skipped_periods(d),
    ),
    "subscription.skipped": lambda d, s: (
        f"Skipped the next charge of {_sub(s)}",
        [f"Charge of {d['date']} skipped"] if d.get("date") else [],
    ),
    "subscription.payment_method_updated": lambda d, s: (
        f"Changed the payment method of {_sub(s)}",
        [f"Now the card or account ending {d['last4']}"] if d.get("last4") else [],
    ),
    "subscription.retried": lambda d, s: (
        f"Retried the failed charge of {_sub(s)}",
        [f"Last error: {d['last_error']}"] if d.get("last_error") else [],
    ),
    "subscription.rescheduled_on_behalf": _on_behalf_rescheduled,
    "billing_on_behalf.activated": lambda d, s: (
        "Activated billing on behalf",
        [f"Start date {d.get('start_date', '—')}", f"Billing email {d.get('billing_email', '—')}"],
    ),
    "billing_on_behalf.email_changed": lambda d, s: (
        "Changed the billing-on-behalf email",
        [f"{d.get('old') or '—'} → {d.get('new') or '—'}"],
    ),
    "subscription.canceled_by_customer": lambda d, s: (
        f"Canceled {_sub(s)} at the end of the period",
        [f"Ends on {d['ends_on']}"] if d.get("ends_on") else [],
    ),
    "scheduled_payment.created": lambda d, s: (
        f"Scheduled a payment of {d['amount']} for {d['pay_on']}",
        [f"Invoice {d['invoice']}", f"With {d['method']}"],
    ),
    "scheduled_payment.canceled": lambda d, s: (
        f"Canceled the scheduled payment of {d['amount']}",
        [str(d["reason"])] if d.get("reason") else [],
    ),
    "scheduled_payment.paid": lambda d, s: (f"Scheduled payment of {d['amount']} charged", []),
    "scheduled_payment.failed": lambda d, s: (
        f"Scheduled payment of {d['amount']} failed",
        [f"Reason: {d['reason']}"] if d.get("reason") else [],
    ),
    "widget.paid": lambda d, s: (
        f"Paid {_money(d.get('amount'), s)} through a take-payment widget",
        [f"Frequency: {str(d['frequency']).replace('_', ' ')}"] if d.get("frequency") else [],
    ),
}

# Detail keys that only make sense to machines (ids, internal counters).
_HIDDEN_KEYS = frozenset({"account_id", "widget_id", "first_period", "form_reference"})


def describe(action: str, detail: Mapping[str, object], subject: Subject) -> tuple[str, list[str]]:
    """The sentence and detail lines for one history row.

    Known actions get a sentence written for them; any other action is shown from its
    name ("invoice.canceled" → "Invoice canceled") with its details as "Key: value"
    lines, so a new kind of event is readable the day it is recorded. Raises nothing.
    """
    if action.startswith("order."):
        from app.services import order_detail  # it words order events; it imports this module

        if action in order_detail.ORDER_SENTENCES:
            return order_detail.describe_order_event(action, detail, subject.currency)
    describer = _DESCRIBERS.get(action)
    if describer is not None:
        try:
            return describer(detail, subject)
        except (KeyError, TypeError, ValueError):
            pass  # an older row with other detail keys: fall back to the generic text
    area, _, verb = action.partition(".")
    words = f"{area} {verb}".replace("_", " ").strip()
    lines = [
        f"{key.replace('_', ' ').capitalize()}: {value}"
        for key, value in detail.items()
        if key not in _HIDDEN_KEYS and value not in (None, "", [], {})
    ]
    return words[:1].upper() + words[1:], lines
