"""An invoice's dunning timeline: the stages handled so far and the next one, with dates.

The invoice page includes ``partner/_dunning_timeline.html`` with the list this module
builds; the caller has already checked that the user may see the invoice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlmodel import Session, select

from app.domain.dunning import Policy, Stage, StageKind, latest_due_stage, next_stage, stop_stage
from app.models import CustomerAccount, DunningNotice, Invoice, Partner
from app.services.dunning import OPEN_STATUSES, policy_of
from app.services.dunning_emails import Audience, parse_recipients, recipients_of
from app.services.subscription_billing import partner_admin_addresses


@dataclass(frozen=True)
class TimelineEntry:
    """One stage on the timeline.

    ``state`` is ``sent`` (emails written, or service stopped), ``skipped`` (a missed run
    caught up with a later stage instead) or ``next`` (not handled yet: ``on`` is the
    day it is planned for). ``recipients`` are ``(audience, address)`` pairs.
    """

    day: int
    stage: str
    label: str
    due_on: date
    state: str
    on: date
    recipients: tuple[tuple[str, str], ...] = ()


def _label(kind: str, day: int, policy: Policy) -> str:
    if kind == StageKind.WARNING:
        stop = stop_stage(policy)
        if stop is not None and stop.day > day:
            return f"Warning: service stops in {stop.day - day} days"
        return "Warning: service stops soon"
    if kind == StageKind.STOP:
        return "Service stop"
    return "Reminder"


def timeline_for(session: Session, invoice: Invoice, *, as_of: date) -> list[TimelineEntry]:
    """The invoice's handled stages in order (sent or skipped, with date and recipients),
    then its next stage with the day it is planned for (none when it is paid, canceled,
    not overdue-bound or done). ``as_of`` is the partner's local today.

    Raises LookupError when the invoice's partner or account is missing.
    """
    partner = session.get(Partner, invoice.partner_id)
    account = session.get(CustomerAccount, invoice.customer_account_id)
    if partner is None or account is None:
        raise LookupError(f"invoice {invoice.id} has no partner or account")
    policy = policy_of(partner)
    notices = session.exec(
        select(DunningNotice)
        .where(DunningNotice.invoice_id == invoice.id)
        .order_by(DunningNotice.day)  # type: ignore[arg-type]
    ).all()
    entries = [
        TimelineEntry(
            day=n.day,
            stage=n.stage,
            label=_label(n.stage, n.day, policy),
            due_on=n.due_on,
            state="skipped" if n.skipped else "sent",
            on=n.handled_on,
            recipients=tuple(parse_recipients(n.recipients)),
        )
        for n in notices
    ]
    if invoice.status not in OPEN_STATUSES or invoice.balance <= 0:
        return entries
    stage, on = _upcoming(policy, invoice, as_of)
    if stage is not None:
        audience = Audience(partner, tuple(partner_admin_addresses(session, partner.id)))  # type: ignore[arg-type]
        entries.append(
            TimelineEntry(
                day=stage.day,
                stage=stage.kind.value,
                label=_label(stage.kind, stage.day, policy),
                due_on=invoice.due_date + timedelta(days=stage.day),
                state="next",
                on=on,
                recipients=tuple(recipients_of(stage, invoice, account, audience)),
            )
        )
    return entries


def _upcoming(policy: Policy, invoice: Invoice, as_of: date) -> tuple[Stage | None, date]:
    """The next stage to be handled and its day: one due already goes on today's sweep."""
    days = (as_of - invoice.due_date).days
    due_now = latest_due_stage(policy, days, invoice.dunning_day)
    if due_now is not None:
        return due_now, as_of
    later = next_stage(policy, max(days, invoice.dunning_day))
    if later is None:
        return None, as_of
    return later, invoice.due_date + timedelta(days=later.day)
