"""What every route may answer to an actor aiming at another tenant's records.

One row per endpoint of ``app.url_map`` (``EXPECTATIONS``); ``test_tenant_matrix`` fails
for a route without a row, so adding a route means deciding here who may see what. The
row's ``area`` gives each actor a verdict:

- ``refuse``: 302 to the login page (anonymous only), 403 or 404; never a foreign canary.
  Every partner, portal and operator route with a record id in its URL, for everybody
  but the operator on the operator's own console.
- ``own``: a partner or portal route without a record id (a list, a settings form, a new
  record's form), requested by a member of that area: any answer below 500, but never a
  canary of another tenant (or, for a customer, of another customer of the partner). A
  partner sales user's 403 on an admin-only page counts as an answer.
- ``token``: a public route whose credential is the token or widget key in the URL: an
  emailed pay link, approval link, invitation, sign-in or reset link, an embedded widget.
  A genuine token of another tenant shows that token's own record to whoever opens it,
  signed in as anybody (by design: the link or the widget on a page is the credential),
  and nothing else of its tenant; a POST with an empty form is refused as invalid. Opening
  a sign-in link with a POST signs the browser in as the link's user, also by design. A
  tampered token is refused (400, 404 or 410).
- ``operator``: the operator's console reads every tenant by design (a customer account
  to follow up a failed charge, any email in the outbox, any billing run, the audit log),
  so the operator's GETs answer 200 and their bodies are not scanned; every other actor
  is refused there. On partner and portal routes the operator is refused like any other
  non-member.
- ``public``: the way in, health, static assets, the sandbox's card entry: any answer
  below 500, without any tenant's canary.
- ``webhook``: an unsigned event posted to the configured processor's endpoint is
  refused with 400 (the only place a 400 counts as the refusal), never applied.
"""

from __future__ import annotations

from dataclasses import dataclass

from werkzeug.routing import Rule

from tests.security.tenant_world import Actor, Path

Scope = tuple[Path, bool]  # the record a token opens, and whether its contents show


@dataclass(frozen=True)
class Expect:
    """What an endpoint may answer; ``area`` decides the verdict per actor (module doc)."""

    area: str  # public | token | partner | portal | operator | webhook
    scope: str = ""  # token routes: which record the token opens (see _token_scope)
    note: str = ""


PUBLIC = Expect("public")
PARTNER = Expect("partner")
PORTAL = Expect("portal")
OPERATOR = Expect("operator")

