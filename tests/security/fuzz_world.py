"""The world the hostile-input rows post into: the demo data seeded once for the module,
one signed-in client per actor, the records each row owns (made afresh when an accepted
example used them up), and the base payloads that go through as they are.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.models import CustomerAccount, Order, OutboxMessage, Partner, PaymentMethod, User
from app.services import order_approval, pay_links
from tests.conftest import _empty_all_tables
from tests.security import fuzz_support as fz
from tests.web.helpers import csrf_token, sign_in

ACTORS = {
    "admin": "admin@us-partner.example",
    "sales": "sales@us-partner.example",
    "customer": "customer@example.com",
    "operator": "operator@example.com",
}
CARD = {"card_number": "4242 4242 4242 4242", "exp": "12/34", "cvc": "123"}
CARD_FIELDS = ("card_number", "exp", "cvc", "payment_token")
BANK_FIELDS = ("routing_number", "account_number")
JUNK = ("junk", "id", "partner_id", "status")  # fields an endpoint without a form must ignore


@dataclass
class Ctx:
    """The seeded app, one signed-in client per actor, and the records the rows use."""

    app: Flask
    engine: Engine
    clients: dict[str, FlaskClient]
    csrf: dict[str, str]
    ids: dict[str, Any] = field(default_factory=dict)

    @property
    def secret(self) -> str:
        return self.app.config["PORTICO"].secret_key

    def db(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def today(self) -> date:
        from app.clock import local_today

        return local_today("America/New_York")

    def post(self, actor: str, path: str, data: Mapping[str, Any]) -> Any:
        """Post as ``actor`` with a valid CSRF token; anonymous posts come from a new
        browser each time (an accepted sign-in link signs the last one in)."""
        if actor == "anon":
            self.clients["anon"] = self.app.test_client()
            self.csrf["anon"] = csrf_token(self.clients["anon"], "/password/forgot")
        body = {"csrf_token": self.csrf[actor], **data}
        return self.clients[actor].post(path, data=body)

    def created_id(self, response: Any, pattern: str) -> int:
        """The id in a redirect's Location (what the accepted post created)."""
        match = re.search(pattern, response.headers.get("Location", ""))
        assert response.status_code in (302, 303) and match, (response.status_code, pattern)
        return int(match.group(1))


def iso(value: date) -> str:
    return value.isoformat()


