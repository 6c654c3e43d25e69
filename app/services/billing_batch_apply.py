"""Applying a billing batch's answers: one transaction for every approval's effects.

Step 3 of :mod:`app.services.billing_batch`: each answer is taken with a locked read of
its attempt (an attempt the reconciler settled meanwhile is left as it is), and the
approvals' effects commit together with their outcomes: numbered paid invoices, counters
and next dates, receipts. Declines go through the one-at-a-time path's decline handling.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TypeVar

from sqlalchemy import insert, update
from sqlmodel import Session, col, select

from app.clock import local_day, utcnow
from app.gateway.base import GatewayResult
from app.models import (
    CustomerAccount,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    OutboxMessage,
    Partner,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Subscription,
)
from app.services import payments
from app.services.invoices import billing_address, effective_tax_rate, line_amounts
from app.services.notifications import render_email
from app.services.numbering import reserve_invoice_numbers
from app.services.receipts import Receipt, method_label
from app.services.schedules import refresh_next_charge_date
from app.services.subscription_billing import PeriodResult, record_decline, status_word

_RAISED = "The processor call failed; the reconciler will settle the payment."
_Row = TypeVar("_Row", CustomerAccount, Partner)


@dataclass(frozen=True)
class Claimed:
    """One attempt committed by the claim, with what the later steps need (plain values
    read in the claim's transaction, so nothing is loaded again after its commit)."""

    id: int
    purpose_key: str
    idempotency_key: str
    amount: int
    currency: str
    period: date
    subscription_id: int
    partner_id: int
    description: str
    frequency: str
    account_id: int
    account_currency: str
    account_tax_rate_bp: int | None
    to_address: str
    customer_ref: str
    token: str
    method_kind: str
    brand: str
    last4: str

    @classmethod
    def of(
        cls,
        attempt_id: int,
        row: dict[str, object],
        sub: Subscription,
        account: CustomerAccount,
        method: PaymentMethod,
    ) -> Claimed:
        """The claimed attempt ``attempt_id`` inserted from ``row``."""
        return cls(
            id=attempt_id,
            purpose_key=str(row["purpose_key"]),
            idempotency_key=str(row["idempotency_key"]),
            amount=int(row["amount"]),  # type: ignore[call-overload]
            currency=sub.currency,
            period=sub.next_charge_date,  # type: ignore[arg-type]
            subscription_id=sub.id,  # type: ignore[arg-type]
            partner_id=sub.partner_id,
            description=sub.description,
            frequency=sub.frequency,
            account_id=account.id,  # type: ignore[arg-type]
            account_currency=account.currency,
            account_tax_rate_bp=account.tax_rate_bp,
            to_address=billing_address(account, sub.next_charge_date),  # type: ignore[arg-type]
            customer_ref=account.gateway_customer_ref,
            token=method.token,
            method_kind=method.kind,
            brand=method.brand,
            last4=method.last4,
        )


def by_id(session: Session, model: type[_Row], ids: set[int]) -> dict[int, _Row]:
    """The rows of ``model`` with the given ids, by id."""
    rows = session.exec(select(model).where(col(model.id).in_(ids))).all()  # type: ignore[attr-defined]
    return {row.id: row for row in rows}  # type: ignore[attr-defined]


def apply_answers(
    session: Session,
    claimed: list[Claimed],
    answers: list[tuple[GatewayResult | None, int]],
    *,
    now: datetime,
    base_url: str = "",
) -> list[PeriodResult]:
    """Record the answers and apply every approval's effects in one transaction (commits).

    An attempt another process settled meanwhile (the reconciler) is reported as it
    stands and gets no effects from here.
    """
    mine = _lock_open_attempts(session, [c.id for c in claimed])
    partners = by_id(session, Partner, {c.partner_id for c in claimed})
    # A payment is received on the partner's local day (a UTC date can be the next one).
    local_days = {pid: local_day(p.timezone, now) for pid, p in partners.items()}
    results: list[PeriodResult] = []
    approved: list[Claimed] = []
    declined: list[tuple[Claimed, GatewayResult]] = []
    updates: list[dict[str, object]] = []
    settled_elsewhere = _statuses(session, [c.id for c in claimed if c.id not in mine])
    for attempt, (result, limited) in zip(claimed, answers, strict=True):
        if attempt.id in settled_elsewhere:
            word = status_word(settled_elsewhere[attempt.id])
            results.append(_result(attempt, word, limited=limited))
            continue
        if result is None:
            results.append(_result(attempt, "error", _RAISED, limited=limited))
            continue
        updates.append(_outcome_values(attempt, result, now, local_days[attempt.partner_id]))
        if result.approved:
            approved.append(attempt)
        elif result.status == "declined" or (result.status == "error" and not result.retryable):
            declined.append((attempt, result))
        if not result.approved:
            word = status_word(result.status)
            results.append(_result(attempt, word, result.message, limited=limited))
    approved_ids = {c.id for c in approved}
    settled = [v for v in updates if v["id"] not in approved_ids]
    if settled:
        session.execute(update(Payment), settled)
    declined_emails = _record_declines(session, declined, now=now, base_url=base_url)
    next_dates = _advance(session, approved)
    # The invoice counter stays locked until the commit: number as late as possible.
    invoices = _add_paid_invoices(session, approved, partners)
    paid = [{**v, "invoice_id": invoices[v["id"]][0]} for v in updates if v["id"] in approved_ids]
    if paid:
        session.execute(update(Payment), paid)
    email_ids = _write_receipts(session, approved, partners, next_dates, invoices, days=local_days)
    limited_by_id = {c.id: n for c, (_r, n) in zip(claimed, answers, strict=True)}
    for attempt in approved:
        results.append(
            _result(
                attempt,
                "charged",
                limited=limited_by_id[attempt.id],
                email_ids=(email_ids[attempt.id],),
                next_date=next_dates[attempt.id],
            )
        )
    session.commit()
    return [_with_emails(r, declined_emails) for r in results]


def _lock_open_attempts(session: Session, ids: list[int]) -> set[int]:
    query = select(Payment.id).where(
        col(Payment.id).in_(ids), col(Payment.status).in_(payments.OPEN_STATUSES)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    else:
        session.execute(
            update(Payment)
            .where(col(Payment.id).in_(ids))
            .values(status=Payment.status)
            .execution_options(synchronize_session=False)
        )
    return {int(i) for i in session.exec(query).all() if i is not None}


def _statuses(session: Session, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(select(Payment.id, Payment.status).where(col(Payment.id).in_(ids)))
    return {int(i): str(status) for i, status in rows.all()}


def _outcome_values(
    attempt: Claimed, result: GatewayResult, now: datetime, received_on: date
) -> dict[str, object]:
    status = PaymentStatus(result.status)
    return {
        "id": attempt.id,
        "status": status,
        "gateway_reference": result.reference,
        "decline_code": result.decline_code,
        "decline_reason": "" if result.approved else result.message,
        "settled_at": None if status == PaymentStatus.UNKNOWN else now,
        "received_on": received_on if result.approved else None,
    }


def _add_paid_invoices(
    session: Session, approved: list[Claimed], partners: dict[int, Partner]
) -> dict[int, tuple[int, str]]:
    """A numbered paid invoice per approved attempt; {attempt id: (invoice id, number)}."""
    if not approved:
        return {}
    by_partner: dict[int, list[Claimed]] = defaultdict(list)
    for attempt in approved:
        by_partner[attempt.partner_id].append(attempt)
    invoice_rows: list[dict[str, object]] = []
    line_rows: list[dict[str, object]] = []
    order: list[int] = []
    for partner_id, group in by_partner.items():
        numbers = reserve_invoice_numbers(
            session, partner_id=partner_id, series="INV", count=len(group)
        )
        for attempt, (sequence, number) in zip(group, numbers, strict=True):
            invoice, line = _invoice_rows(attempt, partners[partner_id], sequence, number)
            invoice_rows.append(invoice)
            line_rows.append(line)
            order.append(attempt.id)
    session.execute(insert(Invoice), invoice_rows)
    ids = _invoice_ids(session, invoice_rows)
    for line, invoice_id in zip(line_rows, ids, strict=True):
        line["invoice_id"] = invoice_id
    session.execute(insert(InvoiceLine), line_rows)
    numbers = [str(row["number"]) for row in invoice_rows]
    return dict(zip(order, zip(ids, numbers, strict=True), strict=True))


def _invoice_ids(session: Session, rows: list[dict[str, object]]) -> list[int]:
    """The ids of just-inserted invoices, by their unique (partner, series, sequence)."""
    wanted: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        wanted[int(row["partner_id"])].append(int(row["sequence"]))  # type: ignore[call-overload]
    ids: dict[tuple[int, int], int] = {}
    for partner_id, sequences in wanted.items():
        found = session.execute(
            select(Invoice.sequence, Invoice.id).where(
                Invoice.partner_id == partner_id,
                Invoice.series == "INV",
                col(Invoice.sequence).between(min(sequences), max(sequences)),
            )
        )
        ids.update({(partner_id, int(seq)): int(i) for seq, i in found.all()})
    return [ids[(int(r["partner_id"]), int(r["sequence"]))] for r in rows]  # type: ignore[call-overload]


def _invoice_rows(
    attempt: Claimed, partner: Partner, sequence: int, number: str
) -> tuple[dict[str, object], dict[str, object]]:
    rate = effective_tax_rate(attempt.account_tax_rate_bp, partner.tax_rate_bp)
    unit, net, tax = line_amounts(1, attempt.amount, rate, prices_include_tax=True)
    invoice = {
        "partner_id": partner.id,
        "customer_account_id": attempt.account_id,
        "subscription_id": attempt.subscription_id,
        "series": "INV",
        "sequence": sequence,
        "number": number,
        "status": InvoiceStatus.PAID,
        "currency": attempt.account_currency,
        "issue_date": attempt.period,
        "due_date": attempt.period,
        "subtotal": net,
        "tax": tax,
        "total": net + tax,
        "amount_paid": net + tax,
        "billing_email": attempt.to_address,
        "created_at": utcnow(),
    }
    line = {
        "description": f"{attempt.description} — {attempt.period:%b %-d, %Y}",
        "quantity": 1,
        "unit_amount": unit,
        "tax_rate_bp": rate,
        "amount": net,
        "tax_amount": tax,
    }
    return invoice, line


def _advance(session: Session, approved: list[Claimed]) -> dict[int, date | None]:
    """Count the charged periods and move the schedules on; {attempt id: next date}."""
    if not approved:
        return {}
    query = (
        select(Subscription)
        .where(col(Subscription.id).in_([c.subscription_id for c in approved]))
        .execution_options(populate_existing=True)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    subs = {s.id: s for s in session.exec(query).all()}
    next_dates: dict[int, date | None] = {}
    for attempt in approved:
        sub = subs[attempt.subscription_id]
        sub.recurring_count += 1
        sub.amount_charged += attempt.amount
        sub.last_error = ""
        refresh_next_charge_date(sub)
        next_dates[attempt.id] = sub.next_charge_date
    session.flush()
    return next_dates


def _write_receipts(
    session: Session,
    approved: list[Claimed],
    partners: dict[int, Partner],
    next_dates: dict[int, date | None],
    invoices: dict[int, tuple[int, str]],
    *,
    days: dict[int, date],
) -> dict[int, int]:
    """A receipt email per approval, as write_receipt writes it; {attempt id: row id}."""
    if not approved:
        return {}
    rows: list[dict[str, object]] = []
    for attempt in approved:
        partner = partners[attempt.partner_id]
        subject = f"Your receipt from {partner.name}"
        receipt = Receipt(
            partner_name=partner.name,
            payer_name="",
            amount=attempt.amount,
            currency=attempt.currency,
            method_label=method_label(attempt.method_kind, attempt.brand, attempt.last4),
            paid_on=days[attempt.partner_id],
            reference=f"PAY-{attempt.id:06d}",
            invoice_number=invoices[attempt.id][1],
            next_charge_date=next_dates[attempt.id],
            frequency=attempt.frequency,
        )
        text_body, html_body = render_email("receipt", subject=subject, receipt=receipt)
        rows.append(
            {
                "partner_id": partner.id,
                "dedupe_key": f"receipt:payment:{attempt.id}",
                "kind": "receipt",
                "to_address": attempt.to_address,
                "subject": subject,
                "text_body": text_body,
                "html_body": html_body,
                "created_at": utcnow(),
            }
        )
    ids = insert_keyed(session, OutboxMessage, rows, key="dedupe_key")
    return dict(zip((c.id for c in approved), ids, strict=True))


def insert_keyed(
    session: Session,
    model: type[Payment | OutboxMessage],
    rows: list[dict[str, object]],
    *,
    key: str,
) -> list[int]:
    """Insert ``rows`` and return their ids in the rows' order, in two statements.

    ``key`` must be a uniquely indexed column. The ids are read back by it: an INSERT
    with RETURNING costs twice as much on PostgreSQL (psycopg) and, asked to keep the
    rows' order, makes SQLite insert one row per statement.
    """
    table = model.__table__  # type: ignore[union-attr]
    session.execute(insert(table), rows)
    keys = [row[key] for row in rows]
    found = session.execute(select(table.c[key], table.c.id).where(table.c[key].in_(keys)))
    ids = {value: int(row_id) for value, row_id in found.all()}
    return [ids[k] for k in keys]


def _record_declines(
    session: Session,
    declined: list[tuple[Claimed, GatewayResult]],
    *,
    now: datetime,
    base_url: str,
) -> dict[int, tuple[int, ...]]:
    emails: dict[int, tuple[int, ...]] = {}
    for attempt, result in declined:
        row = session.get(Payment, attempt.id, populate_existing=True)
        assert row is not None
        emails[attempt.id] = tuple(record_decline(session, row, result, now=now, base_url=base_url))
    return emails


def _result(
    attempt: Claimed,
    status: str,
    message: str = "",
    *,
    limited: int = 0,
    email_ids: tuple[int, ...] = (),
    next_date: date | None = None,
) -> PeriodResult:
    return PeriodResult(
        status,
        attempt.subscription_id,
        attempt.period,
        attempt.amount,
        attempt.currency,
        message,
        attempt.id,
        limited,
        email_ids,
        next_date,
    )


def _with_emails(result: PeriodResult, emails: dict[int, tuple[int, ...]]) -> PeriodResult:
    extra = emails.get(result.payment_id or 0)
    if not extra:
        return result
    return replace(result, email_ids=result.email_ids + extra)
