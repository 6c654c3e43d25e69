"""Two tenants full of canaries, built once for the tenant isolation matrix.

Every record a tenant owns carries a canary: a short unique token (``cnry0042q``) inside
its name, email, description or title. A canary belongs to an owner path, for example
``("A",)`` (partner A's own name), ``("A", "cust", "a1")`` (customer a1's name and email),
``("A", "cust", "a1", "inv", "open")`` (a line of a1's open invoice) or
``("B", "widget")``. The matrix scans every response for the canaries its actor may not see.

The rows come from the demo seed's own writer (fed with canary specs instead of the demo's)
and from the services a partner admin, a customer and the billing run use: widgets, an
invoice issued with a memo, orders sent for approval, pay links, refunds through the
sandbox processor, scheduled payments, invitations, emailed sign-in and reset links, a
billing run. Orders are rows (``tests/services/order_helpers.make_order``, as the order
service tests build them) sent through the real approval service. Nothing of Portico is
mocked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from flask import Flask
from sqlmodel import Session, col, select

from app.clock import local_today, utcnow
from app.models import (
    CustomerAccount,
    Invoice,
    InvoiceLine,
    OutboxMessage,
    Partner,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Product,
    Subscription,
    User,
)
from app.services import (
    billing_run,
    form_tokens,
    invitations,
    invoice_admin,
    order_approval,
    partner_users,
    pay_links,
    payment_scheduling,
    refunds,
    sign_in_links,
    widget_admin,
)
from app.services.auth import hash_password
from app.services.demo import _write_partner  # the seed's writer, fed our specs
from app.services.demo_data import CustomerSpec, InvSpec, PartnerSpec, ProductSpec, SubSpec
from app.services.demo_gateway import gateway_work
from app.services.invoice_forms import InvoiceForm, LineRow
from tests.services.order_helpers import make_order

PASSWORD = "portico-demo"
PRICES = {"A": 2500, "B": 3700}  # each partner's membership, in minor units
Path = tuple[str, ...]


class Canaries:
    """Mints canary tokens and remembers whose each one is."""

    def __init__(self) -> None:
        self.owner: dict[str, Path] = {}

    def mint(self, *path: str) -> str:
        token = f"cnry{len(self.owner):04d}q"  # fixed width: no canary contains another
        self.owner[token] = path
        return token


@dataclass
class Target:
    """One customer's records (and its partner's) that another actor aims at."""

    tenant: str
    cust: str
    partner_id: int
    customer_id: int
    user_id: int  # the customer's own portal user
    staff_user_id: int  # a partner user of the same tenant
    invoice_id: int  # open, with a pay link and a scheduled payment
    paid_invoice_id: int
    late_invoice_id: int  # overdue
    spare_invoice_id: int  # issued by the partner with a memo, nothing scheduled on it
    payment_id: int  # approved card payment, partly refunded
    refund_id: int
    subscription_id: int
    method_id: int
    scheduled_id: int
    order_id: int  # pending the customer's approval
    draft_order_id: int  # with a line, ready to be paid
    product_id: int
    widget_id: int
    widget_key: str
    message_id: int  # an email to this customer
    run_id: int
    pay_token: str
    approval_token: str
    invite_token: str
    sign_in_token: str
    reset_token: str

    @property
    def path(self) -> Path:
        return (self.tenant, "cust", self.cust)


@dataclass
class Actor:
    key: str
    role: str  # anonymous | customer | partner_admin | partner_sales | operator
    email: str = ""
    tenant: str = ""
    cust: str = ""


@dataclass
class World:
    canaries: Canaries
    targets: dict[str, Target] = field(default_factory=dict)
    actors: dict[str, Actor] = field(default_factory=dict)


def _customer(c: Canaries, tenant: str, key: str, *, user: bool, card: str) -> CustomerSpec:
    path = (tenant, "cust", key)
    return CustomerSpec(
        key=key,
        name=f"{c.mint(*path)} Rivera",
        email=f"{c.mint(*path)}@example.com",
        card=card,
        user=user,
        subscriptions=(
            SubSpec("plan", f"{c.mint(*path, 'sub')} plan", "monthly", 2500, -40),
            SubSpec("extra", f"{c.mint(*path, 'sub2')} pass", "annual", 9900, 20),
        ),
        invoices=(
            InvSpec("open", f"{c.mint(*path, 'inv', 'open')} fee", 4000, -5, 25, "created"),
            InvSpec("paid", f"{c.mint(*path, 'inv', 'paid')} deposit", 5000, -30, -15, "paid"),
            InvSpec("late", f"{c.mint(*path, 'inv', 'late')} rental", 9000, -42, -12, "overdue"),
        ),
    )


def _partner(c: Canaries, tenant: str, customers: dict[str, bool]) -> PartnerSpec:
    us = tenant == "A"
    staff = (tenant, "staff")
    return PartnerSpec(
        slug=f"tenant-{tenant.lower()}",
        name=f"{c.mint(tenant)} Network",
        country="US" if us else "DE",
        timezone="America/New_York" if us else "Europe/Berlin",
        currency="USD" if us else "EUR",
        locale="en_US" if us else "de_DE",
        tax_rate_bp=0 if us else 1900,
        users=(
            (f"admin-{c.mint(*staff)}@tenant.example", f"{c.mint(*staff)} Admin", "partner_admin"),
            (f"sales-{c.mint(*staff)}@tenant.example", f"{c.mint(*staff)} Sales", "partner_sales"),
        ),
        products=(  # prices differ between the tenants, so a borrowed price shows
            ProductSpec(
                f"{c.mint(tenant, 'product')} membership", "MEM", PRICES[tenant], "monthly", True
            ),
            ProductSpec(f"{c.mint(tenant, 'product')} seat", "SEAT", 4000),
        ),
        sales_collect_payment=True,
        portal_cancel_allowed=True,
        customers=tuple(
            _customer(c, tenant, key, user=user, card="4242424242424242")
            for key, user in customers.items()
        ),
    )


def build_world(app: Flask, session: Session) -> World:
    """Write both tenants and everything the matrix aims at; returns their ids and tokens."""
    canaries = Canaries()
    specs = {
        "A": _partner(canaries, "A", {"a1": True, "a2": True, "a3": False}),
        "B": _partner(canaries, "B", {"b1": True, "b2": False}),
    }
    resources = app.extensions["portico"]
    gateway, secret = resources.gateway, app.config["PORTICO"].secret_key
    world = World(canaries)
    with app.app_context():
        _seed(session, gateway, specs)
        now = utcnow()
        for tenant, spec in specs.items():
            admin = _user(session, spec.users[0][0])
            widget = widget_admin.create_widget(
                session,
                admin,
                widget_admin.WidgetInput(
                    title=f"{canaries.mint(tenant, 'widget')} appeal",
                    purpose=f"{canaries.mint(tenant, 'widget')} purpose",
                    currency=spec.currency,
                    fixed_amount="25.00",
                    accept_card=True,
                    allow_one_time=True,
                    success_message="Thanks.",
                ),
            )
            invite = partner_users.invite_user(
                session,
                admin,
                partner_users.InviteInput(
                    name=f"{canaries.mint(tenant, 'staff')} Invitee",
                    email=f"invitee-{canaries.mint(tenant, 'staff')}@tenant.example",
                ),
                links=invitations.LinkSettings(secret, "http://localhost"),
                now=now,
            )
            invite_token = invitations.invite_token(secret, invite.user, now=now)
            run = billing_run.start_run(
                session, partner_id=admin.partner_id, run_date=date(2001, 1, 1)
            ).run
            for cust in spec.customers:
                if not cust.user:
                    continue
                target = _target(
                    app, session, canaries, tenant, cust, admin, now=now, secret=secret
                )
                target.widget_id, target.widget_key = widget.id, widget.key  # type: ignore[assignment]
                target.invite_token, target.run_id = invite_token, run.id  # type: ignore[assignment]
                world.targets[cust.key] = target
            for email, _name, role in spec.users:
                world.actors[f"{role}_{tenant.lower()}"] = Actor(
                    f"{role}_{tenant.lower()}", role, email, tenant
                )
            for cust in spec.customers:
                if cust.user:
                    world.actors[cust.key] = Actor(
                        cust.key, "customer", cust.email, tenant, cust.key
                    )
    world.actors["anonymous"] = Actor("anonymous", "anonymous")
    world.actors["operator"] = Actor("operator", "operator", "operator@tenant.example")
    return world


def _seed(session: Session, gateway, specs: dict[str, PartnerSpec]) -> None:  # noqa: ANN001
    """The demo seed's rows for our specs (gateway work first, then one transaction)."""
    password = hash_password(PASSWORD)
    today = {spec.slug: local_today(spec.timezone) for spec in specs.values()}
    work = {
        (spec.slug, cust.key): gateway_work(gateway, "matrix", spec, cust, today[spec.slug])
        for spec in specs.values()
        for cust in spec.customers
    }
    session.add(
        User(email="operator@tenant.example", name="Olive Operator", password_hash=password,
             role="operator")
    )  # fmt: skip
    for spec in specs.values():
        _write_partner(session, spec, today[spec.slug], work, password)
    session.commit()


