"""Sending orders for customer approval in tests: the emailed link, signatures, approving."""

from __future__ import annotations

import re
from datetime import datetime

from flask import Flask
from sqlmodel import Session, col, select

from app.gateway.base import TokenizedMethod
from app.models import Order, OutboxMessage, Partner, User
from app.services import order_approval
from app.services.order_approval import ApprovalResult
from tests.services.order_helpers import NOW, TODAY

SUPPORT = ("Support plan", 1, 2500, "monthly", TODAY)
SETUP = ("Setup", 2, 1000, "once", TODAY)
ADDRESS = "198.51.100.23"
BASE_URL = "http://localhost"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_LINK = re.compile(r"/approve/([A-Za-z0-9_.\-]+)")


def secret(app: Flask) -> str:
    return app.config["PORTICO"].secret_key


def send(app: Flask, db: Session, user: User, order: Order, *, now: datetime = NOW) -> list[int]:
    """Send (or re-send) the order as the partner page does; returns the email row ids."""
    _, email_ids = order_approval.send_for_approval(
        db, user, order.id, now=now, base_url=BASE_URL, secret=secret(app)
    )
    return email_ids


def emailed_token(db: Session, email_id: int) -> str:
    """The approval token in an approval email's text (what the customer clicks)."""
    row = db.get(OutboxMessage, email_id)
    assert row is not None and row.kind == "order_approval"
    match = _LINK.search(row.text_body)
    assert match, row.text_body
    return match.group(1)


def approval_emails(db: Session) -> list[OutboxMessage]:
    query = select(OutboxMessage).where(OutboxMessage.kind == "order_approval")
    return list(db.exec(query.order_by(col(OutboxMessage.id))))


def set_partner(db: Session, partner_id: int, **settings: object) -> None:
    partner = db.get(Partner, partner_id)
    assert partner is not None
    for name, value in settings.items():
        setattr(partner, name, value)
    db.add(partner)
    db.commit()


def png_data_url(size: int = 64) -> str:
    """A data URL whose bytes start like a PNG (what a canvas sends), ``size`` bytes long."""
    import base64

    body = PNG_MAGIC + b"\0" * max(0, size - len(PNG_MAGIC))
    return "data:image/png;base64," + base64.b64encode(body).decode()


def approve(
    app: Flask,
    db: Session,
    token: str,
    *,
    card: TokenizedMethod | None = None,
    signer_name: str = "Nora Quist",
    kind: str = "typed",
    signature: str = "Nora Quist",
    sequence: int | None = None,
    now: datetime = NOW,
) -> ApprovalResult:
    """Approve as the page's view does, after card entry (``card`` already tokenized)."""
    if sequence is None:
        page = order_approval.approval_page(db, token, secret=secret(app), now=now)
        sequence = page.sequence
    return order_approval.approve(
        db, app.extensions["portico"].gateway, token, signer_name=signer_name,
        signature_kind=kind, signature=signature, card=card, sequence=sequence,
        client_address=ADDRESS, now=now, as_of=TODAY, secret=secret(app),
    )  # fmt: skip