def next_month(ctx: Ctx) -> date:
    t = ctx.today()
    return date(t.year + t.month // 12, t.month % 12 + 1, 1)


# -- records the rows own ---------------------------------------------------------------------


def user_id(ctx: Ctx, email: str) -> int:
    with ctx.db() as db:
        return db.exec(select(User.id).where(User.email == email)).one()  # type: ignore[return-value]


def issue_invoice(ctx: Ctx, customer_id: int) -> int:
    path = f"/partner/customers/{customer_id}/invoices/new"
    response = ctx.post("admin", path, invoice_base(ctx))
    return ctx.created_id(response, r"/partner/invoices/(\d+)")


def new_order(ctx: Ctx, customer_id: int, *, with_lines: bool = True) -> int:
    response = ctx.post("admin", f"/partner/customers/{customer_id}/orders/new", {})
    order_id = ctx.created_id(response, r"/partner/orders/(\d+)")
    if with_lines:
        saved = ctx.post("admin", f"/partner/orders/{order_id}/lines", lines_base(ctx))
        assert saved.status_code in (302, 303), saved.get_data(as_text=True)[:2000]
    return order_id


def draft_order(ctx: Ctx) -> int:
    """A draft order with a line (a new one once an example submitted or canceled it)."""
    order_id = ctx.ids.get("order")
    with ctx.db() as db:
        order = db.get(Order, order_id) if order_id else None
        if order is not None and order.status == "draft":
            return order.id  # type: ignore[return-value]
    ctx.ids["order"] = new_order(ctx, ctx.ids["order_customer"])
    return ctx.ids["order"]


def held_order(ctx: Ctx) -> int:
    """An order whose card is authorized (a new one once an example captured or voided it)."""
    order_id = ctx.ids.get("held_order")
    with ctx.db() as db:
        order = db.get(Order, order_id) if order_id else None
        if order is not None and order.status == "authorized":
            return order.id  # type: ignore[return-value]
        customer = ctx.ids["order_customer"]
        card = db.exec(
            select(PaymentMethod.id).where(PaymentMethod.customer_account_id == customer)
        ).first()
    order_id = new_order(ctx, customer)
    submitted = ctx.post("admin", f"/partner/orders/{order_id}/submit",
                         {"card": str(card), "choice": "authorize", "sequence": "1"})  # fmt: skip
    assert submitted.status_code in (302, 303), submitted.get_data(as_text=True)[:3000]
    ctx.ids["held_order"] = order_id
    return order_id


def approval_path(ctx: Ctx) -> str:
    """A pending approval link; a new order once the last one was approved."""
    order_id = ctx.ids.get("approval_order")
    with ctx.db() as db:
        order = db.get(Order, order_id) if order_id else None
        if order is not None and order.status == "pending_approval":
            return f"/approve/{order_approval.token_for(ctx.secret, order)}"
    order_id = new_order(ctx, ctx.ids["order_customer"])
    sent = ctx.post("admin", f"/partner/orders/{order_id}/send-for-approval", {})
    assert sent.status_code in (302, 303)
    ctx.ids["approval_order"] = order_id
    with ctx.db() as db:
        order = db.get(Order, order_id)
        assert order is not None and order.status == "pending_approval", order
        return f"/approve/{order_approval.token_for(ctx.secret, order)}"


def open_invoice(ctx: Ctx, key: str, customer: str) -> int:
    """The invoice ``key`` while it is open; a new one once an example paid it."""
    from app.models import Invoice

    with ctx.db() as db:
        invoice = db.get(Invoice, ctx.ids[key]) if key in ctx.ids else None
        if invoice is not None and invoice.balance > 0 and invoice.status != "canceled":
            return invoice.id  # type: ignore[return-value]
    ctx.ids[key] = issue_invoice(ctx, ctx.ids[customer])
    ctx.ids.pop(f"link:{key}", None)
    return ctx.ids[key]


def pay_link_path(ctx: Ctx, prefix: str) -> str:
    """A pay link of an open invoice of its own (one per route)."""
    from app.clock import utcnow
    from app.models import Invoice

    key = f"link_invoice{prefix}"
    invoice_id = open_invoice(ctx, key, "link_customer")
    if f"link:{key}" not in ctx.ids:
        with ctx.db() as db:
            invoice = db.get(Invoice, invoice_id)
            partner = db.get(Partner, invoice.partner_id)  # type: ignore[union-attr]
            link = pay_links.issue_link(
                db, invoice=invoice, partner=partner, now=utcnow(), user_id=None
            )
            ctx.ids[f"link:{key}"] = pay_links.token_for(ctx.secret, link)
    return f"{prefix}/{ctx.ids[f'link:{key}']}"


def partial_payments(ctx: Ctx) -> None:
    """Partial amounts allowed again (a fuzzed settings post may have turned them off)."""
    with ctx.db() as db:
        partner = db.exec(select(Partner).where(Partner.slug == "us-partner")).one()
        partner.allow_partial_payments = True
        db.add(partner)
        db.commit()


def emailed_path(ctx: Ctx, kind: str, to: str) -> str:
    with ctx.db() as db:
        message = db.exec(
            select(OutboxMessage)
            .where(OutboxMessage.kind == kind, OutboxMessage.to_address == to)
            .order_by(col(OutboxMessage.id).desc())
        ).first()
    assert message is not None, f"no {kind} email to {to}"
    match = re.search(r"http://localhost(/\S+)", message.text_body)
    assert match, message.text_body
    return match.group(1)


def reset_path(ctx: Ctx) -> str:
    """A fresh password-reset link of the second customer (asked for like a person)."""
    anon = ctx.clients["anon"]
    asked = anon.post(
        "/password/forgot",
        data={"email": "makers@example.com", "csrf_token": csrf_token(anon, "/password/forgot")},
    )
    assert asked.status_code == 200
    return emailed_path(ctx, "password_reset", "makers@example.com")


def sign_in_link_path(ctx: Ctx) -> str:
    anon = ctx.clients["anon"]
    asked = anon.post(
        "/login/link",
        data={"email": "makers@example.com", "csrf_token": csrf_token(anon, "/login/link")},
    )
    assert asked.status_code == 200
    return emailed_path(ctx, "sign_in_link", "makers@example.com")


def invite_path(ctx: Ctx) -> str:
    """A fresh invitation (a new person each time), as the partner admin sends it."""
    n = ctx.ids["invites"] = ctx.ids.get("invites", 0) + 1
    email = f"invitee-{n}@us-partner.example"
    sent = ctx.post("admin", "/partner/users/invite",
                    {"name": "New Person", "email": email, "role": "partner_sales"})  # fmt: skip
    assert sent.status_code in (302, 303)
    return emailed_path(ctx, "invite", email)


def latest_method(ctx: Ctx) -> int:
    with ctx.db() as db:
        account = db.exec(
            select(CustomerAccount).where(CustomerAccount.email == ACTORS["customer"])
        ).one()
        method_id = db.exec(
            select(PaymentMethod.id)
            .where(PaymentMethod.customer_account_id == account.id)
            .order_by(col(PaymentMethod.id).desc())
        ).first()
    assert method_id is not None
    return method_id


def schedulable(ctx: Ctx) -> str:
    """The schedule form of an open invoice with no payment scheduled yet (an accepted
    example schedules one, and the form is then gone)."""
    from app.models import ScheduledPayment

    invoice_id = open_invoice(ctx, "schedule_invoice", "portal_customer")
    with ctx.db() as db:
        taken = db.exec(
            select(ScheduledPayment.id).where(ScheduledPayment.invoice_id == invoice_id)
        ).first()
    if taken is not None:
        ctx.ids["schedule_invoice"] = invoice_id = issue_invoice(ctx, ctx.ids["portal_customer"])
    return f"/portal/invoices/{invoice_id}/schedule"


def scheduled_id(ctx: Ctx) -> int:
    from app.models import ScheduledPayment

    with ctx.db() as db:
        found = db.exec(
            select(ScheduledPayment.id).order_by(col(ScheduledPayment.id).desc())
        ).first()
    if found is None:
        invoice_id = open_invoice(ctx, "schedule_invoice", "portal_customer")
        page = ctx.clients["customer"].get(f"/portal/invoices/{invoice_id}/schedule")
        token = fz.hidden_value(page.get_data(as_text=True), "token")
        made = ctx.post("customer", f"/portal/invoices/{invoice_id}/schedule",
                        {**schedule_base(ctx), "token": token})  # fmt: skip
        assert made.status_code in (302, 303), made.get_data(as_text=True)[:3000]
        return scheduled_id(ctx)
    return found


# -- base payloads (each is accepted as it is) ------------------------------------------------


def invoice_base(ctx: Ctx) -> dict[str, fz.FieldValue]:
    t = ctx.today()
    return {
        "issue_date": iso(t), "due_date": iso(t + timedelta(days=30)), "memo": "Thanks",
        "description": ["Hall rental"], "quantity": ["2"], "unit_price": ["12.50"],
    }  # fmt: skip


def lines_base(ctx: Ctx) -> dict[str, fz.FieldValue]:
    return {
        "product": [""], "description": ["Coaching"], "quantity": ["1"],
        "unit_price": ["30.00"], "activation_date": [iso(ctx.today())], "frequency": ["once"],
    }  # fmt: skip


def subscription_base(ctx: Ctx) -> dict[str, fz.FieldValue]:
    return {
        "description": "Club dues", "currency": "USD", "frequency": "monthly",
        "start_date": iso(ctx.today() + timedelta(days=3)), "charge_day": "",
        "stop_rule": "count", "end_date": "", "stop_count": "6", "amount_mode": "fixed",
        "manual_amount": "15.00", "total_amount": "", "initial_amount": "",
    }  # fmt: skip


def widget_base(_ctx: Ctx) -> dict[str, fz.FieldValue]:
    return {
        "title": "Spring raffle", "purpose": "Tickets.", "currency": "", "amount_mode": "fixed",
        "fixed_amount": "25.00", "min_amount": "", "max_amount": "", "accept_card": "on",
        "accept_bank": "", "allow_one_time": "on", "frequencies": ["monthly", "annual"],
        "success_message": "Thanks!",
    }  # fmt: skip


def schedule_base(ctx: Ctx) -> dict[str, fz.FieldValue]:
    return {
        "pay_on": iso(ctx.today() + timedelta(days=5)), "amount": "5.00",
        "payment_method_id": str(ctx.ids["customer_method"]),
    }  # fmt: skip


def payer_base(_ctx: Ctx) -> dict[str, fz.FieldValue]:
    return {"name": "Pat Payer", "amount": "1.00", "method": "card", **CARD}


def obo_start(ctx: Ctx) -> dict[str, fz.FieldValue]:
    return {"start_date": iso(next_month(ctx)), "billing_email": "billing@example.org"}


def obo_choose(ctx: Ctx) -> dict[str, fz.FieldValue]:
    return {"wants_changes": "yes", "subscription": [str(ctx.ids["obo_subscription"])]}


def obo_step(ctx: Ctx) -> dict[str, fz.FieldValue]:
    return {"start_date": iso(next_month(ctx)), "price": "20.00"}


WIZARD = (
    ("/partner/customers/{}/on-behalf", obo_start),
    ("/partner/customers/{}/on-behalf/subscriptions", obo_choose),
    ("/partner/customers/{}/on-behalf/subscriptions/1", obo_step),
)


def wizard(ctx: Ctx, steps: int) -> None:
    """Walk the first ``steps`` billing-on-behalf steps with their base payloads (an
    example may have left the draft without a chosen subscription)."""
    for template, base in WIZARD[:steps]:
        done = ctx.post("admin", template.format(ctx.ids["obo_customer"]), base(ctx))
        assert done.status_code in (302, 303), (template, done.get_data(as_text=True)[:3000])


def none(_ctx: Ctx) -> dict[str, fz.FieldValue]:
    return {}


# -- the module's app, data and clients -------------------------------------------------------


def seed_ids(ctx: Ctx) -> None:
    from app.models import Invoice, Payment, Product, Subscription, Widget

    with ctx.db() as db:

        def account(email: str) -> int:
            found = db.exec(select(CustomerAccount.id).where(CustomerAccount.email == email))
            return found.one()  # type: ignore[return-value]

        jordan = account("customer@example.com")
        makers = account("makers@example.com")
        soccer = account("treasurer@riverside-soccer.example")
        library = account("friends@oakhill-library.example")
        scouts = account("leader@pineridge-scouts.example")
        partner = db.exec(select(Partner).where(Partner.name == "Harbor Community Network")).one()
        partner.allow_partial_payments = True  # partial amounts make examples repeatable
        db.add(partner)
        db.commit()

        def open_invoice(account_id: int) -> int:
            return db.exec(
                select(Invoice.id)
                .where(Invoice.customer_account_id == account_id, Invoice.total > 0)
                .where(col(Invoice.status).in_(("created", "overdue")))
                .order_by(col(Invoice.id))
            ).first()  # type: ignore[return-value]

        def subscription_of(account_id: int, status: str = "") -> int:
            query = select(Subscription.id).where(Subscription.customer_account_id == account_id)
            if status:
                query = query.where(Subscription.status == status)
            return db.exec(query.order_by(col(Subscription.id))).first()  # type: ignore[return-value]

        card_payment = db.exec(
            select(Payment.id)
            .where(Payment.kind == "charge", Payment.status == "approved", Payment.amount >= 10000)
            .order_by(col(Payment.id))
        ).first()
        jordans_payment = db.exec(
            select(Payment.id)
            .where(Payment.customer_account_id == jordan)
            .order_by(col(Payment.id))
        ).first()
        gift = db.exec(select(Product.id).where(Product.name == "Youth programs fund")).one()
        widget = db.exec(select(Widget.id)).first()
        method = db.exec(
            select(PaymentMethod.id).where(PaymentMethod.customer_account_id == jordan)
        ).first()
        message = db.exec(select(OutboxMessage.id)).first()
    ctx.ids.update(
        invoice_customer=scouts, sub_customer=scouts, obo_customer=library, order_customer=makers,
        portal_invoice=open_invoice(jordan), portal_payment=jordans_payment,
        pay_invoice=open_invoice(soccer), link_customer=library, pay_customer=soccer,
        portal_customer=jordan,
        refund_payment=card_payment, subscription=subscription_of(scouts),
        error_subscription=subscription_of(soccer, "error"),
        customer_subscription=subscription_of(jordan),
        obo_subscription=subscription_of(library), gift_product=gift, widget=widget,
        customer_method=method, outbox_message=message,
    )  # fmt: skip
    ctx.ids["cancel_invoice"] = issue_invoice(ctx, scouts)
    invited = ctx.post("admin", "/partner/users/invite",
                       {"name": "Ira Invitee", "email": "ira@us-partner.example",
                        "role": "partner_sales"})  # fmt: skip
    assert invited.status_code in (302, 303)
    ctx.ids["invitee"] = user_id(ctx, "ira@us-partner.example")
    # The wizard's draft: a start date and one chosen subscription (what step 3 and the
    # review need); the on_behalf rows then spoil each step in turn.
    wizard(ctx, 2)
    if message is None:
        with ctx.db() as db:
            ctx.ids["outbox_message"] = db.exec(select(OutboxMessage.id)).first()


@contextlib.contextmanager
def open_world(engine: Engine, settings: Any) -> Iterator[Ctx]:
    """The demo data seeded once, a signed-in client per actor, and the rows' records."""
    from app import create_app
    from app.extensions import gateway, session_scope
    from app.jobs.context import use_app
    from app.services.demo import seed_demo

    flask_app = create_app(config={"TESTING": True}, settings=settings)
    resources = flask_app.extensions["portico"]
    resources.engine.dispose()
    resources.engine = engine
    use_app(flask_app)
    _empty_all_tables(engine)
    with flask_app.app_context(), session_scope() as session:
        seed_demo(session, gateway())
    clients: dict[str, FlaskClient] = {"anon": flask_app.test_client()}
    tokens = {"anon": csrf_token(clients["anon"], "/login")}
    for actor, email in ACTORS.items():
        client = flask_app.test_client()
        assert sign_in(client, email).status_code == 303, email
        clients[actor] = client
        tokens[actor] = csrf_token(
            client,
            {"customer": "/portal/payment-methods", "operator": "/operator/outbox"}.get(
                actor, "/partner/"
            ),
        )
    context = Ctx(flask_app, engine, clients, tokens)
    seed_ids(context)  # outside an app context: each request must get its own ``g``
    try:
        yield context
    finally:
        _empty_all_tables(engine)
        resources.redis.flushdb()
