"""Collecting an order's first payment exactly once (ARCHITECTURE §2, ADR 0015).

Submission ``n`` of an order has the purpose key ``order:{id}:submit:{n}``. Its attempt
commits in one transaction with the order's move to ``processing`` (under the order's
row lock), before the processor is called; a double click or a second tab finds the key
taken and gets the first submission's outcome. The answer and all its effects (invoice,
activation or schedule, the card kept, history, receipt) commit together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from sqlmodel import Session

from app.domain.errors import Conflict, InvalidInput, NotFound
from app.domain.orders import DECLINED_TAG, PAYABLE, OrderStatus, transition
from app.gateway.base import GatewayResult, PaymentGateway, TokenizedMethod
from app.models import (
    CustomerAccount,
    Order,
    Partner,
    Payment,
    PaymentKind,
    PaymentMethod,
    User,
)
from app.services import payments
from app.services.invoices import tax_rate_for
from app.services.order_access import (
    ensure_may_collect,
    lock_order,
    move,
    partner_order,
    record,
)
from app.services.order_activation import apply_order_payment, order_lines
from app.services.order_holds import cancel_order, capture_order, convert_to_draft, void_order
from app.services.order_outcomes import OrderPaymentOutcome, card_of, claim_or_outcome, outcome_of
from app.services.saved_methods import keep_method

SOURCE: Final = "order"
CHOICES: Final = ("charge", "authorize")


@dataclass(frozen=True)
class CardChoice:
    """How an order is paid: a card on file of its customer, or a newly tokenized card."""

    saved_method_id: int | None = None
    new_method: TokenizedMethod | None = None


class _Taken(Conflict):
    def __init__(self) -> None:
        super().__init__("This order was just submitted in another tab.")


@dataclass(frozen=True)
class _Card:
    token: str
    kind: str
    brand: str
    last4: str
    saved_method_id: int | None
    new: dict[str, Any] | None


def submit_key(order_id: int, sequence: int) -> str:
    """The purpose key of the order's payment submission number ``sequence``."""
    return f"order:{order_id}:submit:{sequence}"


def next_submit_sequence(order: Order) -> int:
    """The submission number a page offering to pay ``order`` carries."""
    return order.submit_count + 1


def submit_order(
    session: Session,
    gateway: PaymentGateway,
    user: User,
    order_id: int,
    *,
    choice: str,
    card: CardChoice,
    sequence: int,
    now: datetime,
    as_of: date,
) -> OrderPaymentOutcome:
    """Charge ("charge") or authorize ("authorize") an order's total, once per ``sequence``.

    Approved charge: activated or scheduled, paid invoice, card kept (default if none).
    Approved authorization: ``authorized``, awaiting capture or void. Declined:
    ``declined`` with the tag "Payment declined" and the reason. A second submission of
    the same ``sequence`` returns the first one's outcome without calling the processor.

    Raises:
        NotFound: not a partner user, or an order of another partner.
        Forbidden: a sales user the partner does not allow to collect payments.
        InvalidInput: an unknown choice, no card, a card of another customer, or a bank
            account for an authorization (field ``choice`` or ``card``).
        Conflict: the order cannot be paid in its status (IllegalTransition), the page is
            out of date, it has no lines, or its tax rate changed since it was priced.
    """
    order = partner_order(session, user, order_id)
    partner = session.get(Partner, order.partner_id)
    assert partner is not None
    ensure_may_collect(partner, user)
    earlier = _replay(session, order.id, sequence)  # type: ignore[arg-type]
    if earlier is not None:
        return earlier
    if choice not in CHOICES:
        raise InvalidInput("Choose Charge now or Authorize only.", "choice")
    if OrderStatus(order.status) not in PAYABLE:
        transition(order.status, OrderStatus.PROCESSING)  # raises the plain-words refusal
    account = session.get(CustomerAccount, order.customer_account_id)
    assert account is not None
    chosen = _card(session, account, card, authorize=choice == "authorize")

    def claim(tx: Session) -> None:
        current = _claim(tx, order.id, sequence, seen_total=order.total, now=now)  # type: ignore[arg-type]
        current.payment_choice = choice
        record(tx, current, "order.submitted", user=user, choice=choice, amount=current.total)

    spec = _spec(order, account, chosen, choice, sequence, gateway.name, actor=user.email)
    return _pay(session, gateway, spec, chosen, account, claim, now=now)


