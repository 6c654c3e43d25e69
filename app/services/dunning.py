"""The dunning sweep: overdue reminders, warnings and service stop (ARCHITECTURE §1).

Every unpaid invoice carries ``next_dunning_on``, the day the sweep should next look at
it (the day after its due date, then each stage's day); paid and canceled invoices carry
None. A sweep for a partner and a local day selects, by that index, only the invoices
due a look, so its cost follows the reminders due rather than the invoices kept.

A day's run selects the ids and hands them out in chunks (``app.services.dunning_runs``:
jobs, or the CLI's steps); :func:`sweep` does all of them in one go. Invoices go in
chunks, each in one transaction under row locks (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL; SQLite takes its write lock first). For each: an unpaid invoice past its due
date turns ``overdue``; the latest stage now due is recorded as a :class:`DunningNotice`
(unique per invoice and day) with its emails, earlier stages a missed run left are
recorded as skipped; a stop stage stops service. The transaction commits, and only then
are the emails enqueued. Two sweeps of the same day, at once or one after the other,
never write a stage twice.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.domain.dunning import Decision, Policy, Stage, StageKind, decide, parse_policy
from app.models import (
    CustomerAccount,
    DunningNotice,
    Invoice,
    InvoiceStatus,
    OutboxMessage,
    Partner,
)
from app.services.dunning_emails import (
    Audience,
    format_recipients,
    insert_rows,
    pay_urls,
    recipients_of,
    stage_messages,
)
from app.services.service_stop import stop_service
from app.services.subscription_billing import partner_admin_addresses

DEFAULT_CHUNK_SIZE = 200
OPEN_STATUSES = (InvoiceStatus.CREATED, InvoiceStatus.OVERDUE)

OnEmails = Callable[[list[int]], None]
OnProgress = Callable[[Counter[str]], None]
# Called inside each transaction that handles invoices, just before its commit, with that
# transaction's counts: whatever it writes commits (or rolls back) with the work it counts.
BeforeCommit = Callable[[Session, Counter[str]], None]

_DUE = "FROM invoice WHERE partner_id = {p} AND next_dunning_on <= {d}"
# A sweep's chunk n of N is the due invoices whose id hashes to n (Knuth's multiplicative
# hash, its top bits scaled to N): the sweep's start then needs only a count of the due,
# not their ids, and ids in any arithmetic pattern (two partners invoicing in turn make
# one's ids all odd) still spread evenly, which ``id % N`` would not.
_PART = " AND (id * 2654435761 % 4294967296) * {n} / 4294967296 = {k}"
# The ids come back as one value, read from ix_invoice_dunning_due alone: fetching 10,000
# one-column rows one at a time cost ~10 ms of a sweep's start; on PostgreSQL one array in
# binary form ~1.5 ms (as text, PostgreSQL printing and psycopg parsing it, ~2 ms more),
# on SQLite one JSON array ~2 ms (rows ~5 ms, a comma-separated list ~3 ms).
_PG_DUE = _DUE.format(p="%(partner_id)s", d="%(as_of)s")  # psycopg's own placeholders
_PG_PART = _PART.replace("%", "%%").format(n="%(parts)s", k="%(part)s")
_TEXT_DUE = _DUE.format(p=":partner_id", d=":as_of")  # SQLAlchemy text(), any database
_TEXT_PART = _PART.format(n=":parts", k=":part")


def policy_of(partner: Partner) -> Policy:
    """The partner's dunning policy (the default one when it has none).

    Raises PolicyInvalid when the stored policy breaks a rule (it is checked on save).
    """
    return parse_policy(partner.dunning_policy)


def due_invoice_ids(
    session: Session,
    *,
    partner_id: int,
    as_of: date,
    part: tuple[int, int] | None = None,
) -> list[int]:
    """Ids of the partner's invoices the sweep of ``as_of`` must look at, by the index,
    in id order; with ``part`` (n, N), only those of chunk n of N. (Sorted here: an
    ``ORDER BY id`` makes SQLite walk the whole table in id order instead of using the
    index.) Raises the database's errors."""
    params: dict[str, object] = {"partner_id": partner_id, "as_of": as_of}
    if part is not None:
        params.update(part=part[0], parts=part[1])
    if session.get_bind().dialect.name == "postgresql":
        query = "SELECT array_agg(id) " + _PG_DUE + (_PG_PART if part else "")
        driver = session.connection().connection.driver_connection  # the session's own
        with driver.cursor(binary=True) as cursor:  # type: ignore[union-attr]
            cursor.execute(query, params)
            row = cursor.fetchone()
        ids = (row[0] if row else None) or []
    else:
        query = "SELECT json_group_array(id) " + _TEXT_DUE + (_TEXT_PART if part else "")
        ids = json.loads(session.execute(text(query), params).scalar() or "[]")
    return sorted(ids)


