"""Hostile input: every POST endpoint fuzzed with hypothesis through the real app.

Each endpoint has a row in ``TARGETS``: who posts it (signed in, with a valid CSRF token),
its URL, a valid base payload and the fields to spoil. Hypothesis spoils some of the
fields (wrong types, empty, 10,000 characters, control characters and NUL, overflowing,
negative and zero amounts, impossible dates, wrong currencies, SQL and HTML
metacharacters) and ``fuzz_support`` checks every answer: no 5xx, no row changed when the
input was refused, a 422 names its field, markup comes back escaped. Forms with a signed
single-use token (widgets, pay links, approvals, manual payments, refunds…) are rendered
first for a fresh token per example. A POST endpoint without a row fails the test.

The demo data is seeded once for the module; the rows run in order and may change it
(an accepted example is a real submission), so each row points at records it owns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.models import CustomerAccount, Order, OutboxMessage, Partner, PaymentMethod, User
from app.services import order_approval, pay_links
from tests.conftest import _empty_all_tables
from tests.security import fuzz_support as fz
from tests.web.helpers import csrf_token, sign_in

# POST endpoints deliberately left out, and why.
EXEMPT = {
    "auth.logout": "takes no input; sign-out is covered by the session tests",
    "webhooks.receive": "signature-checked JSON; its own tests send bad bodies and signatures",
}
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


@dataclass(frozen=True)
class Target:
    actor: str  # "anon" or a key of ACTORS
    path: Callable[[Ctx], str]  # called for every example (may make a fresh link)
    base: Callable[[Ctx], dict[str, fz.FieldValue]]
    fields: tuple[str, ...]
    token_page: Callable[[Ctx], str] | None = None  # renders the form's single-use token
    token_field: str = "form_token"
    examples: int = 15
    prepare: Callable[[Ctx], None] | None = None  # once, before the examples
    accepts: bool = True  # the base payload goes through (login's wrong password does not)


def _iso(value: date) -> str:
    return value.isoformat()


def _next_month(ctx: Ctx) -> date:
    t = ctx.today()
    return date(t.year + t.month // 12, t.month % 12 + 1, 1)


# -- records the rows own ---------------------------------------------------------------------


def _user_id(ctx: Ctx, email: str) -> int:
    with ctx.db() as db:
        return db.exec(select(User.id).where(User.email == email)).one()  # type: ignore[return-value]


def _issue_invoice(ctx: Ctx, customer_id: int) -> int:
    response = ctx.post("admin", f"/partner/customers/{customer_id}/invoices/new", _invoice(ctx))
    return ctx.created_id(response, r"/partner/invoices/(\d+)")


def _new_order(ctx: Ctx, customer_id: int, *, lines: bool = True) -> int:
    response = ctx.post("admin", f"/partner/customers/{customer_id}/orders/new", {})
    order_id = ctx.created_id(response, r"/partner/orders/(\d+)")
    if lines:
        saved = ctx.post("admin", f"/partner/orders/{order_id}/lines", _lines(ctx))
        assert saved.status_code in (302, 303), saved.get_data(as_text=True)[:2000]
    return order_id


def _draft_order(ctx: Ctx) -> int:
    """A draft order with a line (a new one once an example submitted or canceled it)."""
    order_id = ctx.ids.get("order")
    with ctx.db() as db:
        order = db.get(Order, order_id) if order_id else None
        if order is not None and order.status == "draft":
            return order.id  # type: ignore[return-value]
    ctx.ids["order"] = _new_order(ctx, ctx.ids["order_customer"])
    return ctx.ids["order"]


def _held_order(ctx: Ctx) -> int:
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
    order_id = _new_order(ctx, customer)
    submitted = ctx.post("admin", f"/partner/orders/{order_id}/submit",
                         {"card": str(card), "choice": "authorize", "sequence": "1"})  # fmt: skip
    assert submitted.status_code in (302, 303), submitted.get_data(as_text=True)[:3000]
    ctx.ids["held_order"] = order_id
    return order_id


def _approval_path(ctx: Ctx) -> str:
    """A pending approval link; a new order once the last one was approved."""
    order_id = ctx.ids.get("approval_order")
    with ctx.db() as db:
        order = db.get(Order, order_id) if order_id else None
        if order is not None and order.status == "pending_approval":
            return f"/approve/{order_approval.token_for(ctx.secret, order)}"
    order_id = _new_order(ctx, ctx.ids["order_customer"])
    sent = ctx.post("admin", f"/partner/orders/{order_id}/send-for-approval", {})
    assert sent.status_code in (302, 303)
    ctx.ids["approval_order"] = order_id
    with ctx.db() as db:
        order = db.get(Order, order_id)
        assert order is not None and order.status == "pending_approval", order
        return f"/approve/{order_approval.token_for(ctx.secret, order)}"


def _open_invoice(ctx: Ctx, key: str, customer: str) -> int:
    """The invoice ``key`` while it is open; a new one once an example paid it."""
    from app.models import Invoice

    with ctx.db() as db:
        invoice = db.get(Invoice, ctx.ids[key]) if key in ctx.ids else None
        if invoice is not None and invoice.balance > 0 and invoice.status != "canceled":
            return invoice.id  # type: ignore[return-value]
    ctx.ids[key] = _issue_invoice(ctx, ctx.ids[customer])
    ctx.ids.pop(f"link:{key}", None)
    return ctx.ids[key]


def _pay_link_path(ctx: Ctx, prefix: str) -> str:
    """A pay link of an open invoice of its own (one per route)."""
    from app.clock import utcnow
    from app.models import Invoice

    key = f"link_invoice{prefix}"
    invoice_id = _open_invoice(ctx, key, "link_customer")
    if f"link:{key}" not in ctx.ids:
        with ctx.db() as db:
            invoice = db.get(Invoice, invoice_id)
            partner = db.get(Partner, invoice.partner_id)  # type: ignore[union-attr]
            link = pay_links.issue_link(
                db, invoice=invoice, partner=partner, now=utcnow(), user_id=None
            )
            ctx.ids[f"link:{key}"] = pay_links.token_for(ctx.secret, link)
    return f"{prefix}/{ctx.ids[f'link:{key}']}"


def _partial_payments(ctx: Ctx) -> None:
    """Partial amounts allowed again (a fuzzed settings post may have turned them off)."""
    with ctx.db() as db:
        partner = db.exec(select(Partner).where(Partner.slug == "us-partner")).one()
        partner.allow_partial_payments = True
        db.add(partner)
        db.commit()


def _emailed_path(ctx: Ctx, kind: str, to: str) -> str:
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


def _reset_path(ctx: Ctx) -> str:
    """A fresh password-reset link of the second customer (asked for like a person)."""
    anon = ctx.clients["anon"]
    asked = anon.post(
        "/password/forgot",
        data={"email": "makers@example.com", "csrf_token": csrf_token(anon, "/password/forgot")},
    )
    assert asked.status_code == 200
    return _emailed_path(ctx, "password_reset", "makers@example.com")


def _sign_in_link_path(ctx: Ctx) -> str:
    anon = ctx.clients["anon"]
    asked = anon.post(
        "/login/link",
        data={"email": "makers@example.com", "csrf_token": csrf_token(anon, "/login/link")},
    )
    assert asked.status_code == 200
    return _emailed_path(ctx, "sign_in_link", "makers@example.com")


def _invite_path(ctx: Ctx) -> str:
    """A fresh invitation (a new person each time), as the partner admin sends it."""
    n = ctx.ids["invites"] = ctx.ids.get("invites", 0) + 1
    email = f"invitee-{n}@us-partner.example"
    sent = ctx.post("admin", "/partner/users/invite",
                    {"name": "New Person", "email": email, "role": "partner_sales"})  # fmt: skip
    assert sent.status_code in (302, 303)
    return _emailed_path(ctx, "invite", email)


def _latest_method(ctx: Ctx) -> int:
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


def _schedulable(ctx: Ctx) -> str:
    """The schedule form of an open invoice with no payment scheduled yet (an accepted
    example schedules one, and the form is then gone)."""
    from app.models import ScheduledPayment

    invoice_id = _open_invoice(ctx, "schedule_invoice", "portal_customer")
    with ctx.db() as db:
        taken = db.exec(
            select(ScheduledPayment.id).where(ScheduledPayment.invoice_id == invoice_id)
        ).first()
    if taken is not None:
        ctx.ids["schedule_invoice"] = invoice_id = _issue_invoice(ctx, ctx.ids["portal_customer"])
    return f"/portal/invoices/{invoice_id}/schedule"


def _scheduled_id(ctx: Ctx) -> int:
    from app.models import ScheduledPayment

    with ctx.db() as db:
        found = db.exec(
            select(ScheduledPayment.id).order_by(col(ScheduledPayment.id).desc())
        ).first()
    if found is None:
        invoice_id = _open_invoice(ctx, "schedule_invoice", "portal_customer")
        page = ctx.clients["customer"].get(f"/portal/invoices/{invoice_id}/schedule")
        token = fz.hidden_value(page.get_data(as_text=True), "token")
        made = ctx.post("customer", f"/portal/invoices/{invoice_id}/schedule",
                        {**_schedule(ctx), "token": token})  # fmt: skip
        assert made.status_code in (302, 303), made.get_data(as_text=True)[:3000]
        return _scheduled_id(ctx)
    return found


# -- base payloads (each is accepted as it is) ------------------------------------------------


def _invoice(ctx: Ctx) -> dict[str, fz.FieldValue]:
    t = ctx.today()
    return {
        "issue_date": _iso(t), "due_date": _iso(t + timedelta(days=30)), "memo": "Thanks",
        "description": ["Hall rental"], "quantity": ["2"], "unit_price": ["12.50"],
    }  # fmt: skip


def _lines(ctx: Ctx) -> dict[str, fz.FieldValue]:
    return {
        "product": [""], "description": ["Coaching"], "quantity": ["1"],
        "unit_price": ["30.00"], "activation_date": [_iso(ctx.today())], "frequency": ["once"],
    }  # fmt: skip


def _subscription(ctx: Ctx) -> dict[str, fz.FieldValue]:
    return {
        "description": "Club dues", "currency": "USD", "frequency": "monthly",
        "start_date": _iso(ctx.today() + timedelta(days=3)), "charge_day": "",
        "stop_rule": "count", "end_date": "", "stop_count": "6", "amount_mode": "fixed",
        "manual_amount": "15.00", "total_amount": "", "initial_amount": "",
    }  # fmt: skip


def _widget(_ctx: Ctx) -> dict[str, fz.FieldValue]:
    return {
        "title": "Spring raffle", "purpose": "Tickets.", "currency": "", "amount_mode": "fixed",
        "fixed_amount": "25.00", "min_amount": "", "max_amount": "", "accept_card": "on",
        "accept_bank": "", "allow_one_time": "on", "frequencies": ["monthly", "annual"],
        "success_message": "Thanks!",
    }  # fmt: skip


def _schedule(ctx: Ctx) -> dict[str, fz.FieldValue]:
    return {
        "pay_on": _iso(ctx.today() + timedelta(days=5)), "amount": "5.00",
        "payment_method_id": str(ctx.ids["customer_method"]),
    }  # fmt: skip


def _payer(_ctx: Ctx) -> dict[str, fz.FieldValue]:
    return {"name": "Pat Payer", "amount": "1.00", "method": "card", **CARD}


def _wizard(ctx: Ctx, *steps: str) -> None:
    """Walk the billing-on-behalf steps with their base payloads (an example may have left
    the draft without a chosen subscription)."""
    for name in steps:
        target = TARGETS[name]
        done = ctx.post("admin", target.path(ctx), target.base(ctx))
        assert done.status_code in (302, 303), (name, done.get_data(as_text=True)[:3000])


def _none(_ctx: Ctx) -> dict[str, fz.FieldValue]:
    return {}


WIDGET_FIELDS = (
    "title", "purpose", "currency", "amount_mode", "fixed_amount", "min_amount", "max_amount",
    "accept_card", "accept_bank", "allow_one_time", "frequencies", "success_message",
)  # fmt: skip
SUB_FIELDS = (
    "description", "currency", "frequency", "start_date", "charge_day", "stop_rule",
    "end_date", "stop_count", "amount_mode", "manual_amount", "total_amount", "initial_amount",
)  # fmt: skip
INVOICE_FIELDS = ("issue_date", "due_date", "memo", "description", "quantity", "unit_price", "op")
LINE_FIELDS = ("product", "description", "quantity", "unit_price", "activation_date", "frequency")


def _ids(name: str, template: str) -> Callable[[Ctx], str]:
    return lambda ctx: template.format(ctx.ids[name])


def _open(name: str, customer: str, template: str) -> Callable[[Ctx], str]:
    """A path on an open invoice (a fresh one once the last was paid in full)."""
    return lambda ctx: template.format(_open_invoice(ctx, name, customer))


def _const(path: str) -> Callable[[Ctx], str]:
    return lambda _ctx: path


def _page_of(path: Callable[[Ctx], str], suffix: str = "") -> Callable[[Ctx], str]:
    """The page showing the form that posts to ``path`` minus ``suffix``."""
    return lambda ctx: path(ctx).removesuffix(suffix)


TARGETS: dict[str, Target] = {
    # -- public: sign-in and emailed links ----------------------------------------------------
    "auth.login": Target(
        "anon",
        _const("/login"),
        lambda _c: {"email": "nobody@example.org", "password": "wrong-password"},
        ("email", "password"),
        accepts=False,
    ),
    "auth.link_request": Target(
        "anon", _const("/login/link"), lambda _c: {"email": "nobody@example.org"}, ("email",)
    ),
    "auth.password_forgot": Target(
        "anon", _const("/password/forgot"), lambda _c: {"email": "nobody@example.org"}, ("email",)
    ),
    "auth.link_sign_in": Target("anon", _sign_in_link_path, _none, JUNK, examples=5),
    "auth.password_reset": Target(
        "anon",
        _reset_path,
        lambda _c: {
            "password": "a long enough passphrase 1",
            "confirm": "a long enough passphrase 1",
        },
        ("password", "confirm"),
        examples=10,
    ),
    "auth.accept_invite": Target(
        "anon",
        _invite_path,
        lambda _c: {
            "password": "a long enough passphrase 1",
            "confirm": "a long enough passphrase 1",
        },
        ("password", "confirm"),
        examples=10,
    ),
    # -- public: widgets, pay links, approvals ------------------------------------------------
    "components.submit_take_payment": Target(
        "anon",
        _const("/embed/take-payment/harbor-support"),
        lambda _c: {
            "name": "Pat Payer",
            "email": "pat@example.org",
            "amount": "5.00",
            "frequency": "once",
            "method": "card",
            "currency": "USD",
            **CARD,
        },
        ("name", "email", "amount", "frequency", "method", "currency", *CARD_FIELDS, *BANK_FIELDS),
        token_page=_const("/embed/take-payment/harbor-support"),
        token_field="token",
        examples=25,
    ),
    "components.submit_pay_now": Target(
        "anon",
        lambda c: _pay_link_path(c, "/embed/pay-now"),
        _payer,
        ("name", "amount", "method", "saved_method", *CARD_FIELDS, *BANK_FIELDS),
        token_page=lambda c: _pay_link_path(c, "/embed/pay-now"),
        token_field="token",
        examples=20,
        prepare=_partial_payments,
    ),
    "pay.submit": Target(
        "anon",
        lambda c: _pay_link_path(c, "/pay"),
        _payer,
        ("name", "amount", "method", "saved_method", *CARD_FIELDS, *BANK_FIELDS),
        token_page=lambda c: _pay_link_path(c, "/pay"),
        token_field="token",
        examples=20,
        prepare=_partial_payments,
    ),
    "pay.new_link": Target(
        "anon", lambda c: _pay_link_path(c, "/pay") + "/new-link", _none, JUNK, examples=5
    ),
    "approve.submit": Target(
        "anon",
        _approval_path,
        lambda _c: {
            "signer_name": "Nora Quist",
            "signature_kind": "typed",
            "typed_signature": "Nora Quist",
            "sequence": "1",
            **CARD,
        },
        (
            "signer_name",
            "signature_kind",
            "typed_signature",
            "drawn_signature",
            "sequence",
            *CARD_FIELDS,
        ),
        examples=20,
    ),
    "sandbox.create_token": Target(
        "anon",
        _const("/sandbox/tokens"),
        lambda _c: {"method": "card", "name": "Pat Payer", **CARD},
        ("method", "name", *CARD_FIELDS, *BANK_FIELDS),
    ),
    # -- partner: customers, invoices, payments -----------------------------------------------
    "partner.new_invoice": Target(
        "admin",
        _ids("invoice_customer", "/partner/customers/{}/invoices/new"),
        _invoice,
        INVOICE_FIELDS,
        examples=25,
    ),
    "partner.preview_invoice": Target(
        "admin",
        _ids("invoice_customer", "/partner/customers/{}/invoices/preview"),
        _invoice,
        INVOICE_FIELDS,
    ),
    "partner.cancel_invoice": Target(
        "admin", _ids("cancel_invoice", "/partner/invoices/{}/cancel"), _none, JUNK, examples=5
    ),
    "partner.regenerate_pay_link": Target(
        "admin", _ids("pay_invoice", "/partner/invoices/{}/pay-link"), _none, JUNK, examples=5
    ),
    "partner.record_payment": Target(
        "admin",
        _open("pay_invoice", "pay_customer", "/partner/invoices/{}/payments"),
        lambda c: {
            "kind": "check",
            "amount": "1.00",
            "reference": "CHK 1",
            "received_on": _iso(c.today()),
        },
        ("kind", "amount", "reference", "received_on"),
        token_page=_open("pay_invoice", "pay_customer", "/partner/invoices/{}"),
        examples=20,
        prepare=_partial_payments,
    ),
    "partner.resend_invoice": Target(
        "admin",
        _ids("pay_invoice", "/partner/invoices/{}/resend"),
        _none,
        JUNK,
        token_page=_ids("pay_invoice", "/partner/invoices/{}"),
        examples=5,
    ),
    "partner.refund_payment": Target(
        "admin",
        _ids("refund_payment", "/partner/payments/{}/refund"),
        lambda c: {
            "amount": "1.00",
            "note": "Goodwill",
            "reference": "",
            "refunded_on": _iso(c.today()),
        },
        ("amount", "note", "reference", "refunded_on"),
        token_page=_ids("refund_payment", "/partner/payments/{}"),
        examples=20,
    ),
    "partner.resend_payment_receipt": Target(
        "admin",
        _ids("refund_payment", "/partner/payments/{}/resend"),
        _none,
        JUNK,
        token_page=_ids("refund_payment", "/partner/payments/{}"),
        examples=5,
    ),
    # -- partner: subscriptions ----------------------------------------------------------------
    "partner.new_subscription": Target(
        "admin",
        _ids("sub_customer", "/partner/customers/{}/subscriptions/new"),
        _subscription,
        SUB_FIELDS,
        examples=25,
    ),
    "partner.preview_new_subscription": Target(
        "admin",
        _ids("sub_customer", "/partner/customers/{}/subscriptions/preview"),
        _subscription,
        SUB_FIELDS,
    ),
    "partner.edit_subscription": Target(
        "admin",
        _ids("subscription", "/partner/subscriptions/{}"),
        _subscription,
        SUB_FIELDS,
        examples=25,
    ),
    "partner.preview_subscription_changes": Target(
        "admin",
        _ids("subscription", "/partner/subscriptions/{}/preview"),
        _subscription,
        SUB_FIELDS,
    ),
    "partner.charge_subscription_now": Target(
        "admin",
        _ids("subscription", "/partner/subscriptions/{}/charge"),
        lambda _c: {"sequence": "1"},
        ("sequence",),
        examples=8,
    ),
    "partner.skip_next_charge": Target(
        "admin", _ids("subscription", "/partner/subscriptions/{}/skip"), _none, JUNK, examples=5
    ),
    "partner.stop_subscription": Target(
        "admin", _ids("subscription", "/partner/subscriptions/{}/stop"), _none, JUNK, examples=5
    ),
    "partner.resume_subscription": Target(
        "admin", _ids("subscription", "/partner/subscriptions/{}/resume"), _none, JUNK, examples=5
    ),
    "partner.set_subscription_recurring": Target(
        "admin",
        _ids("error_subscription", "/partner/subscriptions/{}/set-recurring"),
        _none,
        JUNK,
        examples=5,
    ),
    # -- partner: billing on behalf ------------------------------------------------------------
    "partner.on_behalf_start": Target(
        "admin",
        _ids("obo_customer", "/partner/customers/{}/on-behalf"),
        lambda c: {"start_date": _iso(_next_month(c)), "billing_email": "billing@example.org"},
        ("start_date", "billing_email"),
    ),
    "partner.on_behalf_choose": Target(
        "admin",
        _ids("obo_customer", "/partner/customers/{}/on-behalf/subscriptions"),
        lambda c: {"wants_changes": "yes", "subscription": [str(c.ids["obo_subscription"])]},
        ("wants_changes", "subscription", "action"),
    ),
    "partner.on_behalf_step": Target(
        "admin",
        _ids("obo_customer", "/partner/customers/{}/on-behalf/subscriptions/1"),
        lambda c: {"start_date": _iso(_next_month(c)), "price": "20.00"},
        ("start_date", "price", "action"),
        prepare=lambda c: _wizard(c, "partner.on_behalf_start", "partner.on_behalf_choose"),
    ),
    "partner.on_behalf_review": Target(
        "admin",
        _ids("obo_customer", "/partner/customers/{}/on-behalf/review"),
        _none,
        ("version",),
        token_page=_ids("obo_customer", "/partner/customers/{}/on-behalf/review"),
        token_field="version",
        examples=10,
        prepare=lambda c: _wizard(
            c, "partner.on_behalf_start", "partner.on_behalf_choose", "partner.on_behalf_step"
        ),
    ),
    "partner.on_behalf_email": Target(
        "admin",
        _ids("obo_customer", "/partner/customers/{}/on-behalf/email"),
        lambda _c: {"billing_email": "accounts@example.org"},
        ("billing_email",),
    ),
    # -- partner: orders -----------------------------------------------------------------------
    "partner.new_order": Target(
        "admin", _ids("order_customer", "/partner/customers/{}/orders/new"), _none, JUNK, examples=5
    ),
    "partner.order_lines": Target(
        "admin",
        lambda c: f"/partner/orders/{_draft_order(c)}/lines",
        _lines,
        (*LINE_FIELDS, "op"),
        examples=25,
    ),
    "partner.order_totals": Target(
        "admin", lambda c: f"/partner/orders/{_draft_order(c)}/totals", _lines, LINE_FIELDS
    ),
    "partner.submit_order": Target(
        "admin",
        lambda c: f"/partner/orders/{_draft_order(c)}/submit",
        lambda _c: {
            "card": "new",
            "holder_name": "Nora Quist",
            "choice": "authorize",
            "sequence": "1",
            **CARD,
        },
        ("card", "holder_name", "choice", "sequence", *CARD_FIELDS),
        examples=20,
    ),
    "partner.capture_order": Target(
        "admin",
        lambda c: f"/partner/orders/{_held_order(c)}/capture",
        lambda _c: {"amount": "1.00"},
        ("amount",),
        examples=15,
    ),
    "partner.void_order": Target(
        "admin", lambda c: f"/partner/orders/{_held_order(c)}/void", _none, JUNK, examples=5
    ),
    "partner.order_to_draft": Target(
        "admin", lambda c: f"/partner/orders/{_held_order(c)}/draft", _none, JUNK, examples=5
    ),
    "partner.send_order_for_approval": Target(
        "admin",
        lambda c: f"/partner/orders/{_draft_order(c)}/send-for-approval",
        _none,
        JUNK,
        examples=5,
    ),
    "partner.cancel_order": Target(
        "admin", lambda c: f"/partner/orders/{_draft_order(c)}/cancel", _none, JUNK, examples=5
    ),
    # -- partner: settings, users, widgets -----------------------------------------------------
    "partner.add_origin": Target(
        "admin",
        _const("/partner/settings/origins"),
        lambda _c: {"origin": "https://club.example.org"},
        ("origin",),
    ),
    "partner.remove_origin": Target(
        "admin",
        _const("/partner/settings/origins/remove"),
        lambda _c: {"origin": "https://club.example.org"},
        ("origin",),
    ),
    "partner.payment_settings": Target(
        "admin",
        _const("/partner/settings/payments"),
        lambda _c: {"allow_partial_payments": "on", "pay_link_days": "30"},
        ("allow_partial_payments", "pay_link_days"),
    ),
    "partner.dunning_policy": Target(
        "admin",
        _const("/partner/settings/dunning"),
        lambda _c: {
            "stages-0-day": "5",
            "stages-0-stage": "reminder",
            "stages-0-recipients": ["customer", "partner"],
            "stages-1-day": "30",
            "stages-1-stage": "warning",
            "stages-1-recipients": ["customer"],
            "stages-2-day": "35",
            "stages-2-stage": "stop",
        },
        (
            "stages-0-day",
            "stages-0-stage",
            "stages-0-recipients",
            "stages-1-day",
            "stages-1-stage",
            "stages-1-recipients",
            "stages-2-day",
            "stages-2-stage",
        ),
    ),
    "partner.reset_dunning": Target(
        "admin", _const("/partner/settings/dunning/reset"), _none, JUNK, examples=5
    ),
    "partner.order_settings": Target(
        "admin",
        _const("/partner/settings/orders"),
        lambda _c: {
            "sales_send_for_approval": "on",
            "sales_collect_payment": "on",
            "approval_link_days": "14",
            "authorization_days": "7",
        },
        (
            "sales_send_for_approval",
            "sales_collect_payment",
            "approval_link_days",
            "authorization_days",
        ),
    ),
    "partner.portal_settings": Target(
        "admin",
        _const("/partner/settings/portal"),
        lambda c: {
            "portal_cancel_allowed": "on",
            "portal_schedule_after_due": "on",
            "offered": [str(c.ids["gift_product"])],
            "payer_sets_amount": [str(c.ids["gift_product"])],
        },
        ("portal_cancel_allowed", "portal_schedule_after_due", "offered", "payer_sets_amount"),
    ),
    "partner.receipt_settings": Target(
        "admin",
        _const("/partner/settings/receipts"),
        lambda _c: {"receipt_wording": "No goods were given."},
        ("receipt_wording",),
    ),
    "partner.invite": Target(
        "admin",
        _const("/partner/users/invite"),
        lambda _c: {"name": "Sam Seller", "email": "sam@example.org", "role": "partner_sales"},
        ("name", "email", "role"),
    ),
    "partner.resend_invite": Target(
        "admin", _ids("invitee", "/partner/users/{}/resend"), _none, JUNK, examples=5
    ),
    "partner.deactivate_user": Target(
        "admin", _ids("invitee", "/partner/users/{}/deactivate"), _none, JUNK, examples=5
    ),
    "partner.reactivate_user": Target(
        "admin", _ids("invitee", "/partner/users/{}/reactivate"), _none, JUNK, examples=5
    ),
    "partner.new_widget": Target(
        "admin", _const("/partner/widgets/new"), _widget, WIDGET_FIELDS, examples=25
    ),
    "partner.preview_new_widget": Target(
        "admin", _const("/partner/widgets/preview"), _widget, WIDGET_FIELDS
    ),
    "partner.edit_widget": Target(
        "admin", _ids("widget", "/partner/widgets/{}"), _widget, WIDGET_FIELDS
    ),
    "partner.preview_widget_changes": Target(
        "admin", _ids("widget", "/partner/widgets/{}/preview"), _widget, WIDGET_FIELDS
    ),
    "partner.widget_active": Target(
        "admin",
        _ids("widget", "/partner/widgets/{}/active"),
        lambda _c: {"active": "1", "back": "edit"},
        ("active", "back"),
        examples=8,
    ),
    # -- the customer portal -------------------------------------------------------------------
    "portal.submit_payment": Target(
        "customer",
        _open("portal_invoice", "portal_customer", "/portal/invoices/{}/pay"),
        lambda c: {
            "saved_method": str(c.ids["customer_method"]),
            "amount": "1.00",
            "name": "Jordan Rivera",
            "method": "card",
        },
        ("saved_method", "amount", "name", "method", *CARD_FIELDS, *BANK_FIELDS),
        token_page=_open("portal_invoice", "portal_customer", "/portal/invoices/{}/pay"),
        token_field="token",
        examples=20,
        prepare=_partial_payments,
    ),
    "portal.create_scheduled_payment": Target(
        "customer",
        _schedulable,
        _schedule,
        ("pay_on", "amount", "payment_method_id"),
        token_page=_schedulable,
        token_field="token",
        examples=20,
    ),
    "portal.cancel_scheduled_payment": Target(
        "customer",
        lambda c: f"/portal/scheduled-payments/{_scheduled_id(c)}/cancel",
        _none,
        JUNK,
        examples=5,
    ),
    "portal.email_invoice": Target(
        "customer",
        _ids("portal_invoice", "/portal/invoices/{}/email"),
        _none,
        JUNK,
        token_page=_ids("portal_invoice", "/portal/invoices/{}"),
        examples=5,
    ),
    "portal.email_receipt": Target(
        "customer",
        _ids("portal_payment", "/portal/payments/{}/email"),
        _none,
        JUNK,
        token_page=_ids("portal_payment", "/portal/payments/{}"),
        examples=5,
    ),
    "portal.add_method": Target(
        "customer",
        _const("/portal/payment-methods"),
        lambda _c: {"name": "Jordan Rivera", "method": "card", "make_default": "", **CARD},
        ("name", "method", "make_default", *CARD_FIELDS, *BANK_FIELDS),
        examples=20,
    ),
    "portal.make_default_method": Target(
        "customer",
        lambda c: f"/portal/payment-methods/{_latest_method(c)}/default",
        _none,
        JUNK,
        examples=5,
    ),
    "portal.remove_method": Target(
        "customer",
        lambda c: f"/portal/payment-methods/{_latest_method(c)}/remove",
        _none,
        JUNK,
        examples=3,
    ),
    "portal.update_payment_method": Target(
        "customer",
        _ids("customer_subscription", "/portal/subscriptions/{}/payment-method"),
        lambda _c: {"name": "Jordan Rivera", **CARD},
        ("name", "back", *CARD_FIELDS),
    ),
    "portal.retry_subscription": Target(
        "customer",
        _ids("customer_subscription", "/portal/subscriptions/{}/retry"),
        lambda _c: {"back": "methods"},
        ("back", *JUNK),
        examples=5,
    ),
    "portal.cancel_subscription": Target(
        "customer",
        _ids("customer_subscription", "/portal/subscriptions/{}/cancel"),
        _none,
        JUNK,
        examples=5,
    ),
    "portal.join": Target(
        "customer",
        _ids("gift_product", "/portal/catalog/{}"),
        lambda c: {
            "amount": "10.00",
            "frequency": "monthly",
            "saved_method": str(c.ids["customer_method"]),
            "name": "Jordan Rivera",
        },
        ("amount", "frequency", "saved_method", "name", *CARD_FIELDS),
        token_page=_ids("gift_product", "/portal/catalog/{}"),
        token_field="token",
        examples=20,
    ),
    # -- operators ---------------------------------------------------------------------------
    "operator.outbox_send_again": Target(
        "operator",
        _ids("outbox_message", "/operator/outbox/{}/send-again"),
        _none,
        JUNK,
        examples=5,
    ),
}


# -- the module's app, data and clients -------------------------------------------------------


def _seed_ids(ctx: Ctx) -> None:
    from app.models import Invoice, Payment, Product, Subscription, Widget

    with ctx.db() as db:

        def account(email: str) -> int:
            found = db.exec(select(CustomerAccount.id).where(CustomerAccount.email == email))
            return found.one()  # type: ignore[return-value]

        jordan = account("customer@example.com")
        makers = account("makers@example.com")
        soccer = account("treasurer@riverside-soccer.example")
        library = account("friends@oakhill-library.example")
        yoga = account("hello@sunrise-yoga.example")
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

        def subscription(account_id: int, status: str = "") -> int:
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
        refund_payment=card_payment, subscription=subscription(yoga) or subscription(scouts),
        error_subscription=subscription(soccer, "error"),
        customer_subscription=subscription(jordan),
        obo_subscription=subscription(library), gift_product=gift, widget=widget,
        customer_method=method, outbox_message=message,
    )  # fmt: skip
    ctx.ids["subscription"] = subscription(scouts)
    ctx.ids["cancel_invoice"] = _issue_invoice(ctx, scouts)
    invited = ctx.post("admin", "/partner/users/invite",
                       {"name": "Ira Invitee", "email": "ira@us-partner.example",
                        "role": "partner_sales"})  # fmt: skip
    assert invited.status_code in (302, 303)
    ctx.ids["invitee"] = _user_id(ctx, "ira@us-partner.example")
    # The wizard's draft: a start date and one chosen subscription (what step 3 and the
    # review need); the on_behalf rows then spoil each step in turn.
    _wizard(ctx, "partner.on_behalf_start", "partner.on_behalf_choose")
    if message is None:
        with ctx.db() as db:
            ctx.ids["outbox_message"] = db.exec(select(OutboxMessage.id)).first()


@pytest.fixture(scope="module")
def ctx(engine: Engine, settings: Any) -> Iterator[Ctx]:
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
    _seed_ids(context)  # outside an app context: each request must get its own ``g``
    yield context
    _empty_all_tables(engine)
    resources.redis.flushdb()


# -- the tests --------------------------------------------------------------------------------


def test_does_every_post_endpoint_have_a_fuzz_row(ctx: Ctx) -> None:
    posts = {
        rule.endpoint for rule in ctx.app.url_map.iter_rules() if "POST" in (rule.methods or set())
    }
    missing = sorted(posts - set(TARGETS) - set(EXEMPT))
    assert not missing, f"POST endpoints with no hostile-input row: {missing}"
    stale = sorted(set(TARGETS) - posts)
    assert not stale, f"rows for endpoints that no longer exist: {stale}"


def _fresh_token(ctx: Ctx, target: Target, path: str) -> dict[str, str]:
    if target.token_page is None:
        return {}
    page = ctx.clients[target.actor].get(target.token_page(ctx))
    if page.status_code != 200:  # no form any more (the review was confirmed): post none
        return {}
    return {target.token_field: fz.hidden_value(page.get_data(as_text=True), target.token_field,
                                                action=path)}  # fmt: skip


def _check(ctx: Ctx, name: str, target: Target, changes: dict[str, object]) -> None:
    path = target.path(ctx)
    data = fz.apply_changes(target.base(ctx), changes)
    data.update(_fresh_token(ctx, target, path))
    before = fz.fingerprint(ctx.engine)
    response = ctx.post(target.actor, path, data)
    body = response.get_data(as_text=True)
    status = response.status_code
    shown = {k: (v[:60] + "…" if isinstance(v, str) and len(v) > 60 else v)
             for k, v in changes.items()}  # fmt: skip
    assert status < 500, f"{name}: {status} for {shown!r}\n{body[:2000]}"
    if status >= 400 and status != 402:  # 402: a processed decline records its attempt
        changed = fz.changed_tables(before, fz.fingerprint(ctx.engine))
        assert not changed, f"{name}: refused ({status}) but changed {changed} for {shown!r}"
    if status == 422:
        named = fz.fields_named_in_errors(body, response.content_type or "")
        assert fz.names_a_field(named, target.fields), (
            f"{name}: 422 names no field of {target.fields} (errors at {sorted(named)}) "
            f"for {shown!r}"
        )
    if "html" in (response.content_type or ""):
        raw = fz.unescaped_markup(body, data)
        assert not raw, f"{name}: unescaped markup {raw} in the answer"


@pytest.mark.parametrize("name", list(TARGETS))
def test_does_the_endpoint_survive_hostile_input(ctx: Ctx, name: str) -> None:
    target = TARGETS[name]
    if target.prepare is not None:
        target.prepare(ctx)
    path = target.path(ctx)
    baseline = ctx.post(target.actor, path, {**target.base(ctx), **_fresh_token(ctx, target, path)})
    body = baseline.get_data(as_text=True)
    assert baseline.status_code < 500, body[:3000]
    if target.accepts and target.fields != JUNK:  # the base payload is valid as it is
        errors = re.findall(r'class="error"[^>]*>([^<]*)', body)
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))
        assert baseline.status_code < 400, (name, baseline.status_code, errors or text[-800:])
    # Every field at once: a NUL (PostgreSQL refuses it in text), then 10,000 characters.
    for value in ("a\x00b", fz.LONG[0]):
        _check(ctx, name, target, dict.fromkeys(target.fields, value))

    @settings(
        max_examples=target.examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(changes=fz.hostile_changes(target.fields))
    def run(changes: dict[str, object]) -> None:
        _check(ctx, name, target, changes)

    run()


@pytest.mark.parametrize(
    "path", ["/operator/outbox?q=a%00b", "/operator/outbox?status=%00", "/operator/runs?x=%00"]
)
def test_is_a_nul_in_a_query_refused_with_its_name(ctx: Ctx, path: str) -> None:
    before = fz.fingerprint(ctx.engine)
    response = ctx.clients["operator"].get(path)
    assert response.status_code == 422
    assert fz.names_a_field(fz.fields_named_in_errors(response.get_data(as_text=True), ""),
                            ("q", "status", "x"))  # fmt: skip
    assert not fz.changed_tables(before, fz.fingerprint(ctx.engine))


def test_does_a_stale_capture_form_say_why_it_is_refused(ctx: Ctx) -> None:
    """A capture posted after the hold was voided: the page no longer has the capture form,
    so a bad amount must not be the answer (it would show nowhere): the state is."""
    order_id = _held_order(ctx)
    assert ctx.post("admin", f"/partner/orders/{order_id}/void", {}).status_code in (302, 303)
    before = fz.fingerprint(ctx.engine)
    response = ctx.post("admin", f"/partner/orders/{order_id}/capture", {"amount": "²"})
    assert response.status_code == 409
    assert "Only an authorized order can be captured" in response.get_data(as_text=True)
    assert not fz.changed_tables(before, fz.fingerprint(ctx.engine))