EXPECTATIONS: dict[str, Expect] = {
    # The way in, health, assets: no tenant data at all.
    "static": PUBLIC,
    "auth.index": PUBLIC,
    "auth.login": PUBLIC,
    "auth.logout": PUBLIC,
    "auth.link_request": PUBLIC,
    "auth.password_forgot": PUBLIC,
    "health.healthz": PUBLIC,
    "components.embed_js": PUBLIC,
    "sandbox.create_token": Expect("public", note="card fields in, processor token out"),
    # The signed-in user's own password: no record in the URL, only the user's own email.
    "auth.change_password_page": Expect("public", note="anonymous: to the sign-in page"),
    # Emailed links and embeds: the token in the URL is the credential (by design).
    "auth.accept_invite": Expect("token", "invite", "an invitation shows its invitee"),
    "auth.link_sign_in": Expect("token", "customer", "a sign-in link signs in its user"),
    "auth.password_reset": Expect("token", "customer", "a reset link resets its user"),
    "approve.page": Expect("token", "order", "the approval link shows its order"),
    "approve.submit": Expect("token", "order"),
    "pay.pay": Expect("token", "invoice", "a pay link shows its invoice"),
    "pay.submit": Expect("token", "invoice"),
    "pay.new_link": Expect("token", "invoice"),
    "components.pay_now": Expect("token", "invoice", "the pay-now embed of a pay link"),
    "components.submit_pay_now": Expect("token", "invoice"),
    "components.take_payment": Expect("token", "widget", "a widget key is public by design"),
    "components.submit_take_payment": Expect("token", "widget"),
    # The operator's console reads every tenant.
    "operator.partners": OPERATOR,
    "operator.customer": OPERATOR,
    "operator.outbox": OPERATOR,
    "operator.outbox_detail": OPERATOR,
    "operator.outbox_html": OPERATOR,
    "operator.outbox_send_again": OPERATOR,
    "operator.runs": OPERATOR,
    "operator.run": OPERATOR,
    "operator.audit": OPERATOR,
    # Processor webhooks: an unsigned POST is a 400 (signature checked on the raw body).
    "webhooks.receive": Expect("webhook", note="an unsigned POST is 400"),
    # Partner users' area (admin-only pages answer sales users 403).
    "partner.customers": PARTNER,
    "partner.customer": PARTNER,
    "partner.new_invoice": PARTNER,
    "partner.preview_invoice": PARTNER,
    "partner.on_behalf_start": PARTNER,
    "partner.on_behalf_done": PARTNER,
    "partner.on_behalf_email": PARTNER,
    "partner.on_behalf_review": PARTNER,
    "partner.on_behalf_choose": PARTNER,
    "partner.on_behalf_step": PARTNER,
    "partner.new_order": PARTNER,
    "partner.new_subscription": PARTNER,
    "partner.preview_new_subscription": PARTNER,
    "partner.dashboard": PARTNER,
    "partner.export_invoices": PARTNER,
    "partner.export_payments": PARTNER,
    "partner.invoice": PARTNER,
    "partner.cancel_invoice": PARTNER,
    "partner.regenerate_pay_link": PARTNER,
    "partner.record_payment": PARTNER,
    "partner.invoice_pdf_file": PARTNER,
    "partner.print_invoice": PARTNER,
    "partner.resend_invoice": PARTNER,
    "partner.orders": PARTNER,
    "partner.order": PARTNER,
    "partner.cancel_order": PARTNER,
    "partner.capture_order": PARTNER,
    "partner.order_to_draft": PARTNER,
    "partner.order_lines": PARTNER,
    "partner.send_order_for_approval": PARTNER,
    "partner.order_signature": PARTNER,
    "partner.submit_order": PARTNER,
    "partner.order_totals": PARTNER,
    "partner.void_order": PARTNER,
    "partner.payment": PARTNER,
    "partner.receipt_pdf_file": PARTNER,
    "partner.print_receipt": PARTNER,
    "partner.refund_payment": PARTNER,
    "partner.resend_payment_receipt": PARTNER,
    "partner.settings": PARTNER,
    "partner.dunning_policy": PARTNER,
    "partner.reset_dunning": PARTNER,
    "partner.order_settings": PARTNER,
    "partner.add_origin": PARTNER,
    "partner.remove_origin": PARTNER,
    "partner.payment_settings": PARTNER,
    "partner.portal_settings": PARTNER,
    "partner.receipt_settings": PARTNER,
    "partner.edit_subscription": PARTNER,
    "partner.charge_subscription_now": PARTNER,
    "partner.preview_subscription_changes": PARTNER,
    "partner.resume_subscription": PARTNER,
    "partner.set_subscription_recurring": PARTNER,
    "partner.skip_next_charge": PARTNER,
    "partner.stop_subscription": PARTNER,
    "partner.users": PARTNER,
    "partner.deactivate_user": PARTNER,
    "partner.reactivate_user": PARTNER,
    "partner.resend_invite": PARTNER,
    "partner.invite": PARTNER,
    "partner.widgets": PARTNER,
    "partner.edit_widget": PARTNER,
    "partner.widget_active": PARTNER,
    "partner.preview_widget_changes": PARTNER,
    "partner.new_widget": PARTNER,
    "partner.preview_new_widget": PARTNER,
    # The customer's portal.
    "portal.account": PORTAL,
    "portal.catalog": PORTAL,
    "portal.catalog_product": PORTAL,
    "portal.join": PORTAL,
    "portal.invoices": PORTAL,
    "portal.invoice": PORTAL,
    "portal.email_invoice": PORTAL,
    "portal.pay_invoice": PORTAL,
    "portal.submit_payment": PORTAL,
    "portal.invoice_pdf": PORTAL,
    "portal.invoice_print": PORTAL,
    "portal.schedule_payment": PORTAL,
    "portal.create_scheduled_payment": PORTAL,
    "portal.methods": PORTAL,
    "portal.add_method": PORTAL,
    "portal.make_default_method": PORTAL,
    "portal.remove_method": PORTAL,
    "portal.payments": PORTAL,
    "portal.payment": PORTAL,
    "portal.email_receipt": PORTAL,
    "portal.payment_pdf": PORTAL,
    "portal.payment_print": PORTAL,
    "portal.cancel_scheduled_payment": PORTAL,
    "portal.subscriptions": PORTAL,
    "portal.subscription_cancel_confirm": PORTAL,
    "portal.cancel_subscription": PORTAL,
    "portal.payment_method": PORTAL,
    "portal.update_payment_method": PORTAL,
    "portal.retry_subscription": PORTAL,
}


# Query strings that make an own-area GET return data to scan: "cnry" is in every
# canary, so a search for it finds every record the search can reach; ranges cover all.
QUERIES = {
    "partner.customers": "q=cnry",
    "partner.export_invoices": "from=2000-01-01&to=2100-12-31",
    "partner.export_payments": "from=2000-01-01&to=2100-12-31",
    "portal.payments": "from=2000-01-01&to=2100-12-31",
    "operator.outbox": "q=cnry",
}

# URL variables that are not records (a wizard step number, a static file, a processor).
NOT_RECORDS = {"n": "1", "filename": "css/portico.css", "gateway_name": "sandbox"}


# -- verdicts ----------------------------------------------------------------------------------


def has_records(rule: Rule) -> bool:
    """Whether the route names a record (not only a step number or a file)."""
    return any(name not in NOT_RECORDS for name in rule.arguments)


def verdict(expect: Expect, actor: Actor, rule: Rule) -> str:
    """The verdict (module doc) for ``actor`` requesting ``rule`` with another's records."""
    if expect.area in ("public", "token", "webhook"):
        return expect.area
    members = {
        "partner": ("partner_admin", "partner_sales"),
        "portal": ("customer",),
        "operator": ("operator",),
    }[expect.area]
    if actor.role not in members:
        return "refuse"
    if expect.area == "operator":
        return "operator"
    return "refuse" if has_records(rule) else "own"


def may_see(actor: Actor, owner: Path) -> bool:
    """Whether a canary of ``owner`` may show on ``actor``'s own pages."""
    if actor.role in ("anonymous", "operator"):
        return False
    if owner[0] != actor.tenant:
        return False
    return actor.role != "customer" or owner[1:2] != ("cust",) or owner[2] == actor.cust


def related(owner: Path, record: Path, contents: bool) -> bool:
    """Whether a token that opens ``record`` may show a canary of ``owner``: the record
    itself and what it belongs to (its customer, its partner), and with ``contents`` what
    it holds (an invoice's lines, an order's lines)."""
    return record[: len(owner)] == owner or (contents and owner[: len(record)] == record)