def pay_on_approval(
    session: Session,
    gateway: PaymentGateway,
    order_id: int,
    *,
    card: TokenizedMethod,
    sequence: int,
    now: datetime,
    as_of: date,
    on_claim: Callable[[Session, Order], None],
) -> OrderPaymentOutcome:
    """Charge a pending-approval order's total with the card the customer entered.

    ``on_claim`` runs in the attempt's transaction with the order locked and still
    ``pending_approval`` (it checks the link and records the signature; a DomainError it
    raises aborts with nothing written); then the order moves to ``processing`` and the
    card is charged, with the effects of :func:`submit_order`.

    Raises:
        NotFound: the order is gone.
        Conflict: the order is no longer waiting for approval, or the page is out of date.
        DomainError: whatever ``on_claim`` raises.
    """
    earlier = _replay(session, order_id, sequence)
    if earlier is not None:
        return earlier
    order = session.get(Order, order_id)
    account = session.get(CustomerAccount, order.customer_account_id) if order else None
    if order is None or account is None:
        raise NotFound("Not found.")
    if order.status != OrderStatus.PENDING_APPROVAL:
        transition(order.status, OrderStatus.APPROVED)  # raises the plain-words refusal
    chosen = _card(session, account, CardChoice(new_method=card), authorize=False)

    def claim(tx: Session) -> None:
        locked = lock_order(tx, order_id)
        if locked.status != OrderStatus.PENDING_APPROVAL:
            transition(locked.status, OrderStatus.APPROVED)
        on_claim(tx, locked)
        current = _claim(tx, order_id, sequence, seen_total=order.total, now=now)
        current.payment_choice = "approval"
        record(
            tx,
            current,
            "order.submitted",
            actor_label=f"customer {current.signer_name}".strip(),
            choice="approval",
            amount=current.total,
        )

    spec = _spec(order, account, chosen, "charge", sequence, gateway.name, actor="customer")
    return _pay(session, gateway, spec, chosen, account, claim, now=now)


def _replay(session: Session, order_id: int, sequence: int) -> OrderPaymentOutcome | None:
    earlier = payments.find_attempt(session, submit_key(order_id, sequence))
    if earlier is None:
        return None
    settled = payments.wait_until_settled(session, earlier.id)  # type: ignore[arg-type]
    return outcome_of(session, settled)


def _card(
    session: Session, account: CustomerAccount, card: CardChoice, *, authorize: bool
) -> _Card:
    if card.new_method is not None:
        new = card.new_method
        chosen = _Card(
            new.token,
            new.kind,
            new.brand,
            new.last4,
            None,
            {
                "token": new.token,
                "kind": new.kind,
                "brand": new.brand,
                "last4": new.last4,
                "exp_month": new.exp_month,
                "exp_year": new.exp_year,
            },
        )
    elif card.saved_method_id is not None:
        method = session.get(PaymentMethod, card.saved_method_id)
        if method is None or method.customer_account_id != account.id:
            raise InvalidInput("Choose one of this customer's cards, or enter a new card.", "card")
        chosen = _Card(method.token, method.kind, method.brand, method.last4, method.id, None)
    else:
        raise InvalidInput("Choose a card on file or enter a new card.", "card")
    if authorize and chosen.kind != "card":
        raise InvalidInput("Only a card can be authorized; charge a bank account.", "card")
    return chosen


def _claim(tx: Session, order_id: int, sequence: int, *, seen_total: int, now: datetime) -> Order:
    """In the attempt's transaction: the order still payable as the page showed it."""
    order = lock_order(tx, order_id)
    if order.submit_count >= sequence and payments.find_attempt(tx, submit_key(order_id, sequence)):
        raise _Taken  # another tab committed this submission while we waited for the lock
    if order.submit_count + 1 != sequence:
        raise Conflict("This page is out of date: reload it before submitting again.")
    lines = order_lines(tx, order_id)
    if not lines or order.total <= 0:
        raise Conflict("Add at least one line with a price before collecting a payment.")
    if order.total != seen_total:
        raise Conflict("The order changed meanwhile: reload the page and try again.")
    account = tx.get(CustomerAccount, order.customer_account_id)
    partner = tx.get(Partner, order.partner_id)
    assert account is not None and partner is not None
    rate = tax_rate_for(account, partner)
    if any(line.tax_rate_bp != rate for line in lines):
        raise Conflict(
            "The tax rate changed since this order was priced: convert it to draft and "
            "save its lines again."
        )
    move(order, OrderStatus.PROCESSING, now=now)
    order.submit_count = sequence
    order.decline_reason = ""
    tx.add(order)
    return order


def _spec(
    order: Order,
    account: CustomerAccount,
    card: _Card,
    choice: str,
    sequence: int,
    gateway_name: str,
    *,
    actor: str,
) -> payments.AttemptSpec:
    return payments.AttemptSpec(
        partner_id=order.partner_id,
        purpose_key=submit_key(order.id, sequence),  # type: ignore[arg-type]
        amount=order.total,
        currency=order.currency,
        method=card.kind,
        kind=PaymentKind.AUTHORIZATION if choice == "authorize" else PaymentKind.CHARGE,
        customer_account_id=account.id,
        payment_method_id=card.saved_method_id,
        order_id=order.id,
        brand=card.brand,
        last4=card.last4,
        gateway=gateway_name,
        detail={"source": SOURCE, "order_id": order.id, "actor": actor, "method": card.new},
    )


