"""A partner admin's dunning policy: read, change, reset to the default (settings page).

A change applies to the stages still ahead of each unpaid invoice: the invoices of the
partner that are overdue get their next sweep day recomputed under the new policy, and
stages that fell in the past are never sent because of the change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import update
from sqlmodel import Session, col, select

from app.domain.dunning import DEFAULT_POLICY, Policy, parse_policy, policy_to_json, reschedule
from app.domain.errors import NotFound
from app.models import Invoice, Partner, User
from app.services.admin_access import admin_partner_id, audit, partner_for_update
from app.services.dunning import OPEN_STATUSES


@dataclass(frozen=True)
class DunningSettings:
    """The partner's policy and whether it is the default one."""

    policy: Policy
    is_default: bool


def dunning_settings(session: Session, user: User) -> DunningSettings:
    """The acting admin's partner's dunning policy.

    Raises:
        NotFound: the user is not a partner admin.
        PolicyInvalid: the stored policy breaks a rule (it is checked when saved).
    """
    partner = session.get(Partner, admin_partner_id(user))
    if partner is None:
        raise NotFound("Not found.")
    return DunningSettings(parse_policy(partner.dunning_policy), partner.dunning_policy is None)


def save_dunning_policy(
    session: Session, user: User, rows: Sequence[Mapping[str, object]], *, as_of: date
) -> Policy:
    """Check and store the admin's policy from a form's rows (rows without a day are left
    out); ``as_of`` is the partner's local today. A policy equal to the default is stored
    as "the default", so it follows the platform's default. Commits.

    Raises:
        NotFound: the user is not a partner admin.
        PolicyInvalid: with a message per field at fault (``stages-<row>-day`` …).
    """
    policy = parse_policy(rows, skip_blank=True)
    return _store(session, user, policy, as_of=as_of, action="partner.dunning_policy_updated")


def reset_dunning_policy(session: Session, user: User, *, as_of: date) -> Policy:
    """Go back to the default policy. Commits.

    Raises:
        NotFound: the user is not a partner admin.
    """
    return _store(session, user, DEFAULT_POLICY, as_of=as_of, action="partner.dunning_policy_reset")


def _store(session: Session, user: User, policy: Policy, *, as_of: date, action: str) -> Policy:
    partner = partner_for_update(session, user)
    partner.dunning_policy = None if policy == DEFAULT_POLICY else policy_to_json(policy)
    session.add(partner)
    rescheduled = reschedule_invoices(session, partner.id, policy, as_of=as_of)  # type: ignore[arg-type]
    audit(
        session,
        user,
        action,
        "partner",
        partner.id,
        {"policy": policy_to_json(policy), "invoices_rescheduled": rescheduled},
    )
    session.commit()
    return policy


def reschedule_invoices(session: Session, partner_id: int, policy: Policy, *, as_of: date) -> int:
    """Recompute the next sweep day of the partner's overdue unpaid invoices (no commit).

    Includes those that had finished the old policy, so stages the new one adds later
    still come. Returns how many invoices changed. Raises nothing of its own.
    """
    rows = session.exec(
        select(Invoice.id, Invoice.due_date, Invoice.dunning_day, Invoice.next_dunning_on).where(
            Invoice.partner_id == partner_id,
            col(Invoice.status).in_(OPEN_STATUSES),
            Invoice.total > Invoice.amount_paid,
            col(Invoice.due_date) < as_of,
        )
    ).all()
    changes = []
    for invoice_id, due_date, dunning_day, next_on in rows:
        passed, new_next = reschedule(
            policy, due_date=due_date, dunning_day=dunning_day, as_of=as_of
        )
        if next_on is not None and next_on <= as_of:
            new_next = next_on  # due a look today already (e.g. to turn overdue): keep it
        if (passed, new_next) != (dunning_day, next_on):
            changes.append({"id": invoice_id, "dunning_day": passed, "next_dunning_on": new_next})
    if changes:
        session.execute(update(Invoice), changes)
    return len(changes)
