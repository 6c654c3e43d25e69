"""A data set in which every GET route of the app has something real to show.

The demo seed (``seed_demo``) plus what it lacks, made through Portico's own services:
an order waiting for approval and one approved with a signature, a billing run, a pay
link, an invitation, emailed sign-in and reset links, and billing-on-behalf drafts.
``World.value`` fills a route's URL variables from it; a variable it does not know fails
loudly, so a route added later is either filled here or named in the failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import Flask
from sqlmodel import Session, col, select

from app.clock import local_today
from app.extensions import gateway, session_scope
from app.models import (
    CustomerAccount,
    Invoice,
    OutboxMessage,
    Partner,
    Payment,
    Product,
    Subscription,
    User,
    Widget,
)
from app.services import on_behalf, pay_links
from app.services.billing_run import start_run
from app.services.demo import seed_demo
from app.services.demo_data import DEMO_WIDGET_KEY
from app.services.invitations import LinkSettings, invite_token
from app.services.partner_users import InviteInput, invite_user
from app.services.sign_in_links import request_password_reset, request_sign_in_link
from tests.services.approval_helpers import approve, emailed_token, png_data_url, send
from tests.services.order_helpers import make_order, new_card

OPERATOR = "operator@example.com"
PARTNER_ADMIN = "admin@us-partner.example"
CUSTOMER = "customer@example.com"
_LINK = re.compile(r"http://localhost(/\S+)")
_VARIABLE = re.compile(r"<(?:[^:<>]+:)?(\w+)>")


@dataclass
class World:
    """Ids and tokens of the seeded records, by the URL variable they fill."""

    ids: dict[str, int] = field(default_factory=dict)
    overrides: dict[tuple[str, str], int] = field(default_factory=dict)  # (endpoint, name)
    tokens: dict[str, str] = field(default_factory=dict)  # endpoint -> token
    widget_key: str = DEMO_WIDGET_KEY
    embed_origins: list[str] = field(default_factory=list)

    def path(self, endpoint: str, rule: str) -> str:
        """``rule`` with its variables filled. Raises KeyError naming an unknown variable."""
        return _VARIABLE.sub(lambda m: self.value(endpoint, m.group(1)), rule)

    def value(self, endpoint: str, name: str) -> str:
        """The value of URL variable ``name`` for ``endpoint``. Raises KeyError if unknown."""
        if name == "token":
            return self.tokens[endpoint]
        if name == "widget_key":
            return self.widget_key
        if name == "filename":
            return "css/portico.css"
        return str(self.overrides.get((endpoint, name), self.ids[name]))


def _one(db: Session, query):  # noqa: ANN001, ANN202
    row = db.exec(query).first()
    assert row is not None, str(query)
    return row


def _emailed_path(db: Session, kind: str, to: str) -> str:
    message = _one(
        db,
        select(OutboxMessage)
        .where(OutboxMessage.kind == kind, OutboxMessage.to_address == to)
        .order_by(col(OutboxMessage.id).desc()),
    )
    match = _LINK.search(message.text_body)
    assert match, message.text_body
    return match.group(1)


def build_world(app: Flask) -> World:
    """Seed the demo and the extras described above; returns what the routes need."""
    settings = app.config["PORTICO"]
    now = datetime.now(UTC)
    world = World()
    with app.app_context(), session_scope() as db:
        seed_demo(db, gateway())
        partner = _one(db, select(Partner).where(Partner.slug == "us-partner"))
        admin = _one(db, select(User).where(User.email == PARTNER_ADMIN))
        operator = _one(db, select(User).where(User.email == OPERATOR))
        jordan = _one(db, select(CustomerAccount).where(CustomerAccount.email == CUSTOMER))
        today = local_today(partner.timezone)
        world.embed_origins = list(partner.allowed_origins)
        open_invoice = _one(
            db,
            select(Invoice)
            .where(
                Invoice.customer_account_id == jordan.id,
                col(Invoice.status).in_(("created", "overdue")),
            )
            .order_by(col(Invoice.id)),
        )
        payment = _one(
            db,
            select(Payment).where(
                Payment.customer_account_id == jordan.id, Payment.status == "approved"
            ),
        )
        subscription = _one(
            db,
            select(Subscription)
            .where(
                Subscription.customer_account_id == jordan.id, Subscription.status == "recurring"
            )
            .order_by(col(Subscription.id)),
        )
        product = _one(db, select(Product).where(Product.partner_id == partner.id))
        widget = _one(db, select(Widget).where(Widget.key == DEMO_WIDGET_KEY))
        assert widget.partner_id == partner.id

        # Orders: one approved with a drawn signature, one waiting for approval.
        signed = make_order(db, jordan, [("Support plan", 1, 2500, "monthly", today)], by=admin)
        token = emailed_token(db, send(app, db, admin, signed, now=now)[0])
        approve(app, db, token, card=new_card(app), kind="drawn", signature=png_data_url(), now=now)
        waiting = make_order(db, jordan, [("Setup", 1, 1000, "once", today)], by=admin)
        world.tokens["approve.page"] = emailed_token(db, send(app, db, admin, waiting, now=now)[0])

        link = pay_links.issue_link(
            db, invoice=open_invoice, partner=partner, now=now, user_id=None
        )
        world.tokens["pay.pay"] = world.tokens["components.pay_now"] = pay_links.token_for(
            settings.secret_key, link
        )
        links = LinkSettings(secret_key=settings.secret_key, base_url=settings.base_url)
        invited = invite_user(
            db, admin, InviteInput(name="Robin Invitee", email="robin@us-partner.example"),
            links=links, now=now,
        )  # fmt: skip
        world.tokens["auth.accept_invite"] = invite_token(
            settings.secret_key, invited.user, now=now
        )
        request_sign_in_link(db, email=CUSTOMER, base_url=settings.base_url, now=now)
        request_password_reset(db, email=PARTNER_ADMIN, base_url=settings.base_url, now=now)
        world.tokens["auth.link_sign_in"] = _emailed_path(db, "sign_in_link", CUSTOMER).rsplit(
            "/", 1
        )[1]
        world.tokens["auth.password_reset"] = _emailed_path(
            db, "password_reset", PARTNER_ADMIN
        ).rsplit("/", 1)[1]

        run = start_run(db, partner_id=partner.id, run_date=today).run
        billed_on_behalf = _on_behalf_drafts(
            db, admin, jordan, subscription, partner, today, now, settings
        )
        for endpoint in ("partner.on_behalf_done", "partner.on_behalf_email"):
            world.overrides[(endpoint, "customer_id")] = billed_on_behalf

        world.ids = {
            "customer_id": jordan.id,
            "invoice_id": open_invoice.id,
            "payment_id": payment.id,
            "subscription_id": subscription.id,
            "order_id": signed.id,
            "product_id": product.id,
            "widget_id": widget.id,
            "message_id": _one(db, select(OutboxMessage.id)),
            "run_id": run.id,
            "n": 1,
        }
        assert operator.id is not None
    return world


def _on_behalf_drafts(db, admin, jordan, subscription, partner, today, now, settings) -> int:  # noqa: ANN001
    """Jordan's draft reaches the review step; another account (its id returned) is
    billed on behalf."""
    countries = settings.billing_on_behalf_countries
    _account, draft = on_behalf.open_wizard(db, admin, jordan.id, countries=countries)
    start = on_behalf.earliest_start(today).isoformat()
    on_behalf.save_start(db, draft, start_text=start, email_text=jordan.email, as_of=today)
    on_behalf.save_choice(db, draft, wants_changes=True, chosen=[subscription.id])
    on_behalf.save_step(db, draft, 1, start_text=start, price_text="25.00", as_of=today)
    other = _one(
        db,
        select(CustomerAccount).where(
            CustomerAccount.partner_id == partner.id, CustomerAccount.id != jordan.id
        ),
    )
    _account, draft = on_behalf.open_wizard(db, admin, other.id, countries=countries)
    on_behalf.save_start(db, draft, start_text=start, email_text=other.email, as_of=today)
    on_behalf.save_choice(db, draft, wants_changes=False, chosen=[])
    on_behalf.confirm(db, admin, draft, version=draft.version, as_of=today, now=now)
    return other.id