def _pay(
    session: Session,
    gateway: PaymentGateway,
    spec: payments.AttemptSpec,
    card: _Card,
    account: CustomerAccount,
    claim: Callable[[Session], None],
    *,
    now: datetime,
) -> OrderPaymentOutcome:
    customer_ref = account.gateway_customer_ref
    email, name = account.email, account.name
    session.rollback()
    try:
        attempt, created = payments.open_attempt(session, spec, precheck=claim)
    except _Taken:
        session.rollback()
        attempt, created = payments.find_attempt(session, spec.purpose_key), False  # type: ignore[assignment]
    if not created:
        settled = payments.wait_until_settled(session, attempt.id)  # type: ignore[arg-type]
        return outcome_of(session, settled)
    session.rollback()  # no transaction open during the network calls
    result = _call(gateway, attempt, card, customer_ref, email, name)
    return finish_order_payment(session, attempt, result, now=now, gateway=gateway)


def _customer_key(attempt: Payment) -> str:
    return f"{attempt.idempotency_key}:customer"


def _call(
    gateway: PaymentGateway,
    attempt: Payment,
    card: _Card,
    customer_ref: str,
    email: str,
    name: str,
) -> GatewayResult:
    """Save a new card to the processor customer (it will be charged again), then pay."""
    if card.new is not None:
        customer_ref = customer_ref or gateway.create_customer(
            email=email, name=name, idempotency_key=_customer_key(attempt)
        )
        refused = payments.attach_or_decline(
            gateway, attempt, customer_ref=customer_ref, token=card.token
        )
        if refused is not None:
            return refused
    pay = payments.authorize if attempt.kind == PaymentKind.AUTHORIZATION else payments.charge
    return pay(gateway, attempt, token=card.token, customer_ref=customer_ref, description=name)


def finish_order_payment(
    session: Session,
    attempt: Payment,
    result: GatewayResult,
    *,
    now: datetime,
    gateway: PaymentGateway | None = None,
) -> OrderPaymentOutcome:
    """Record the processor's answer to an order submission and apply it (commits).

    The reconciler calls it for a late answer. ``gateway`` finds the processor customer a
    new card was saved to (asked again by the same key, so nothing new is created).
    """
    unchanged = claim_or_outcome(session, attempt, result, now=now)
    if unchanged is not None:
        return unchanged
    order = lock_order(session, attempt.order_id)  # type: ignore[arg-type]
    account = session.get(CustomerAccount, order.customer_account_id)
    assert account is not None
    who = str(attempt.detail.get("actor") or "")  # who submitted it ("" is "system")
    email_ids: list[int] = []
    if result.approved:
        saved = attempt.detail.get("method")
        if saved and not account.gateway_customer_ref and gateway is not None:
            account.gateway_customer_ref = gateway.create_customer(
                email=account.email, name=account.name, idempotency_key=_customer_key(attempt)
            )
            session.add(account)
        keep_method(session, account, attempt, saved=saved)
        if attempt.kind == PaymentKind.AUTHORIZATION:
            move(order, OrderStatus.AUTHORIZED, now=now)
            order.payment_id = attempt.id
            order.authorized_at = now
            order.tags = [tag for tag in order.tags if tag != DECLINED_TAG]
            record(session, order, "order.authorized", actor_label=who, amount=attempt.amount,
                   **card_of(attempt))  # fmt: skip
        else:
            record(session, order, "order.paid", actor_label=who, amount=attempt.amount,
                   **card_of(attempt))  # fmt: skip
            email_ids = apply_order_payment(session, order, attempt, now=now)
    else:
        move(order, OrderStatus.DECLINED, now=now)
        order.tags = [*[t for t in order.tags if t != DECLINED_TAG], DECLINED_TAG]
        order.decline_reason = (result.message or "The payment was declined.")[:300]
        record(
            session,
            order,
            "order.payment_declined",
            actor_label=who,
            amount=attempt.amount,
            reason=order.decline_reason,
            **card_of(attempt),
        )
    session.add(order)
    session.commit()
    return outcome_of(session, attempt, email_ids)


__all__ = [
    "CardChoice",
    "OrderPaymentOutcome",
    "cancel_order",
    "capture_order",
    "convert_to_draft",
    "finish_order_payment",
    "next_submit_sequence",
    "outcome_of",
    "pay_on_approval",
    "submit_order",
    "void_order",
]
