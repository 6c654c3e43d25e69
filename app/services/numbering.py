"""Gapless invoice numbers per partner and series, safe under concurrency."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.models import InvoiceSequence

SERIES_PREFIX = {"INV": "INV", "CN": "CN", "SO": "SO"}  # SO: sales orders


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
            return 1, invoice_number(series, partner_id, 1)
    value = session.exec(select(InvoiceSequence.next_value).where(*key)).one() - 1
    return value, invoice_number(series, partner_id, value)


def invoice_number(series: str, partner_id: int, sequence: int) -> str:
    """The display number of an invoice (``INV-001-000042``)."""
    return f"{SERIES_PREFIX[series]}-{partner_id:03d}-{sequence:06d}"


def reserve_invoice_numbers(
    session: Session, *, partner_id: int, series: str, count: int
) -> list[tuple[int, str]]:
    """Take ``count`` consecutive numbers of (partner, series) in the caller's transaction.

    The same guarantees as :func:`next_invoice_number` (the counter row stays locked until
    the caller commits; a rollback gives the numbers back), in at most four statements
    whatever ``count`` is. Raises ValueError for an unknown series or a count below 1.
    """
    if count < 1:
        raise ValueError("reserve at least one number")
    first, _ = next_invoice_number(session, partner_id=partner_id, series=series)
    if count > 1:
        session.execute(
            update(InvoiceSequence)
            .where(InvoiceSequence.partner_id == partner_id, InvoiceSequence.series == series)
            .values(next_value=InvoiceSequence.next_value + (count - 1))
        )
    return [(n, invoice_number(series, partner_id, n)) for n in range(first, first + count)]