def _user(session: Session, email: str) -> User:
    return session.exec(select(User).where(User.email == email)).one()


def _invoice(session: Session, account_id: int, canary_word: str) -> Invoice:
    return session.exec(
        select(Invoice)
        .join(InvoiceLine, col(InvoiceLine.invoice_id) == Invoice.id)
        .where(Invoice.customer_account_id == account_id)
        .where(col(InvoiceLine.description).endswith(canary_word))
    ).one()


def _token_in(text: str, pattern: str) -> str:
    match = re.search(pattern, text)
    assert match, f"no {pattern} in {text!r}"
    return match.group(1)


def _target(
    app: Flask,
    session: Session,
    canaries: Canaries,
    tenant: str,
    cust: CustomerSpec,
    admin: User,
    *,
    now: datetime,
    secret: str,
) -> Target:
    """The customer's records, plus the ones services add: order, refund, links, schedule."""
    gateway = app.extensions["portico"].gateway
    account = session.exec(select(CustomerAccount).where(CustomerAccount.email == cust.email)).one()
    partner = session.get(Partner, account.partner_id)
    assert partner is not None and account.id is not None
    user = _user(session, cust.email)
    path = (tenant, "cust", cust.key)
    open_invoice = _invoice(session, account.id, " fee")
    paid_invoice = _invoice(session, account.id, " deposit")
    payment = session.exec(
        select(Payment).where(
            Payment.invoice_id == paid_invoice.id, Payment.status == PaymentStatus.APPROVED
        )
    ).one()
    method = session.exec(
        select(PaymentMethod).where(PaymentMethod.customer_account_id == account.id)
    ).one()
    subscription = session.exec(
        select(Subscription).where(Subscription.customer_account_id == account.id)
    ).first()
    product = session.exec(select(Product).where(Product.partner_id == partner.id)).first()
    assert subscription is not None and product is not None

    refund_subject = f"refund:{payment.id}"
    refund = refunds.refund_payment(
        session, gateway, admin, payment.id,  # type: ignore[arg-type]
        refunds.RefundForm(amount="1.00", note=f"{canaries.mint(*path, 'refund')} note"),
        token=form_tokens.verify(secret, form_tokens.issue(secret, refund_subject),
                                 subject=refund_subject),
        now=now,
    )  # fmt: skip
    today = local_today(partner.timezone)
    order = make_order(
        session,
        account,
        [(f"{canaries.mint(*path, 'order')} kit", 1, 3000, "once", today + timedelta(days=3))],
        by=admin,
    )
    draft = make_order(
        session,
        account,
        [(f"{canaries.mint(*path, 'draft')} draft", 1, 2000, "once", today + timedelta(days=3))],
        by=admin,
    )
    order, _ = order_approval.send_for_approval(
        session,
        admin,
        order.id,
        now=now,
        base_url="http://localhost",
        secret=secret,  # type: ignore[arg-type]
    )
    spare = invoice_admin.issue_invoice(  # as the partner's "New invoice" page does
        session, admin, account.id,
        InvoiceForm(
            issue_date=today.isoformat(), due_date=(today + timedelta(days=30)).isoformat(),
            memo=f"{canaries.mint(*path, 'inv', 'spare')} memo",
            lines=(LineRow(f"{canaries.mint(*path, 'inv', 'spare')} dues", "1", "30.00"),),
        ),
        as_of=today, now=now, links=invoice_admin.Links(secret, "http://localhost"),
    ).invoice  # fmt: skip
    link = pay_links.issue_link(
        session, invoice=open_invoice, partner=partner, now=now, user_id=admin.id
    )
    schedule_subject = payment_scheduling.form_subject(open_invoice.id)  # type: ignore[arg-type]
    scheduled = payment_scheduling.schedule_payment(
        session, user, open_invoice.id,  # type: ignore[arg-type]
        payment_scheduling.ScheduleInput(
            pay_on=(today + timedelta(days=5)).isoformat(), amount="",
            payment_method_id=str(method.id),
        ),
        token=form_tokens.verify(secret, form_tokens.issue(secret, schedule_subject),
                                 subject=schedule_subject),
        as_of=today, now=now, base_url="http://localhost",
    )  # fmt: skip
    sign_in_links.request_sign_in_link(
        session, email=cust.email, base_url="http://localhost", now=now
    )
    sign_in_links.request_password_reset(
        session, email=cust.email, base_url="http://localhost", now=now
    )
    emails = session.exec(
        select(OutboxMessage)
        .where(OutboxMessage.to_address.contains(cust.email))  # type: ignore[attr-defined]
        .order_by(col(OutboxMessage.id))
    ).all()
    bodies = "\n".join(message.text_body for message in emails)
    return Target(
        tenant=tenant,
        cust=cust.key,
        partner_id=partner.id,  # type: ignore[arg-type]
        customer_id=account.id,
        user_id=user.id,  # type: ignore[arg-type]
        staff_user_id=admin.id,  # type: ignore[arg-type]
        invoice_id=open_invoice.id,  # type: ignore[arg-type]
        paid_invoice_id=paid_invoice.id,  # type: ignore[arg-type]
        late_invoice_id=_invoice(session, account.id, " rental").id,  # type: ignore[arg-type]
        spare_invoice_id=spare.id,  # type: ignore[arg-type]
        payment_id=payment.id,  # type: ignore[arg-type]
        refund_id=refund.refund.id,  # type: ignore[arg-type]
        subscription_id=subscription.id,  # type: ignore[arg-type]
        method_id=method.id,  # type: ignore[arg-type]
        scheduled_id=scheduled.scheduled.id,  # type: ignore[arg-type]
        order_id=order.id,  # type: ignore[arg-type]
        draft_order_id=draft.id,  # type: ignore[arg-type]
        product_id=product.id,  # type: ignore[arg-type]
        widget_id=0,
        widget_key="",
        message_id=emails[0].id,  # type: ignore[arg-type]
        run_id=0,
        pay_token=pay_links.token_for(secret, link),
        approval_token=order_approval.token_for(secret, order),
        invite_token="",
        sign_in_token=_token_in(bodies, r"/login/link/([A-Za-z0-9_\-]+)"),
        reset_token=_token_in(bodies, r"/password/reset/([A-Za-z0-9_\-]+)"),
    )
