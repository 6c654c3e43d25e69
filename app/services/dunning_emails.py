"""The emails of a dunning stage: who gets them, what they say, and the link to pay.

Reminders and warnings go to the invoice's billing address and/or the partner's admins
(the stage's recipients), as outbox rows in the sweep's transaction; the sweep enqueues
them after its commit. Each row's dedupe key names the invoice, the stage's day and the
audience, so a stage's email exists once whatever the number of runs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import insert
from sqlmodel import Session, SQLModel, col, select

from app.domain.dunning import Policy, Recipient, Stage, StageKind, stop_stage
from app.domain.money import format_money
from app.models import CustomerAccount, Invoice, Partner, PayLink
from app.services.pay_links import token_for

LINK_MIN_VALIDITY = timedelta(days=7)  # a reminder's link works for at least this long


@dataclass(frozen=True)
class Audience:
    """Where a sweep's emails go for one partner: its admins, and the links it builds."""

    partner: Partner
    partner_addresses: tuple[str, ...]
    base_url: str = ""
    secret: str = ""  # signs pay links; without it customers get the portal's address


def customer_address(invoice: Invoice, account: CustomerAccount) -> str:
    """The address reminders go to: the invoice's billing email, else the account's."""
    return invoice.billing_email or account.billing_email or account.email


def recipients_of(
    stage: Stage, invoice: Invoice, account: CustomerAccount, audience: Audience
) -> list[tuple[str, str]]:
    """``(audience, address)`` pairs a stage is sent to (a stop always tells both)."""
    pairs: list[tuple[str, str]] = []
    if Recipient.CUSTOMER in stage.recipients or stage.kind == StageKind.STOP:
        pairs.append((Recipient.CUSTOMER.value, customer_address(invoice, account)))
    wants_partner = Recipient.PARTNER in stage.recipients or stage.kind == StageKind.STOP
    if wants_partner and audience.partner_addresses:
        pairs.append((Recipient.PARTNER.value, ", ".join(audience.partner_addresses)))
    return pairs


def format_recipients(pairs: Iterable[tuple[str, str]]) -> str:
    """The ``DunningNotice.recipients`` text: ``customer:a@x.example;partner:b@y.example``."""
    return ";".join(f"{who}:{address}" for who, address in pairs)[:1000]


def parse_recipients(text: str) -> list[tuple[str, str]]:
    """The ``(audience, address)`` pairs stored by :func:`format_recipients`."""
    pairs = []
    for part in filter(None, text.split(";")):
        who, _, address = part.partition(":")
        pairs.append((who, address))
    return pairs


def pay_urls(
    session: Session, invoices: list[Invoice], audience: Audience, *, now: datetime
) -> dict[int, str]:
    """A working payment address per invoice, for the customer's email (no commit).

    An unrevoked pay link that stays valid for another week (or the partner's whole link
    lifetime, if shorter) is reused; otherwise the invoice gets a new link, and links
    already sent keep working until they expire. Without a signing secret the customer
    is sent to the portal instead. Raises nothing.
    """
    base = audience.base_url.rstrip("/")
    if not audience.secret:
        return {inv.id: f"{base}/portal/" for inv in invoices}  # type: ignore[misc]
    ids = [inv.id for inv in invoices]
    lifetime = timedelta(days=audience.partner.pay_link_days)
    usable_until = now + min(LINK_MIN_VALIDITY, lifetime)
    links: dict[int, PayLink] = {}
    if ids:
        for link in session.exec(
            select(PayLink)
            .where(col(PayLink.invoice_id).in_(ids), col(PayLink.revoked_at).is_(None))
            .where(col(PayLink.expires_at) >= usable_until)
            .order_by(PayLink.id)
        ).all():
            links[link.invoice_id] = link
    fresh = [
        {
            "partner_id": inv.partner_id,
            "invoice_id": inv.id,
            "nonce": secrets.token_urlsafe(24),
            "expires_at": now + lifetime,
            "revoked_at": None,
            "created_by_user_id": None,
        }
        for inv in invoices
        if inv.id not in links
    ]
    if fresh:
        insert_rows(session, PayLink, fresh)
        nonces = [link["nonce"] for link in fresh]
        links.update(
            {
                link.invoice_id: link
                for link in session.exec(select(PayLink).where(col(PayLink.nonce).in_(nonces)))
            }
        )
    return {
        invoice_id: f"{base}/pay/{token_for(audience.secret, link)}"
        for invoice_id, link in links.items()
    }


