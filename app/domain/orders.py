"""Order rules: the status machine and line totals (pure code).

Every status change goes through :func:`transition`; the allowed moves are the table
:data:`TRANSITIONS`, and anything else raises :class:`IllegalTransition` (a Conflict, shown
to the person as a message).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from app.domain.errors import Conflict
from app.domain.money import tax_amount

DECLINED_TAG: Final = "Payment declined"


class OrderStatus(StrEnum):
    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"  # sent to the customer, link open
    APPROVED = "approved"  # signed by the customer, payment still to collect
    PROCESSING = "processing"  # a payment submission is with the processor
    AUTHORIZED = "authorized"  # a hold awaits capture or void
    SCHEDULED = "scheduled"  # paid; activates on its activation date
    ACTIVATED = "activated"
    DECLINED = "declined"
    VOIDED = "voided"  # the authorization was released
    CANCELED = "canceled"


S = OrderStatus
TRANSITIONS: Final[dict[OrderStatus, frozenset[OrderStatus]]] = {
    S.DRAFT: frozenset({S.PROCESSING, S.PENDING_APPROVAL, S.CANCELED}),
    S.PENDING_APPROVAL: frozenset({S.PROCESSING, S.APPROVED, S.DRAFT, S.CANCELED}),
    S.APPROVED: frozenset({S.PROCESSING, S.DRAFT, S.CANCELED}),
    S.PROCESSING: frozenset({S.ACTIVATED, S.SCHEDULED, S.AUTHORIZED, S.DECLINED}),
    S.AUTHORIZED: frozenset({S.ACTIVATED, S.SCHEDULED, S.VOIDED}),
    S.SCHEDULED: frozenset({S.ACTIVATED}),
    S.DECLINED: frozenset({S.DRAFT, S.CANCELED}),
    S.VOIDED: frozenset({S.DRAFT, S.CANCELED}),
    S.ACTIVATED: frozenset(),
    S.CANCELED: frozenset(),
}
EDITABLE: Final = frozenset({S.DRAFT})
PAYABLE: Final = frozenset({S.DRAFT, S.APPROVED})  # a partner user may submit a payment

_VERB: Final[dict[OrderStatus, str]] = {
    S.DRAFT: "converted to draft",
    S.PENDING_APPROVAL: "sent for approval",
    S.APPROVED: "approved",
    S.PROCESSING: "submitted for payment",
    S.AUTHORIZED: "authorized",
    S.SCHEDULED: "scheduled",
    S.ACTIVATED: "activated",
    S.DECLINED: "declined",
    S.VOIDED: "voided",
    S.CANCELED: "canceled",
}


class IllegalTransition(Conflict):
    """A status change the table does not allow."""

    def __init__(self, current: OrderStatus, target: OrderStatus) -> None:
        super().__init__(
            f"An order that is {label(current)} cannot be {_VERB[target]}."
            + (f" {_HINT[current]}" if current in _HINT else "")
        )
        self.current = current
        self.target = target


_HINT: Final[dict[OrderStatus, str]] = {
    S.PROCESSING: "Its payment is still with the processor; wait a moment and reload.",
    S.ACTIVATED: "It is already active.",
    S.CANCELED: "It was canceled.",
    S.DECLINED: "Convert it to draft first.",
    S.VOIDED: "Convert it to draft first.",
}


def label(status: str) -> str:
    """The status in plain words ("pending approval")."""
    return str(status).replace("_", " ")


def transition(current: str, target: OrderStatus) -> OrderStatus:
    """Return ``target`` when the table allows ``current → target``.

    Raises:
        IllegalTransition: the move is not in :data:`TRANSITIONS`.
        ValueError: ``current`` is not an order status.
    """
    now = OrderStatus(current)
    if target not in TRANSITIONS[now]:
        raise IllegalTransition(now, target)
    return target


def line_amounts(quantity: int, unit_amount: int, rate_bp: int) -> tuple[int, int]:
    """A line's (net amount, tax): quantity × unit price, tax rounded half-up on the line."""
    net = quantity * unit_amount
    return net, tax_amount(net, rate_bp)
