"""The wording a partner prints on donation receipts (settings page, admins only)."""

from __future__ import annotations

from typing import Final

from sqlmodel import Session

from app.domain.errors import InvalidInput
from app.models import Partner, User
from app.services.admin_access import audit, partner_for_update

RECEIPT_WORDING_MAX: Final = 1000


def update_receipt_wording(session: Session, user: User, wording: str) -> Partner:
    """Set the text printed on the partner's donation receipts ("" for none). Commits.

    Surrounding blank space is trimmed and line breaks are kept (as ``\\n``).

    Raises:
        NotFound: the user is not a partner admin.
        InvalidInput: (field ``receipt_wording``) longer than 1,000 characters.
    """
    text = (wording or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    if len(text) > RECEIPT_WORDING_MAX:
        raise InvalidInput(
            f"Keep the receipt wording to {RECEIPT_WORDING_MAX:,} characters "
            f"(it has {len(text):,}).",
            "receipt_wording",
        )
    partner = partner_for_update(session, user)
    partner.receipt_wording = text
    session.add(partner)
    audit(
        session,
        user,
        "partner.receipt_wording_updated",
        "partner",
        partner.id,
        {"length": len(text)},
    )
    session.commit()
    return partner