def count_due(session: Session, *, partner_id: int, as_of: date) -> int:
    """How many of the partner's invoices the sweep of ``as_of`` must look at, counted
    on the index alone. Raises the database's errors."""
    query = "SELECT count(*) " + _TEXT_DUE
    return int(session.execute(text(query), {"partner_id": partner_id, "as_of": as_of}).scalar())


def audience_of(
    session: Session, partner_id: int, *, base_url: str = "", secret: str = ""
) -> tuple[Audience, Policy]:
    """Who the partner's dunning emails go to and link to, and its policy.

    Raises LookupError for an unknown partner, PolicyInvalid for a broken stored policy.
    """
    partner = session.get(Partner, partner_id)
    if partner is None:
        raise LookupError(f"no partner {partner_id}")
    audience = Audience(
        partner,
        tuple(partner_admin_addresses(session, partner_id)),
        base_url=base_url,
        secret=secret,
    )
    return audience, policy_of(partner)


def sweep(
    session: Session,
    *,
    partner_id: int,
    as_of: date,
    now: datetime,
    base_url: str = "",
    secret: str = "",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_emails: OnEmails | None = None,
    on_progress: OnProgress | None = None,
) -> Counter[str]:
    """Run the partner's dunning for local day ``as_of``; returns what it counted.

    Counts: ``invoices`` looked at, ``overdue`` newly marked, ``sent`` stages (reminders,
    warnings, stops), ``skipped`` stages, ``stopped`` services, ``emails`` written,
    ``closed`` (paid or canceled, left the sweep), ``taken`` (handled by a concurrent
    sweep). Each chunk commits before ``on_emails`` gets its email ids and
    ``on_progress`` its counts. ``now`` dates new pay links. Raises LookupError for an
    unknown partner, PolicyInvalid for a broken stored policy.
    """
    audience, policy = audience_of(session, partner_id, base_url=base_url, secret=secret)
    ids = due_invoice_ids(session, partner_id=partner_id, as_of=as_of)
    session.rollback()
    total: Counter[str] = Counter()
    for start in range(0, len(ids), chunk_size):
        counts, email_ids = sweep_chunk(
            session, audience, policy, ids[start : start + chunk_size], as_of=as_of, now=now
        )
        total.update(counts)
        if on_emails and email_ids:
            on_emails(email_ids)
        if on_progress:
            on_progress(counts)
    return total


def sweep_chunk(
    session: Session,
    audience: Audience,
    policy: Policy,
    invoice_ids: list[int],
    *,
    as_of: date,
    now: datetime,
    before_commit: BeforeCommit | None = None,
) -> tuple[Counter[str], list[int]]:
    """Handle a chunk of invoices in one transaction; commits. Returns counts and emails.

    When a concurrent sweep wrote a notice first (the unique row answers), the chunk is
    redone one invoice at a time and the invoices already handled are counted ``taken``.
    ``before_commit`` runs inside every transaction that handles invoices, with its
    counts, so what it records commits together with the work. Raises whatever the
    database raises otherwise.
    """
    try:
        return _handle(
            session, audience, policy, invoice_ids, as_of=as_of, now=now, hook=before_commit
        )
    except IntegrityError:
        session.rollback()
    counts: Counter[str] = Counter()
    email_ids: list[int] = []
    for invoice_id in invoice_ids:
        try:
            own, ids = _handle(
                session, audience, policy, [invoice_id], as_of=as_of, now=now, hook=before_commit
            )
        except IntegrityError:
            session.rollback()
            counts["taken"] += 1
            continue
        counts.update(own)
        email_ids.extend(ids)
    return counts, email_ids


