"""Notification emails written as outbox rows (rendered from app/templates/email)."""

from __future__ import annotations

from typing import Any

from flask import render_template
from sqlmodel import Session

from app.models import OutboxMessage, Partner, Payment
from app.services.email import add_message


def write_email(
    session: Session,
    *,
    template: str,
    dedupe_key: str,
    to_address: str,
    subject: str,
    partner_id: int | None,
    **context: Any,
) -> OutboxMessage:
    """Render ``email/<template>.txt`` and ``.html`` into an outbox row (caller commits).

    Needs an app context (templates). Written once per ``dedupe_key``.
    """
    text_body, html_body = render_email(template, subject=subject, **context)
    return add_message(
        session,
        dedupe_key=dedupe_key,
        kind=template,
        to_address=to_address,
        subject=subject,
        text_body=text_body,
        html_body=html_body,
        partner_id=partner_id,
    )


def render_email(template: str, *, subject: str, **context: Any) -> tuple[str, str]:
    """The (plain text, HTML) bodies of ``email/<template>`` (needs an app context)."""
    context.setdefault("subject", subject)
    return (
        render_template(f"email/{template}.txt", **context),
        render_template(f"email/{template}.html", **context),
    )


def write_receipt(
    session: Session, payment: Payment, *, to_address: str, partner: Partner, message: str = ""
) -> list[int]:
    """Write the receipt email of an approved payment (caller commits); returns its row id.

    Written once per payment, whichever path approved it (widget, pay link, billing run,
    manual charge, reconciler).
    """
    from app.services.receipts import receipt_for

    row = write_email(
        session,
        template="receipt",
        dedupe_key=f"receipt:payment:{payment.id}",
        to_address=to_address,
        subject=f"Your receipt from {partner.name}",
        partner_id=partner.id,
        receipt=receipt_for(session, payment, message=message),
    )
    return [row.id] if row.id is not None else []
