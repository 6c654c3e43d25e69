"""Charging many subscriptions' due periods in a few statements (the billing run's path).

The rules of :mod:`app.services.subscription_billing`, applied to a batch at once:

1. claim: lock the batch's due subscriptions (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the
   write lock on SQLite) and insert one pending attempt per period, with its unique
   purpose key, in one transaction that commits before any processor call;
2. charge: send each attempt to the processor with no transaction open, through the
   shared rate limit, on a few threads when the processor is slow;
3. apply: in one transaction, take each answer with a locked conditional read and apply
   every effect of the approvals together: numbered paid invoices, counters and next
   dates, receipts. "Approved" still always means "advanced".

Anything unusual for a subscription (an attempt already exists for its period, no payment
method, nothing owed) is left to the one-at-a-time path, which knows how to settle it. A
subscription still due after its charge (a missed day) is returned for another round, so
catch-up charges its periods one at a time, in order.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TypeVar

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.clock import utcnow
from app.domain import schedule as rules
from app.gateway.base import GatewayResult, PaymentGateway
from app.models import (
    CustomerAccount,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    OutboxMessage,
    Partner,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
    Subscription,
)
from app.services import payments
from app.services.invoices import effective_tax_rate, line_amounts
from app.services.notifications import render_email
from app.services.numbering import reserve_invoice_numbers
from app.services.receipts import Receipt, method_label
from app.services.schedules import refresh_next_charge_date, schedule_of
from app.services.subscription_billing import (
    Acquire,
    PeriodResult,
    record_decline,
    send_with_backoff,
    status_word,
)

log = logging.getLogger(__name__)
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
            to_address=account.billing_email or account.email,
            customer_ref=account.gateway_customer_ref,
            token=method.token,
            method_kind=method.kind,
            brand=method.brand,
            last4=method.last4,
        )


@dataclass
class BatchOutcome:
    """What a batch did: a result per charged or skipped subscription, the ids left to the
    one-at-a-time path, and the ids whose next period is still due (catch-up)."""

    results: list[PeriodResult] = field(default_factory=list)
    one_at_a_time: list[int] = field(default_factory=list)
    still_due: list[int] = field(default_factory=list)


def charge_batch(
    session: Session,
    gateway: PaymentGateway,
    subscription_ids: Sequence[int],
    *,
    as_of: date,
    now: datetime,
    acquire: Acquire | None = None,
    base_url: str = "",
    threads: int = 1,
) -> BatchOutcome:
    """Charge the next period of each subscription in ``subscription_ids`` due on ``as_of``.

    Commits twice (the claim, then the outcomes with their effects). Never raises for a
    decline, a lost answer or a processor exception (the attempt then stays pending for
    the reconciler); database errors propagate, leaving committed attempts to be settled.
    """
    outcome = BatchOutcome()
    claimed = claim(session, subscription_ids, as_of=as_of, outcome=outcome, gateway=gateway)
    if not claimed:
        return outcome
    answers = send_all(gateway, claimed, acquire=acquire, threads=threads)
    outcome.results.extend(apply_answers(session, claimed, answers, now=now, base_url=base_url))
    outcome.still_due = [
        r.subscription_id
        for r in outcome.results
        if r.status == "charged" and r.next_date is not None and r.next_date <= as_of
    ]
    return outcome


def claim(
    session: Session,
    subscription_ids: Sequence[int],
    *,
    as_of: date,
    outcome: BatchOutcome,
    gateway: PaymentGateway,
) -> list[Claimed]:
    """Lock the due subscriptions and commit a pending attempt for each one's next period.

    Subscriptions not due (or locked by another worker) get a ``not_due`` result; those
    needing the one-at-a-time path go to ``outcome.one_at_a_time``. Commits.
    """
    subs = _lock_due(session, subscription_ids, as_of)
    locked = {s.id for s in subs}
    outcome.results.extend(
        PeriodResult("not_due", sid) for sid in subscription_ids if sid not in locked
    )
    if not subs:
        session.rollback()
        return []
    busy = _periods_with_attempts(session, subs)
    accounts = _by_id(session, CustomerAccount, {s.customer_account_id for s in subs})
    methods = _methods_by_account(session, {s.customer_account_id for s in subs})
    chosen: list[tuple[Subscription, PaymentMethod, int]] = []
    for sub in subs:
        method = _method_for(sub, methods.get(sub.customer_account_id, []))
        amount = rules.charge_amount(schedule_of(sub), amount_charged=sub.amount_charged)
        if sub.id in busy or method is None or amount <= 0:
            outcome.one_at_a_time.append(sub.id)  # type: ignore[arg-type]
        else:
            chosen.append((sub, method, amount))
    if not chosen:
        session.rollback()
        return []
    rows = [_attempt_row(sub, method, amount, gateway.name) for sub, method, amount in chosen]
    try:
        ids = _insert_keyed(session, Payment, rows, key="purpose_key")
    except IntegrityError:
        # Another path took a period between our check and insert: let it be settled
        # one subscription at a time, which handles every such case.
        session.rollback()
        outcome.one_at_a_time.extend(sub.id for sub, _m, _a in chosen)  # type: ignore[misc]
        return []
    claimed = [
        Claimed.of(attempt_id, row, sub, accounts[sub.customer_account_id], method)
        for attempt_id, row, (sub, method, amount) in zip(ids, rows, chosen, strict=True)
    ]
    session.commit()
    return claimed


def _lock_due(session: Session, ids: Sequence[int], as_of: date) -> list[Subscription]:
    query = (
        select(Subscription)
        .where(
            col(Subscription.id).in_(ids),
            Subscription.status == rules.SubscriptionStatus.RECURRING,
            col(Subscription.next_charge_date) <= as_of,
        )
        .order_by(col(Subscription.id))
        .execution_options(populate_existing=True)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    else:
        # SQLite has no row locks: a no-op write takes the database write lock first.
        session.execute(
            update(Subscription)
            .where(col(Subscription.id).in_(ids))
            .values(status=Subscription.status)
            .execution_options(synchronize_session=False)
        )
    return list(session.exec(query).all())


def _periods_with_attempts(session: Session, subs: list[Subscription]) -> set[int]:
    due = {s.id: s.next_charge_date for s in subs}
    rows = session.execute(
        select(Payment.subscription_id, Payment.period_date).where(
            col(Payment.subscription_id).in_(list(due)),
            col(Payment.period_date).in_(set(due.values())),
            col(Payment.is_recurring).is_(True),
        )
    ).all()
    return {sid for sid, period in rows if due.get(sid) == period}


def _by_id(session: Session, model: type[_Row], ids: set[int]) -> dict[int, _Row]:
    rows = session.exec(select(model).where(col(model.id).in_(ids))).all()  # type: ignore[attr-defined]
    return {row.id: row for row in rows}  # type: ignore[attr-defined]


def _methods_by_account(session: Session, account_ids: set[int]) -> dict[int, list[PaymentMethod]]:
    grouped: dict[int, list[PaymentMethod]] = defaultdict(list)
    query = (
        select(PaymentMethod)
        .where(col(PaymentMethod.customer_account_id).in_(account_ids))
        .order_by(col(PaymentMethod.is_default).desc(), col(PaymentMethod.id))
    )
    for method in session.exec(query).all():
        grouped[method.customer_account_id].append(method)
    return grouped


def _method_for(sub: Subscription, methods: list[PaymentMethod]) -> PaymentMethod | None:
    """The subscription's own method, else the account's default (as the one-at-a-time
    path chooses)."""
    if sub.payment_method_id is not None:
        for method in methods:
            if method.id == sub.payment_method_id:
                return method
    return methods[0] if methods else None


def _attempt_row(
    sub: Subscription, method: PaymentMethod, amount: int, gateway_name: str
) -> dict[str, object]:
    assert sub.next_charge_date is not None
    # The first attempt of the period: a period with any earlier one goes one at a time.
    purpose_key = f"sub:{sub.id}:{sub.next_charge_date.isoformat()}:1"
    return {
        "partner_id": sub.partner_id,
        "customer_account_id": sub.customer_account_id,
        "subscription_id": sub.id,
        "payment_method_id": method.id,
        "purpose_key": purpose_key,
        "idempotency_key": payments.idempotency_key_for(purpose_key),
        "kind": PaymentKind.CHARGE,
        "method": method.kind,
        "status": PaymentStatus.PENDING,
        "amount": amount,
        "currency": sub.currency,
        "is_recurring": True,
        "period_date": sub.next_charge_date,
        "gateway": gateway_name,
        "brand": method.brand,
        "last4": method.last4,
        "refunded_amount": 0,
        "detail": {"source": "billing_run"},
        "created_at": utcnow(),
    }


def send_all(
    gateway: PaymentGateway,
    claimed: list[Claimed],
    *,
    acquire: Acquire | None,
    threads: int,
) -> list[tuple[GatewayResult | None, int]]:
    """Send every claimed attempt (no transaction open); answers in the same order.

    Each answer is (result, 429s met); the result is None when the call raised, which
    leaves the attempt pending for the reconciler to settle by asking.
    """
    call: Callable[[Claimed], tuple[GatewayResult | None, int]] = lambda c: _send(  # noqa: E731
        gateway, c, acquire
    )
    if threads <= 1 or len(claimed) == 1:
        return [call(c) for c in claimed]
    with ThreadPoolExecutor(max_workers=min(threads, len(claimed))) as pool:
        return list(pool.map(call, claimed))


def _send(
    gateway: PaymentGateway, attempt: Claimed, acquire: Acquire | None
) -> tuple[GatewayResult | None, int]:
    try:
        return send_with_backoff(
            lambda: payments.charge(
                gateway,
                attempt,
                token=attempt.token,
                customer_ref=attempt.customer_ref,
                description=attempt.description,
            ),
            acquire,
        )
    except Exception:
        log.exception("charging attempt %s raised; the reconciler will settle it", attempt.id)
        return None, 0


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
        updates.append(_outcome_values(attempt, result, now))
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
    partners = _by_id(session, Partner, {c.partner_id for c in approved})
    # The invoice counter stays locked until the commit: number as late as possible.
    invoices = _add_paid_invoices(session, approved, partners)
    paid = [{**v, "invoice_id": invoices[v["id"]][0]} for v in updates if v["id"] in approved_ids]
    if paid:
        session.execute(update(Payment), paid)
    email_ids = _write_receipts(session, approved, partners, next_dates, invoices, now=now)
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


def _outcome_values(attempt: Claimed, result: GatewayResult, now: datetime) -> dict[str, object]:
    status = PaymentStatus(result.status)
    return {
        "id": attempt.id,
        "status": status,
        "gateway_reference": result.reference,
        "decline_code": result.decline_code,
        "decline_reason": "" if result.approved else result.message,
        "settled_at": None if status == PaymentStatus.UNKNOWN else now,
        "received_on": now.date() if result.approved else None,
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
    ids = _insert_keyed(session, Invoice, invoice_rows, key="number")
    for line, invoice_id in zip(line_rows, ids, strict=True):
        line["invoice_id"] = invoice_id
    session.execute(insert(InvoiceLine), line_rows)
    numbers = [str(row["number"]) for row in invoice_rows]
    return dict(zip(order, zip(ids, numbers, strict=True), strict=True))


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
    now: datetime,
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
            paid_on=now.date(),
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
    ids = _insert_keyed(session, OutboxMessage, rows, key="dedupe_key")
    return dict(zip((c.id for c in approved), ids, strict=True))


def _insert_keyed(
    session: Session,
    model: type[Payment | Invoice | OutboxMessage],
    rows: list[dict[str, object]],
    *,
    key: str,
) -> list[int]:
    """Insert ``rows`` in one statement and return their ids in the rows' order.

    Rows are matched to ids by a column unique within the batch, because asking the
    database to return them in order makes SQLite insert one row per statement.
    """
    table = model.__table__  # type: ignore[union-attr]
    returned = session.execute(insert(table).returning(table.c.id, table.c[key]), rows)
    ids = {value: int(row_id) for row_id, value in returned.all()}
    return [ids[row[key]] for row in rows]


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
    from dataclasses import replace

    return replace(result, email_ids=result.email_ids + extra)
