"""Forms of an actor's own records, posted with another customer's or partner's ids.

The tenant matrix fills URLs with foreign ids; these fill the *form fields* instead: a
card on file, a product, a payment, each naming a record of another customer (of the
same partner) or of another partner, in a form whose URL is the actor's own record.
``plausible_form`` is the other half: values that pass most validation, so a refused
request is refused for whose record it names and not for an empty field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from app.clock import local_today
from tests.security.tenant_world import Target


@dataclass(frozen=True)
class Probe:
    """A form of the actor's own record, posted with another customer's or partner's id."""

    actor: str
    path: Callable[[dict[str, Target]], str]
    data: Callable[[dict[str, Target]], dict[str, str]]
    form_page: Callable[[dict[str, Target]], str] | None = None  # read its form token first
    method: str = "POST"
    statuses: tuple[int, ...] = (404, 409, 422)


def money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def soon(days: int = 3) -> str:
    return (local_today("America/New_York") + timedelta(days=days)).isoformat()


PROBES = {
    "manual-charge-result-of-another-partners-payment": Probe(
        "partner_admin_a",
        lambda t: f"/partner/subscriptions/{t['a1'].subscription_id}?charge={t['b1'].payment_id}",
        lambda t: {},
        method="GET",
    ),
    "order-paid-with-another-partners-card": Probe(
        "partner_admin_a",
        lambda t: f"/partner/orders/{t['a1'].draft_order_id}/submit",
        lambda t: {"card": str(t["b1"].method_id), "choice": "charge", "sequence": "1"},
    ),
    "order-paid-with-another-customers-card": Probe(
        "partner_admin_a",
        lambda t: f"/partner/orders/{t['a1'].draft_order_id}/submit",
        lambda t: {"card": str(t["a2"].method_id), "choice": "charge", "sequence": "1"},
    ),
    "order-line-with-another-partners-product": Probe(
        "partner_admin_a",
        lambda t: f"/partner/orders/{t['a1'].draft_order_id}/lines",
        lambda t: {"product": str(t["b1"].product_id), "quantity": "1", "activation_date": soon()},
    ),
    "order-totals-with-another-partners-product": Probe(
        "partner_admin_a",
        lambda t: f"/partner/orders/{t['a1'].draft_order_id}/totals",
        lambda t: {"product": str(t["b1"].product_id), "quantity": "1", "activation_date": soon()},
        statuses=(200, 422),  # a preview of the rows as typed; the foreign price never counts
    ),
    "catalog-join-with-another-customers-card": Probe(
        "a1",
        lambda t: f"/portal/catalog/{t['a1'].product_id}",
        lambda t: {"saved_method": str(t["a2"].method_id)},
        form_page=lambda t: f"/portal/catalog/{t['a1'].product_id}",
    ),
    "invoice-scheduled-on-another-customers-card": Probe(
        "a1",
        lambda t: f"/portal/invoices/{t['a1'].spare_invoice_id}/schedule",
        lambda t: {"pay_on": soon(), "amount": "", "payment_method_id": str(t["a2"].method_id)},
        form_page=lambda t: f"/portal/invoices/{t['a1'].spare_invoice_id}/schedule",
    ),
    "invoice-paid-with-another-customers-card": Probe(
        "a1",
        lambda t: f"/portal/invoices/{t['a1'].spare_invoice_id}/pay",
        lambda t: {"saved_method": str(t["a2"].method_id), "amount": "1.00"},
        form_page=lambda t: f"/portal/invoices/{t['a1'].spare_invoice_id}/pay",
    ),
    "pay-link-paid-with-another-customers-card": Probe(
        "a1",
        lambda t: f"/pay/{t['a1'].pay_token}",
        lambda t: {"saved_method": str(t["a2"].method_id), "amount": "1.00"},
        form_page=lambda t: f"/pay/{t['a1'].pay_token}",
    ),
}


def plausible_form(csrf: str) -> dict[str, str]:
    """A form that would pass most of the portal's validation (extra fields are ignored),
    so a refused request is refused for whose record it names, not for an empty field."""
    day = soon()
    text = {
        "amount": "1.00", "price": "1.00", "unit_price": "1.00", "fixed_amount": "1.00",
        "manual_amount": "1.00", "total_amount": "100.00", "initial_amount": "",
        "quantity": "1", "description": "Plausible line", "note": "plausible",
        "reference": "Check 1", "method": "check", "kind": "check", "currency": "USD",
        "received_on": day, "refunded_on": day, "issue_date": day, "due_date": day,
        "start_date": day, "activation_date": day, "pay_on": day, "end_date": "",
        "frequency": "monthly", "stop_rule": "unending", "status": "recurring",
        "choice": "charge", "card": "new", "sequence": "1", "billing_email": "p@example.com",
        "email": "p@example.com", "name": "Plausible Payer", "title": "Plausible",
        "purpose": "Plausible", "wants_changes": "no", "active": "1", "role": "partner_sales",
        "origin": "https://plausible.example", "accept_card": "on", "allow_one_time": "on",
    }  # fmt: skip
    return {"csrf_token": csrf, **text}
