"""Shared set-up for scheduled-payment tests: a partner, a customer who signs in, invoices,
schedules made through the service as the portal makes them, and the processor's charges
of a scheduled payment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from flask import Flask
from sqlmodel import Session

from app.gateway.sandbox import SandboxChargeRecord, SandboxGateway
from app.models import Invoice, InvoiceStatus, PaymentMethod, Role, ScheduledPayment, User
from app.services import payment_scheduling as scheduling
from app.services.form_tokens import FormToken
from tests.services.invoice_helpers import DAY, NOW, Shop, issue, make_shop, token
from tests.services.payer_helpers import sandbox


@dataclass
class Customer:
    shop: Shop
    user: User

    @property
    def method(self) -> PaymentMethod:
        return self.shop.method


def make_customer_user(app: Flask, session: Session, slug: str = "harbor") -> Customer:
    """A partner (UTC, USD) whose customer has a saved Visa and signs in to the portal."""
    shop = make_shop(app, session, slug)
    user = User(
        email=f"casey@{slug}.example",
        name="Casey",
        password_hash="not-a-real-hash",
        role=Role.CUSTOMER,
        partner_id=shop.partner.id,
        customer_account_id=shop.account.id,
    )
    session.add(user)
    session.commit()
    return Customer(shop, user)


def open_invoice(app: Flask, session: Session, who: Customer, *, due_in: int = 30) -> Invoice:
    """A $100.00 invoice issued on DAY, due ``due_in`` days later."""
    return issue(app, session, who.shop, due_in=due_in)


def make_overdue(session: Session, invoice: Invoice) -> Invoice:
    invoice.due_date = DAY - timedelta(days=5)
    invoice.status = InvoiceStatus.OVERDUE
    session.add(invoice)
    session.commit()
    return invoice


def form_for(app: Flask, invoice: Invoice) -> FormToken:
    """The token of a freshly rendered schedule form of ``invoice``."""
    return token(app, scheduling.form_subject(invoice.id))  # type: ignore[arg-type]


def schedule(
    app: Flask,
    session: Session,
    who: Customer,
    invoice: Invoice,
    *,
    pay_on: date | str,
    amount: str = "",
    method: PaymentMethod | None = None,
    form: FormToken | None = None,
) -> scheduling.Scheduled:
    """Submit the schedule form as the portal view does."""
    data = scheduling.ScheduleInput(
        pay_on=pay_on if isinstance(pay_on, str) else pay_on.isoformat(),
        amount=amount,
        payment_method_id=str((method or who.method).id),
    )
    return scheduling.schedule_payment(
        session, who.user, invoice.id, data, token=form or form_for(app, invoice),  # type: ignore[arg-type]
        as_of=DAY, now=NOW, base_url="http://localhost",
    )  # fmt: skip


def charges_of(gateway: SandboxGateway, row: ScheduledPayment) -> list[SandboxChargeRecord]:
    """The processor's charges for one scheduled payment (found by our metadata)."""
    key = f"sched:{row.id}"
    return [c for c in gateway.list_charges() if c.metadata.get("purpose_key") == key]


__all__ = ["DAY", "NOW", "sandbox"]
