"""Shared set-up for dunning tests: partners with policies, customers and unpaid invoices,
and running the sweep the way the job does (real services, real database)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

from flask import Flask
from sqlmodel import Session, select

from app.domain.dunning import parse_policy, policy_to_json
from app.models import CustomerAccount, DunningNotice, Invoice, OutboxMessage, Partner, Role, User
from app.services.dunning import sweep
from app.services.invoices import LineInput, add_invoice

BASE_URL = "http://localhost"


def make_partner(
    session: Session,
    slug: str,
    *,
    policy: list[dict] | None = None,
    admins: int = 1,
    timezone: str = "UTC",
) -> Partner:
    """A US partner with ``admins`` partner admins (``admin@<slug>.example``, then
    ``admin2@…``) and, when given, its own dunning policy (checked like a saved one)."""
    stored = policy_to_json(parse_policy(policy)) if policy is not None else None
    partner = Partner(
        name=f"{slug.title()} Club", slug=slug, country="US", timezone=timezone,
        dunning_policy=stored,
    )  # fmt: skip
    session.add(partner)
    session.flush()
    for n in range(admins):
        session.add(
            User(
                email=f"admin{n + 1 if n else ''}@{slug}.example",
                name=f"{slug.title()} Admin {n + 1}",
                password_hash="not-a-real-hash",
                role=Role.PARTNER_ADMIN,
                partner_id=partner.id,
            )
        )
    session.commit()
    return partner


def make_account(
    session: Session, partner: Partner, name: str, *, billing_email: str = ""
) -> CustomerAccount:
    slug = name.lower().replace(" ", "-")
    account = CustomerAccount(
        partner_id=partner.id,  # type: ignore[arg-type]
        name=name,
        email=f"{slug}@customers.example",
        billing_email=billing_email,
        currency=partner.currency,
    )
    session.add(account)
    session.commit()
    return account


def make_invoice(
    session: Session,
    partner: Partner,
    account: CustomerAccount,
    *,
    due: date,
    amount: int = 12000,
    description: str = "Season membership",
) -> Invoice:
    """An unpaid invoice issued 30 days before ``due`` (in the sweep from due + 1)."""
    invoice = add_invoice(
        session,
        partner=partner,
        account=account,
        lines=[LineInput(description, 1, amount)],
        issue_date=due - timedelta(days=30),
        due_date=due,
    )
    session.commit()
    return invoice


def morning(day: date) -> datetime:
    """The instant a sweep of ``day`` runs (08:00 UTC, the dunning hour)."""
    return datetime.combine(day, time(8), tzinfo=UTC)


def run_sweep(
    app: Flask,
    session: Session,
    partner_id: int,
    day: date,
    *,
    emails: list[int] | None = None,
    secret: str = "",
    chunk_size: int = 50,
) -> Counter[str]:
    """One sweep of ``day`` for the partner, as the job runs it; collects enqueued ids."""
    with app.app_context():
        return sweep(
            session,
            partner_id=partner_id,
            as_of=day,
            now=morning(day),
            base_url=BASE_URL,
            secret=secret,
            chunk_size=chunk_size,
            on_emails=emails.extend if emails is not None else None,
        )


def notices(session: Session, invoice_id: int) -> list[DunningNotice]:
    session.expire_all()
    return list(
        session.exec(
            select(DunningNotice)
            .where(DunningNotice.invoice_id == invoice_id)
            .order_by(DunningNotice.day)  # type: ignore[arg-type]
        ).all()
    )


def outbox(session: Session, *kinds: str) -> list[OutboxMessage]:
    session.expire_all()
    query = select(OutboxMessage).order_by(OutboxMessage.id)  # type: ignore[arg-type]
    rows = session.exec(query).all()
    return [m for m in rows if not kinds or m.kind in kinds]
