"""Gapless invoice numbers per partner and series, safe under concurrency."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.models import InvoiceSequence

SERIES_PREFIX = {"INV": "INV", "CN": "CN"}


def next_invoice_number(session: Session, *, partner_id: int, series: str) -> tuple[int, str]:
    """Take the next number of (partner, series) inside the caller's transaction.

    The counter row is incremented with an UPDATE, which holds its row lock until the
    caller commits: concurrent issuers wait, and a rolled-back transaction gives its
    number back, so numbers have no gaps. Returns (sequence, display number).
    """
    if series not in SERIES_PREFIX:
        raise ValueError(f"unknown invoice series {series!r}")
    key = (InvoiceSequence.partner_id == partner_id, InvoiceSequence.series == series)
    result = session.execute(
        update(InvoiceSequence).where(*key).values(next_value=InvoiceSequence.next_value + 1)
    )
    if result.rowcount == 0:
        try:
            with session.begin_nested():
                session.add(InvoiceSequence(partner_id=partner_id, series=series, next_value=2))
        except IntegrityError:
            session.execute(
                update(InvoiceSequence)
                .where(*key)
                .values(next_value=InvoiceSequence.next_value + 1)
            )
        else:
            return 1, f"{SERIES_PREFIX[series]}-{partner_id:03d}-{1:06d}"
    value = session.exec(select(InvoiceSequence.next_value).where(*key)).one() - 1
    return value, f"{SERIES_PREFIX[series]}-{partner_id:03d}-{value:06d}"
