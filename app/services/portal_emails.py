""" "Email me this invoice" and "Email me this receipt" in the customer portal.

The copy goes to the signed-in customer's own sign-in address (``user.email``), never to
an address typed into the form, so the buttons cannot be used to send mail elsewhere.
Each is written once per form token (the ``nonce``): a double click sends one email. The
rows are written and committed here; the view enqueues them after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from app.models import User
from app.services.billing_pages import (
    check_has_receipt,
    customer_invoice_detail,
    customer_payment_detail,
    write_receipt_copy,
)
from app.services.invoice_admin import Links, write_invoice_email


@dataclass(frozen=True)
class EmailedCopy:
    """What was emailed (an invoice number or a receipt reference) and to whom."""

    what: str
    to_address: str
    email_ids: list[int]


def email_invoice(
    session: Session, user: User, invoice_id: int, *, nonce: str, now: datetime, links: Links
) -> EmailedCopy:
    """Email the customer a copy of their invoice (the "invoice issued" email); commits.

    When something is due the email carries a fresh pay link (earlier links of the invoice
    stop working, as when the partner resends it).

    Raises:
        NotFound: another account's invoice, or ``user`` is not a customer.
    """
    detail = customer_invoice_detail(session, user, invoice_id)
    invoice = detail.invoice
    email_ids = write_invoice_email(
        session,
        invoice,
        detail.partner,
        detail.account,
        f"portal_invoice:{invoice.id}:{nonce}",
        now,
        links,
        user,
        to_address=user.email,
    )
    session.commit()
    return EmailedCopy(invoice.number, user.email, email_ids)


def email_receipt(session: Session, user: User, payment_id: int, *, nonce: str) -> EmailedCopy:
    """Email the customer a copy of their payment's receipt; commits.

    Raises:
        NotFound: another account's payment, or ``user`` is not a customer.
        Conflict: the payment has no receipt (not approved, or a refund).
    """
    detail = customer_payment_detail(session, user, payment_id)
    check_has_receipt(detail)
    key = f"portal_receipt:payment:{detail.payment.id}:{nonce}"
    email_ids = write_receipt_copy(session, detail, to_address=user.email, dedupe_key=key)
    session.commit()
    return EmailedCopy(detail.reference, user.email, email_ids)