def insert_rows(
    session: Session, model: type[SQLModel], rows: Sequence[Mapping[str, object]]
) -> None:
    """Insert new rows of ``model`` in one statement, without reading ids back (no commit).

    Each row is a dict of column values; columns it leaves out get the model's defaults
    (``created_at`` and the like, computed once per call). The ORM would build a model
    object and send one ``INSERT … RETURNING`` per row; callers that need the ids read
    them back by a unique key. Raises IntegrityError on a unique violation.
    """
    if not rows:
        return
    defaults = {
        name: field.get_default(call_default_factory=True)
        for name, field in model.model_fields.items()
        if name != "id"
    }
    session.execute(insert(model), [defaults | dict(row) for row in rows])


def _render(name: str, context: dict[str, object]) -> str:
    # The app's Jinja environment directly: emails need no request context processors.
    return current_app.jinja_env.get_template(f"email/{name}").render(context)


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def stage_messages(
    *,
    stage: Stage,
    policy: Policy,
    invoice: Invoice,
    account: CustomerAccount,
    audience: Audience,
    days: int,
    as_of: date,
    pay_url: str,
) -> list[dict[str, object]]:
    """The outbox rows (column values) of a reminder or warning stage, to insert.

    ``days`` is how many days overdue the invoice is on ``as_of`` (more than the
    stage's day when a missed run catches up). Needs an app context (templates).
    Raises ValueError for a stop stage (service_stop writes those emails).
    """
    if stage.kind == StageKind.STOP:
        raise ValueError("a stop stage's emails come from service_stop")
    partner = audience.partner
    balance = format_money(invoice.balance, invoice.currency)
    stop = stop_stage(policy)
    stop_on = invoice.due_date + timedelta(days=stop.day) if stop else None
    stop_in = max((stop_on - as_of).days, 1) if stop_on else 0
    template = f"dunning_{stage.kind.value}"
    pairs = recipients_of(stage, invoice, account, audience)
    context = {
        "partner": partner,
        "account": account,
        "invoice": invoice,
        "stage": stage,
        "days": days,
        "days_text": _days(days),
        "balance": balance,
        "pay_url": pay_url,
        "account_url": f"{audience.base_url.rstrip('/')}/partner/customers/{account.id}",
        "stop_on": stop_on,
        "stop_in_text": _days(stop_in),
        "customer_told": any(who == Recipient.CUSTOMER for who, _ in pairs),
        "customer_address": customer_address(invoice, account),
    }
    messages: list[dict[str, object]] = []
    for who, address in pairs:
        subject = _subject(stage.kind, who, invoice, account, days, stop_in)
        own = context | {"subject": subject, "audience": who}
        messages.append(
            {
                "partner_id": partner.id,
                "dedupe_key": f"dunning:{invoice.id}:{stage.day}:{who}",
                "kind": template,
                "to_address": address,
                "subject": subject,
                "text_body": _render(f"{template}.txt", own),
                "html_body": _render(f"{template}.html", own),
            }
        )
    return messages


def _subject(
    kind: StageKind,
    who: str,
    invoice: Invoice,
    account: CustomerAccount,
    days: int,
    stop_in: int,
) -> str:
    if kind == StageKind.WARNING:
        if who == Recipient.CUSTOMER:
            return f"Service stops in {_days(stop_in)}: invoice {invoice.number} is overdue"
        return f"Service stops in {_days(stop_in)} for {account.name}: invoice {invoice.number}"
    if who == Recipient.CUSTOMER:
        return f"Reminder: invoice {invoice.number} is {_days(days)} overdue"
    return f"Overdue {_days(days)}: {account.name}, invoice {invoice.number}"