def _lock(session: Session, invoice_ids: list[int], as_of: date) -> list[Invoice]:
    """The chunk's invoices still due on ``as_of``, locked; those another sweep holds or
    has already moved on are left out."""
    due = col(Invoice.id).in_(invoice_ids), col(Invoice.next_dunning_on) <= as_of
    query = select(Invoice).where(*due).order_by(Invoice.id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    else:  # SQLite has no row locks: a no-op write takes the database write lock first
        session.execute(
            update(Invoice).where(*due).values(dunning_day=Invoice.dunning_day),
            execution_options={"synchronize_session": False},
        )
    return list(session.exec(query.execution_options(populate_existing=True)).all())


@dataclass
class _Send:
    invoice: Invoice
    account: CustomerAccount
    decision: Decision
    stage: Stage


def _handle(
    session: Session,
    audience: Audience,
    policy: Policy,
    invoice_ids: list[int],
    *,
    as_of: date,
    now: datetime,
    hook: BeforeCommit | None = None,
) -> tuple[Counter[str], list[int]]:
    counts: Counter[str] = Counter()
    invoices = _lock(session, invoice_ids, as_of)
    counts["taken"] += len(invoice_ids) - len(invoices)  # held or done by another sweep
    account_ids = {inv.customer_account_id for inv in invoices}
    accounts = {
        a.id: a
        for a in session.exec(
            select(CustomerAccount).where(col(CustomerAccount.id).in_(account_ids))
        ).all()
    }
    sends: list[_Send] = []
    rows: list[dict[str, object]] = []
    for invoice in invoices:
        counts["invoices"] += 1
        if invoice.status not in OPEN_STATUSES or invoice.balance <= 0:
            invoice.next_dunning_on = None  # paid or canceled: leaves the sweep
            counts["closed"] += 1
            continue
        decision = decide(
            policy,
            due_date=invoice.due_date,
            dunning_day=invoice.dunning_day,
            status=invoice.status,
            as_of=as_of,
        )
        if decision.mark_overdue:
            invoice.status = InvoiceStatus.OVERDUE
            counts["overdue"] += 1
        account = accounts[invoice.customer_account_id]
        for stage in decision.skipped:
            rows.append(_notice(invoice, stage, as_of, skipped=True))
            counts["skipped"] += 1
        if decision.stage is not None:
            pairs = recipients_of(decision.stage, invoice, account, audience)
            rows.append(
                _notice(invoice, decision.stage, as_of, recipients=format_recipients(pairs))
            )
            sends.append(_Send(invoice, account, decision, decision.stage))
            counts["sent"] += 1
        invoice.dunning_day = decision.handled_day
        invoice.next_dunning_on = decision.next_on
    session.flush()
    # The notices first: a concurrent sweep's row fails here, before any email is written.
    insert_rows(session, DunningNotice, rows)
    email_ids = _write_emails(session, audience, policy, sends, as_of=as_of, now=now)
    for send in sends:
        if send.stage.kind == StageKind.STOP:
            stopped = stop_service(
                session,
                send.account.id,  # type: ignore[arg-type]
                invoice=send.invoice,
                days=send.decision.days,
                as_of=as_of,
                base_url=audience.base_url,
            )
            counts["stopped"] += bool(stopped)
            email_ids.extend(stopped)
    counts["emails"] += len(email_ids)
    if hook is not None:
        hook(session, counts)
    session.commit()
    return counts, email_ids


def _write_emails(
    session: Session,
    audience: Audience,
    policy: Policy,
    sends: list[_Send],
    *,
    as_of: date,
    now: datetime,
) -> list[int]:
    mails = [s for s in sends if s.stage.kind != StageKind.STOP]
    urls = pay_urls(session, [s.invoice for s in mails], audience, now=now)
    messages = [
        message
        for s in mails
        for message in stage_messages(
            stage=s.stage,
            policy=policy,
            invoice=s.invoice,
            account=s.account,
            audience=audience,
            days=s.decision.days,
            as_of=as_of,
            pay_url=urls.get(s.invoice.id, ""),  # type: ignore[arg-type]
        )
    ]
    if not messages:
        return []
    insert_rows(session, OutboxMessage, messages)
    keys = [m["dedupe_key"] for m in messages]
    return [
        int(i)
        for i in session.exec(
            select(OutboxMessage.id).where(col(OutboxMessage.dedupe_key).in_(keys))
        ).all()
    ]


def _notice(
    invoice: Invoice, stage: Stage, as_of: date, *, skipped: bool = False, recipients: str = ""
) -> dict[str, object]:
    """The DunningNotice row (column values) of ``stage`` for ``invoice``."""
    return {
        "partner_id": invoice.partner_id,
        "invoice_id": invoice.id,
        "customer_account_id": invoice.customer_account_id,
        "day": stage.day,
        "stage": stage.kind.value,
        "due_on": invoice.due_date + timedelta(days=stage.day),
        "handled_on": as_of,
        "skipped": skipped,
        "recipients": recipients,
    }
