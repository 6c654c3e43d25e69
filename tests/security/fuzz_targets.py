"""The hostile-input suite's table: one row per POST endpoint (who posts it, its URL, a
valid base payload, the fields to spoil), and the endpoints deliberately left out.

Read by ``test_hostile_input.py``; a POST endpoint in ``app.url_map`` with no row here
(and not in ``EXEMPT``) fails that suite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.security import fuzz_support as fz
from tests.security import fuzz_world as w

# POST endpoints deliberately left out, and why.
EXEMPT = {
    "auth.logout": "takes no input; sign-out is covered by the session tests",
    "webhooks.receive": "signature-checked JSON; its own tests send bad bodies and signatures",
}


@dataclass(frozen=True)
class Target:
    actor: str  # "anon" or a key of w.ACTORS
    path: Callable[[w.Ctx], str]  # called for every example (may make a fresh link)
    base: Callable[[w.Ctx], dict[str, fz.FieldValue]]
    fields: tuple[str, ...]
    token_page: Callable[[w.Ctx], str] | None = None  # renders the form's single-use token
    token_field: str = "form_token"
    examples: int = 15
    prepare: Callable[[w.Ctx], None] | None = None  # once, before the examples
    accepts: bool = True  # the base payload goes through (login's wrong password does not)


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


def _ids(name: str, template: str) -> Callable[[w.Ctx], str]:
    return lambda ctx: template.format(ctx.ids[name])


def _open(name: str, customer: str, template: str) -> Callable[[w.Ctx], str]:
    """A path on an open invoice (a fresh one once the last was paid in full)."""
    return lambda ctx: template.format(w.open_invoice(ctx, name, customer))


def _const(path: str) -> Callable[[w.Ctx], str]:
    return lambda _ctx: path


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
    "auth.link_sign_in": Target("anon", w.sign_in_link_path, w.none, w.JUNK, examples=5),
    "auth.password_reset": Target(
        "anon",
        w.reset_path,
        lambda _c: {
            "password": "a long enough passphrase 1",
            "confirm": "a long enough passphrase 1",
        },
        ("password", "confirm"),
        examples=10,
    ),
    # The right current password throughout: a wrong one is a counted failed sign-in (a
    # write by design, tests/web/test_change_password.py), which this suite would flag.
    "auth.change_password_page": Target(
        "customer",
        _const("/account/password"),
        lambda _c: {"current": "portico-demo", "password": "short", "confirm": "short"},
        ("password", "confirm"),
        accepts=False,
        examples=10,
    ),
    "auth.accept_invite": Target(
        "anon",
        w.invite_path,
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
            **w.CARD,
        },
        (
            "name",
            "email",
            "amount",
            "frequency",
            "method",
            "currency",
            *w.CARD_FIELDS,
            *w.BANK_FIELDS,
        ),
        token_page=_const("/embed/take-payment/harbor-support"),
        token_field="token",
        examples=25,
    ),
    "components.submit_pay_now": Target(
        "anon",
        lambda c: w.pay_link_path(c, "/embed/pay-now"),
        w.payer_base,
        ("name", "amount", "method", "saved_method", *w.CARD_FIELDS, *w.BANK_FIELDS),
        token_page=lambda c: w.pay_link_path(c, "/embed/pay-now"),
        token_field="token",
        examples=20,
        prepare=w.partial_payments,
    ),
    "pay.submit": Target(
        "anon",
        lambda c: w.pay_link_path(c, "/pay"),
        w.payer_base,
        ("name", "amount", "method", "saved_method", *w.CARD_FIELDS, *w.BANK_FIELDS),
        token_page=lambda c: w.pay_link_path(c, "/pay"),
        token_field="token",
        examples=20,
        prepare=w.partial_payments,
    ),
    "pay.new_link": Target(
        "anon", lambda c: w.pay_link_path(c, "/pay") + "/new-link", w.none, w.JUNK, examples=5
    ),
    "approve.submit": Target(
        "anon",
        w.approval_path,
        lambda _c: {
            "signer_name": "Nora Quist",
            "signature_kind": "typed",
            "typed_signature": "Nora Quist",
            "sequence": "1",
            **w.CARD,
        },
        (
            "signer_name",
            "signature_kind",
            "typed_signature",
            "drawn_signature",
            "sequence",
            *w.CARD_FIELDS,
        ),
        examples=20,
    ),
    "sandbox.create_token": Target(
        "anon",
        _const("/sandbox/tokens"),
        lambda _c: {"method": "card", "name": "Pat Payer", **w.CARD},
        ("method", "name", *w.CARD_FIELDS, *w.BANK_FIELDS),
    ),
    # -- partner: customers, invoices, payments -----------------------------------------------
    "partner.new_invoice": Target(
        "admin",
        _ids("invoice_customer", "/partner/customers/{}/invoices/new"),
        w.invoice_base,
        INVOICE_FIELDS,
        examples=25,
    ),
    "partner.preview_invoice": Target(
        "admin",
        _ids("invoice_customer", "/partner/customers/{}/invoices/preview"),
        w.invoice_base,
        INVOICE_FIELDS,
    ),
    "partner.cancel_invoice": Target(
        "admin", _ids("cancel_invoice", "/partner/invoices/{}/cancel"), w.none, w.JUNK, examples=5
    ),
    "partner.regenerate_pay_link": Target(
        "admin", _ids("pay_invoice", "/partner/invoices/{}/pay-link"), w.none, w.JUNK, examples=5
    ),
    "partner.record_payment": Target(
        "admin",
        _open("pay_invoice", "pay_customer", "/partner/invoices/{}/payments"),
        lambda c: {
            "kind": "check",
            "amount": "1.00",
            "reference": "CHK 1",
            "received_on": w.iso(c.today()),
        },
        ("kind", "amount", "reference", "received_on"),
        token_page=_open("pay_invoice", "pay_customer", "/partner/invoices/{}"),
        examples=20,
        prepare=w.partial_payments,
    ),
    "partner.resend_invoice": Target(
        "admin",
        _ids("pay_invoice", "/partner/invoices/{}/resend"),
        w.none,
        w.JUNK,
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
            "refunded_on": w.iso(c.today()),
        },
        ("amount", "note", "reference", "refunded_on"),
        token_page=_ids("refund_payment", "/partner/payments/{}"),
        examples=20,
    ),
    "partner.resend_payment_receipt": Target(
        "admin",
        _ids("refund_payment", "/partner/payments/{}/resend"),
        w.none,
        w.JUNK,
        token_page=_ids("refund_payment", "/partner/payments/{}"),
        examples=5,
    ),
    # -- partner: subscriptions ----------------------------------------------------------------
    "partner.new_subscription": Target(
        "admin",
        _ids("sub_customer", "/partner/customers/{}/subscriptions/new"),
        w.subscription_base,
        SUB_FIELDS,
        examples=25,
    ),
    "partner.preview_new_subscription": Target(
        "admin",
        _ids("sub_customer", "/partner/customers/{}/subscriptions/preview"),
        w.subscription_base,
        SUB_FIELDS,
    ),
    "partner.edit_subscription": Target(
        "admin",
        _ids("subscription", "/partner/subscriptions/{}"),
        w.subscription_base,
        SUB_FIELDS,
        examples=25,
    ),
    "partner.preview_subscription_changes": Target(
        "admin",
        _ids("subscription", "/partner/subscriptions/{}/preview"),
        w.subscription_base,
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
        "admin", _ids("subscription", "/partner/subscriptions/{}/skip"), w.none, w.JUNK, examples=5
    ),
    "partner.stop_subscription": Target(
        "admin", _ids("subscription", "/partner/subscriptions/{}/stop"), w.none, w.JUNK, examples=5
    ),
    "partner.resume_subscription": Target(
        "admin",
        _ids("subscription", "/partner/subscriptions/{}/resume"),
        w.none,
        w.JUNK,
        examples=5,
    ),
    "partner.set_subscription_recurring": Target(
        "admin",
        _ids("error_subscription", "/partner/subscriptions/{}/set-recurring"),
        w.none,
        w.JUNK,
        examples=5,
    ),
    # -- partner: billing on behalf ------------------------------------------------------------
    "partner.on_behalf_start": Target(
        "admin",
        _ids("obo_customer", "/partner/customers/{}/on-behalf"),
        w.obo_start,
        ("start_date", "billing_email"),
    ),
    "partner.on_behalf_choose": Target(
        "admin",
        _ids("obo_customer", "/partner/customers/{}/on-behalf/subscriptions"),
        w.obo_choose,
        ("wants_changes", "subscription", "action"),
    ),
    "partner.on_behalf_step": Target(
        "admin",
        _ids("obo_customer", "/partner/customers/{}/on-behalf/subscriptions/1"),
        w.obo_step,
        ("start_date", "price", "action"),
        prepare=lambda c: w.wizard(c, 2),
    ),
    "partner.on_behalf_review": Target(
        "admin",
        _ids("obo_customer", "/partner/customers/{}/on-behalf/review"),
        w.none,
        ("version",),
        token_page=_ids("obo_customer", "/partner/customers/{}/on-behalf/review"),
        token_field="version",
        examples=10,
        prepare=lambda c: w.wizard(c, 3),
    ),
    "partner.on_behalf_email": Target(
        "admin",
        _ids("obo_customer", "/partner/customers/{}/on-behalf/email"),
        lambda _c: {"billing_email": "accounts@example.org"},
        ("billing_email",),
    ),
    # -- partner: orders -----------------------------------------------------------------------
    "partner.new_order": Target(
        "admin",
        _ids("order_customer", "/partner/customers/{}/orders/new"),
        w.none,
        w.JUNK,
        examples=5,
    ),
    "partner.order_lines": Target(
        "admin",
        lambda c: f"/partner/orders/{w.draft_order(c)}/lines",
        w.lines_base,
        (*LINE_FIELDS, "op"),
        examples=25,
    ),
    "partner.order_totals": Target(
        "admin", lambda c: f"/partner/orders/{w.draft_order(c)}/totals", w.lines_base, LINE_FIELDS
    ),
    "partner.submit_order": Target(
        "admin",
        lambda c: f"/partner/orders/{w.draft_order(c)}/submit",
        lambda _c: {
            "card": "new",
            "holder_name": "Nora Quist",
            "choice": "authorize",
            "sequence": "1",
            **w.CARD,
        },
        ("card", "holder_name", "choice", "sequence", *w.CARD_FIELDS),
        examples=20,
    ),
    "partner.capture_order": Target(
        "admin",
        lambda c: f"/partner/orders/{w.held_order(c)}/capture",
        lambda _c: {"amount": "1.00"},
        ("amount",),
        examples=15,
    ),
    "partner.void_order": Target(
        "admin", lambda c: f"/partner/orders/{w.held_order(c)}/void", w.none, w.JUNK, examples=5
    ),
    "partner.order_to_draft": Target(
        "admin", lambda c: f"/partner/orders/{w.held_order(c)}/draft", w.none, w.JUNK, examples=5
    ),
    "partner.send_order_for_approval": Target(
        "admin",
        lambda c: f"/partner/orders/{w.draft_order(c)}/send-for-approval",
        w.none,
        w.JUNK,
        examples=5,
    ),
    "partner.cancel_order": Target(
        "admin", lambda c: f"/partner/orders/{w.draft_order(c)}/cancel", w.none, w.JUNK, examples=5
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
        "admin", _const("/partner/settings/dunning/reset"), w.none, w.JUNK, examples=5
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
        "admin", _ids("invitee", "/partner/users/{}/resend"), w.none, w.JUNK, examples=5
    ),
    "partner.deactivate_user": Target(
        "admin", _ids("invitee", "/partner/users/{}/deactivate"), w.none, w.JUNK, examples=5
    ),
    "partner.reactivate_user": Target(
        "admin", _ids("invitee", "/partner/users/{}/reactivate"), w.none, w.JUNK, examples=5
    ),
    "partner.new_widget": Target(
        "admin", _const("/partner/widgets/new"), w.widget_base, WIDGET_FIELDS, examples=25
    ),
    "partner.preview_new_widget": Target(
        "admin", _const("/partner/widgets/preview"), w.widget_base, WIDGET_FIELDS
    ),
    "partner.edit_widget": Target(
        "admin", _ids("widget", "/partner/widgets/{}"), w.widget_base, WIDGET_FIELDS
    ),
    "partner.preview_widget_changes": Target(
        "admin", _ids("widget", "/partner/widgets/{}/preview"), w.widget_base, WIDGET_FIELDS
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
        ("saved_method", "amount", "name", "method", *w.CARD_FIELDS, *w.BANK_FIELDS),
        token_page=_open("portal_invoice", "portal_customer", "/portal/invoices/{}/pay"),
        token_field="token",
        examples=20,
        prepare=w.partial_payments,
    ),
    "portal.create_scheduled_payment": Target(
        "customer",
        w.schedulable,
        w.schedule_base,
        ("pay_on", "amount", "payment_method_id"),
        token_page=w.schedulable,
        token_field="token",
        examples=20,
    ),
    "portal.cancel_scheduled_payment": Target(
        "customer",
        lambda c: f"/portal/scheduled-payments/{w.scheduled_id(c)}/cancel",
        w.none,
        w.JUNK,
        examples=5,
    ),
    "portal.email_invoice": Target(
        "customer",
        _ids("portal_invoice", "/portal/invoices/{}/email"),
        w.none,
        w.JUNK,
        token_page=_ids("portal_invoice", "/portal/invoices/{}"),
        examples=5,
    ),
    "portal.email_receipt": Target(
        "customer",
        _ids("portal_payment", "/portal/payments/{}/email"),
        w.none,
        w.JUNK,
        token_page=_ids("portal_payment", "/portal/payments/{}"),
        examples=5,
    ),
    "portal.add_method": Target(
        "customer",
        _const("/portal/payment-methods"),
        lambda _c: {"name": "Jordan Rivera", "method": "card", "make_default": "", **w.CARD},
        ("name", "method", "make_default", *w.CARD_FIELDS, *w.BANK_FIELDS),
        examples=20,
    ),
    "portal.make_default_method": Target(
        "customer",
        lambda c: f"/portal/payment-methods/{w.latest_method(c)}/default",
        w.none,
        w.JUNK,
        examples=5,
    ),
    "portal.remove_method": Target(
        "customer",
        lambda c: f"/portal/payment-methods/{w.latest_method(c)}/remove",
        w.none,
        w.JUNK,
        examples=3,
    ),
    "portal.update_payment_method": Target(
        "customer",
        _ids("customer_subscription", "/portal/subscriptions/{}/payment-method"),
        lambda _c: {"name": "Jordan Rivera", **w.CARD},
        ("name", "back", *w.CARD_FIELDS),
    ),
    "portal.retry_subscription": Target(
        "customer",
        _ids("customer_subscription", "/portal/subscriptions/{}/retry"),
        lambda _c: {"back": "methods"},
        ("back", *w.JUNK),
        examples=5,
    ),
    "portal.cancel_subscription": Target(
        "customer",
        _ids("customer_subscription", "/portal/subscriptions/{}/cancel"),
        w.none,
        w.JUNK,
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
        ("amount", "frequency", "saved_method", "name", *w.CARD_FIELDS),
        token_page=_ids("gift_product", "/portal/catalog/{}"),
        token_field="token",
        examples=20,
    ),
    # -- operators ---------------------------------------------------------------------------
    "operator.outbox_send_again": Target(
        "operator",
        _ids("outbox_message", "/operator/outbox/{}/send-again"),
        w.none,
        w.JUNK,
        examples=5,
    ),
}
