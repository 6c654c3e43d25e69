"""The order status machine: exactly the listed moves are allowed, the rest say why."""

from __future__ import annotations

import pytest

from app.domain.errors import Conflict
from app.domain.orders import TRANSITIONS, IllegalTransition, OrderStatus, line_amounts, transition

ALLOWED = {
    ("draft", "processing"),
    ("draft", "pending_approval"),
    ("draft", "canceled"),
    ("pending_approval", "processing"),
    ("pending_approval", "approved"),
    ("pending_approval", "draft"),
    ("pending_approval", "canceled"),
    ("approved", "processing"),
    ("approved", "draft"),
    ("approved", "canceled"),
    ("processing", "activated"),
    ("processing", "scheduled"),
    ("processing", "authorized"),
    ("processing", "declined"),
    ("authorized", "activated"),
    ("authorized", "scheduled"),
    ("authorized", "voided"),
    ("scheduled", "activated"),
    ("declined", "draft"),
    ("declined", "canceled"),
    ("voided", "draft"),
    ("voided", "canceled"),
}


@pytest.mark.parametrize("current", list(OrderStatus))
@pytest.mark.parametrize("target", list(OrderStatus))
def test_is_each_move_allowed_exactly_when_listed(
    current: OrderStatus, target: OrderStatus
) -> None:
    if (current.value, target.value) in ALLOWED:
        assert transition(current, target) is target
    else:
        with pytest.raises(IllegalTransition) as refused:
            transition(current, target)
        assert isinstance(refused.value, Conflict) and refused.value.status_code == 409
        assert refused.value.message.startswith(
            f"An order that is {current.value.replace('_', ' ')}"
        )


def test_does_every_status_have_a_row_in_the_table() -> None:
    assert set(TRANSITIONS) == set(OrderStatus)


def test_does_a_declined_order_say_how_to_go_on() -> None:
    with pytest.raises(
        IllegalTransition,
        match="declined cannot be submitted for payment. Convert it to draft first.",
    ):
        transition("declined", OrderStatus.PROCESSING)


def test_is_tax_rounded_half_up_on_each_line() -> None:
    assert line_amounts(3, 333, 1900) == (999, 190)  # 189.81 → 190
    assert line_amounts(1, 50, 1000) == (50, 5)  # 5.0
    assert line_amounts(1, 25, 1000) == (25, 3)  # 2.5 → 3
