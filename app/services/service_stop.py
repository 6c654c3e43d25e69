"""Stopping and restoring a customer's service for overdue invoices (ARCHITECTURE §1).

Dunning stops service at its last stage: the account is flagged ``suspended`` and its
recurring subscriptions become ``suspended`` (the billing run skips them). Paying every
overdue invoice restores service: the subscriptions recur again from the restore date
(periods that fell while service was stopped are not charged) and a "service restored"
email goes to the customer and the partner. Both happen in the caller's transaction and
return the ids of the email rows to enqueue after the commit.
"""

from __future__ import annotations

from datetime import date

from sqlmodel import Session, col, select

from app.domain import schedule as rules
from app.models import AccountStatus, CustomerAccount, Invoice, InvoiceStatus, Partner, Subscription
from app.services.notifications import write_email
from app.services.schedules import refresh_next_charge_date
from app.services.subscription_billing import partner_admin_addresses

MAX_SKIPPED_PERIODS = 1000  # daily schedules stopped for almost three years


def stop_service(
    session: Session,
    account_id: int,
    *,
    invoice: Invoice,
    days: int,
    as_of: date,
    base_url: str = "",
) -> list[int]:
    """Stop the account's service because ``invoice`` is ``days`` days overdue (no commit).

    Does nothing (and returns no emails) when the service is already stopped. Raises
    LookupError for an unknown account.
    """
    account = _locked_account(session, account_id)
    if account.service_stopped_on is not None:
        return []
    account.status = AccountStatus.SUSPENDED
    account.service_stopped_on = as_of
    session.add(account)
    for sub in _subscriptions(session, account_id, rules.SubscriptionStatus.RECURRING):
        sub.status = rules.SubscriptionStatus.SUSPENDED
        session.add(sub)
    session.flush()
    return _notify(
        session,
        account,
        template="service_stopped",
        key=f"service_stopped:{account.id}:{as_of.isoformat()}",
        subject="Your service was stopped",
        partner_subject=f"Service stopped: {account.name}",
        invoice=invoice,
        days=days,
        stopped_on=as_of,
        portal_url=f"{base_url}/portal/",
    )


def restore_if_settled(session: Session, account_id: int, *, as_of: date) -> list[int]:
    """Restore the account's service if dunning stopped it and no invoice is overdue now.

    Call it after counting a payment (no commit). Returns the email ids written (none
    when nothing changed). Raises LookupError for an unknown account.
    """
    account = session.get(CustomerAccount, account_id)
    if account is None:
        raise LookupError(f"no customer account {account_id}")
    if account.service_stopped_on is None or _still_overdue(session, account_id, as_of):
        return []
    account = _locked_account(session, account_id)
    stopped_on = account.service_stopped_on
    if stopped_on is None:  # restored by a concurrent payment while we looked
        return []
    account.status = AccountStatus.ACTIVE
    account.service_stopped_on = None
    session.add(account)
    for sub in _subscriptions(session, account_id, rules.SubscriptionStatus.SUSPENDED):
        sub.status = rules.SubscriptionStatus.RECURRING
        _skip_periods_before(sub, as_of)
        session.add(sub)
    session.flush()
    return _notify(
        session,
        account,
        template="service_restored",
        key=f"service_restored:{account.id}:{stopped_on.isoformat()}",
        subject="Your service is restored",
        partner_subject=f"Service restored: {account.name}",
        restored_on=as_of,
    )


def _locked_account(session: Session, account_id: int) -> CustomerAccount:
    query = select(CustomerAccount).where(CustomerAccount.id == account_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    account = session.exec(query.execution_options(populate_existing=True)).first()
    if account is None:
        raise LookupError(f"no customer account {account_id}")
    return account


def _still_overdue(session: Session, account_id: int, as_of: date) -> bool:
    unpaid = session.exec(
        select(Invoice.id).where(
            Invoice.customer_account_id == account_id,
            col(Invoice.status).in_((InvoiceStatus.CREATED, InvoiceStatus.OVERDUE)),
            col(Invoice.due_date) < as_of,
            Invoice.total > Invoice.amount_paid,
        )
    ).first()
    return unpaid is not None


def _subscriptions(session: Session, account_id: int, status: str) -> list[Subscription]:
    return list(
        session.exec(
            select(Subscription).where(
                Subscription.customer_account_id == account_id, Subscription.status == status
            )
        ).all()
    )


def _skip_periods_before(sub: Subscription, as_of: date) -> None:
    """Move the schedule past the periods that fell while service was stopped."""
    refresh_next_charge_date(sub)
    for _ in range(MAX_SKIPPED_PERIODS):
        if sub.next_charge_date is None or sub.next_charge_date >= as_of:
            return
        sub.first_period += 1
        refresh_next_charge_date(sub)


def _notify(
    session: Session,
    account: CustomerAccount,
    *,
    template: str,
    key: str,
    subject: str,
    partner_subject: str,
    **context: object,
) -> list[int]:
    partner = session.get(Partner, account.partner_id)
    assert partner is not None
    context = {"account": account, "partner": partner, **context}
    rows = [
        write_email(
            session,
            template=template,
            dedupe_key=f"{key}:customer",
            to_address=account.billing_email or account.email,
            subject=subject,
            partner_id=partner.id,
            audience="customer",
            **context,
        )
    ]
    partner_addresses = partner_admin_addresses(session, partner.id)  # type: ignore[arg-type]
    if partner_addresses:
        rows.append(
            write_email(
                session,
                template=template,
                dedupe_key=f"{key}:partner",
                to_address=", ".join(partner_addresses),
                subject=partner_subject,
                partner_id=partner.id,
                audience="partner",
                **context,
            )
        )
    return [row.id for row in rows if row.id is not None]
