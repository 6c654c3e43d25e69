"""What a day's dunning sweep would do, written nowhere (``flask dunning run --dry-run``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlmodel import Session, col, select

from app.domain.dunning import Decision, decide
from app.models import CustomerAccount, Invoice
from app.services.dunning import DEFAULT_CHUNK_SIZE, OPEN_STATUSES, audience_of, due_invoice_ids
from app.services.dunning_emails import recipients_of


@dataclass(frozen=True)
class PlannedNotice:
    """What a sweep would do to one invoice (``stage`` None: only its status or date)."""

    invoice: Invoice
    account: CustomerAccount
    decision: Decision | None  # None: paid or canceled, leaves the sweep
    recipients: tuple[tuple[str, str], ...] = ()


def preview_sweep(session: Session, *, partner_id: int, as_of: date) -> list[PlannedNotice]:
    """What the partner's sweep of ``as_of`` would send, skip and change; writes nothing.

    Raises LookupError for an unknown partner, PolicyInvalid for a broken stored policy.
    """
    audience, policy = audience_of(session, partner_id)
    ids = due_invoice_ids(session, partner_id=partner_id, as_of=as_of)
    plans: list[PlannedNotice] = []
    for start in range(0, len(ids), DEFAULT_CHUNK_SIZE):
        chunk = ids[start : start + DEFAULT_CHUNK_SIZE]
        invoices = session.exec(
            select(Invoice).where(col(Invoice.id).in_(chunk)).order_by(Invoice.id)
        ).all()
        account_ids = {inv.customer_account_id for inv in invoices}
        accounts = {
            a.id: a
            for a in session.exec(
                select(CustomerAccount).where(col(CustomerAccount.id).in_(account_ids))
            ).all()
        }
        for invoice in invoices:
            account = accounts[invoice.customer_account_id]
            if invoice.status not in OPEN_STATUSES or invoice.balance <= 0:
                plans.append(PlannedNotice(invoice, account, None))
                continue
            decision = decide(
                policy,
                due_date=invoice.due_date,
                dunning_day=invoice.dunning_day,
                status=invoice.status,
                as_of=as_of,
            )
            pairs = (
                recipients_of(decision.stage, invoice, account, audience) if decision.stage else []
            )
            plans.append(PlannedNotice(invoice, account, decision, tuple(pairs)))
    return plans
