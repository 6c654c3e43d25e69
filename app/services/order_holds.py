"""An authorized order: capture (all or part) or void its hold, once; and the order's
moves that take no money (convert to draft, cancel).

Capture and void attempts have the purpose keys ``order:{id}:capture:{n}`` and
``order:{id}:void:{n}``; under the order's row lock, a new one is refused while another
is under way or approved, so a person voiding and the expiry job voiding at the same
moment release the hold once, and a hold is never both captured and voided.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Final

from sqlmodel import Session, col, func, select

from app.clock import local_day
from app.domain.errors import Conflict, DomainError, InvalidInput
from app.domain.money import format_money
from app.domain.orders import IllegalTransition, OrderStatus
from app.gateway.base import GatewayResult, PaymentGateway
from app.models import Order, Partner, Payment, PaymentKind, PaymentStatus, User
from app.services import payments
from app.services.order_access import ensure_may_collect, lock_order, move, partner_order, record
from app.services.order_activation import apply_order_payment
from app.services.order_outcomes import OrderPaymentOutcome, card_of, claim_or_outcome, outcome_of

HOLD_SOURCE: Final = "order_hold"
_TARGET: Final = {PaymentKind.CAPTURE: OrderStatus.ACTIVATED, PaymentKind.VOID: OrderStatus.VOIDED}


def capture_order(
    session: Session,
    gateway: PaymentGateway,
    user: User,
    order_id: int,
    *,
    amount: int,
    now: datetime,
    as_of: date,
) -> OrderPaymentOutcome:
    """Capture ``amount`` (all or part) of an authorized order's hold, once.

    Approved: the order is paid (paid invoice; a partial capture leaves the rest due on
    it) and activated or scheduled. Declined: the order stays authorized, with the reason.

    Raises:
        NotFound: not a partner user, or an order of another partner.
        Forbidden: a sales user the partner does not allow to collect payments.
        IllegalTransition: the order is not authorized.
        InvalidInput: an amount below one minor unit or above the hold (field ``amount``).
        Conflict: a capture or void of this hold is already under way or done.
    """
    order, hold = _authorized(session, user, order_id, PaymentKind.CAPTURE)
    if amount < 1 or amount > hold.amount:
        raise InvalidInput(
            f"Capture at most the {format_money(hold.amount, hold.currency)} authorized.",
            "amount",
        )
    return _follow_up(
        session, gateway, order, hold, PaymentKind.CAPTURE, amount, user.email, "", now
    )


def void_order(
    session: Session, gateway: PaymentGateway, user: User, order_id: int, *, now: datetime
) -> OrderPaymentOutcome:
    """Release an authorized order's hold, once; the order becomes ``voided``.

    Raises:
        NotFound: not a partner user, or an order of another partner.
        Forbidden: a sales user the partner does not allow to collect payments.
        IllegalTransition: the order is not authorized.
        Conflict: a capture or void of this hold is already under way or done.
    """
    order, hold = _authorized(session, user, order_id, PaymentKind.VOID)
    return _follow_up(
        session, gateway, order, hold, PaymentKind.VOID, hold.amount, user.email, "", now
    )


def void_expired_authorizations(
    session: Session, gateway: PaymentGateway, *, partner_id: int, as_of: date, now: datetime
) -> int:
    """Void the partner's holds not captured within ``authorization_days`` of the day they
    were placed (partner-local ``as_of``). Safe to run again. Returns how many it voided.
    """
    partner = session.get(Partner, partner_id)
    assert partner is not None
    days = partner.authorization_days
    held = session.exec(
        select(Order.id, Order.authorized_at).where(
            Order.partner_id == partner_id, Order.status == OrderStatus.AUTHORIZED
        )
    ).all()
    session.rollback()
    voided = 0
    for order_id, authorized_at in held:
        if authorized_at is None:
            continue
        if local_day(partner.timezone, authorized_at) + timedelta(days=days) > as_of:
            continue
        order = session.get(Order, order_id)
        hold = session.get(Payment, order.payment_id) if order and order.payment_id else None
        if order is None or hold is None:
            continue
        reason = f"Not captured within {days} days."
        try:
            outcome = _follow_up(
                session, gateway, order, hold, PaymentKind.VOID, hold.amount, "", reason, now
            )
        except DomainError:  # captured or voided meanwhile
            session.rollback()
            continue
        voided += outcome.approved
    return voided


def _authorized(
    session: Session, user: User, order_id: int, kind: PaymentKind
) -> tuple[Order, Payment]:
    order = partner_order(session, user, order_id)
    partner = session.get(Partner, order.partner_id)
    assert partner is not None
    ensure_may_collect(partner, user)
    hold = session.get(Payment, order.payment_id) if order.payment_id else None
    if order.status != OrderStatus.AUTHORIZED or hold is None:
        raise IllegalTransition(OrderStatus(order.status), _TARGET[kind])
    return order, hold


def _follow_up(
    session: Session,
    gateway: PaymentGateway,
    order: Order,
    hold: Payment,
    kind: PaymentKind,
    amount: int,
    actor: str,
    reason: str,
    now: datetime,
) -> OrderPaymentOutcome:
    order_id = order.id
    assert order_id is not None
    sequence = _count(session, order_id, kind) + 1
    spec = payments.AttemptSpec(
        partner_id=order.partner_id,
        purpose_key=f"order:{order_id}:{kind}:{sequence}",
        amount=amount,
        currency=hold.currency,
        method=hold.method,
        kind=kind,
        customer_account_id=order.customer_account_id,
        payment_method_id=hold.payment_method_id,
        parent_payment_id=hold.id,
        order_id=order_id,
        brand=hold.brand,
        last4=hold.last4,
        gateway=gateway.name,
        detail={"source": HOLD_SOURCE, "order_id": order_id, "actor": actor, "reason": reason},
    )

    def still_held(tx: Session) -> None:
        current = lock_order(tx, order_id)
        if current.status != OrderStatus.AUTHORIZED:
            raise IllegalTransition(OrderStatus(current.status), _TARGET[kind])
        busy = tx.exec(
            select(Payment.id).where(
                Payment.order_id == order_id,
                col(Payment.kind).in_((PaymentKind.CAPTURE, PaymentKind.VOID)),
                col(Payment.status).in_(
                    (PaymentStatus.PENDING, PaymentStatus.UNKNOWN, PaymentStatus.APPROVED)
                ),
            )
        ).first()
        if busy is not None:
            raise Conflict("A capture or void of this authorization is already under way.")

    session.rollback()
    attempt, created = payments.open_attempt(session, spec, precheck=still_held)
    if not created:
        settled = payments.wait_until_settled(session, attempt.id)  # type: ignore[arg-type]
        return outcome_of(session, settled)
    session.rollback()  # no transaction open during the network call
    if kind == PaymentKind.CAPTURE:
        result = payments.capture(gateway, attempt, authorization=hold)
    else:
        result = payments.void(gateway, attempt, authorization=hold)
    return finish_hold(session, attempt, result, now=now)


def _count(session: Session, order_id: int, kind: PaymentKind) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(Payment)
            .where(Payment.order_id == order_id, Payment.kind == kind)
        ).one()
    )


def finish_hold(
    session: Session, attempt: Payment, result: GatewayResult, *, now: datetime
) -> OrderPaymentOutcome:
    """Record the processor's answer to a capture or void and apply it (commits).

    The reconciler calls it for a late answer.
    """
    unchanged = claim_or_outcome(session, attempt, result, now=now)
    if unchanged is not None:
        return unchanged
    order = lock_order(session, attempt.order_id)  # type: ignore[arg-type]
    actor = str(attempt.detail.get("actor") or "")
    reason = str(attempt.detail.get("reason") or "")
    who = {"actor_label": actor or "system"}
    email_ids: list[int] = []
    if not result.approved:
        verb = "capture" if attempt.kind == PaymentKind.CAPTURE else "void"
        record(
            session,
            order,
            f"order.{verb}_declined",
            amount=attempt.amount,
            reason=attempt.decline_reason,
            **who,
        )
    elif attempt.kind == PaymentKind.VOID:
        move(order, OrderStatus.VOIDED, now=now)
        record(session, order, "order.voided", amount=attempt.amount, reason=reason, **who)
    else:
        record(session, order, "order.captured", amount=attempt.amount, **card_of(attempt), **who)
        email_ids = apply_order_payment(session, order, attempt, now=now)
    session.add(order)
    session.commit()
    return outcome_of(session, attempt, email_ids)


def convert_to_draft(session: Session, user: User, order_id: int, *, now: datetime) -> Order:
    """Put a declined, voided, approved or pending-approval order back to ``draft``.

    Its approval link stops working and a customer signature is cleared (it approved the
    order as it was); the history keeps both. Raises NotFound (another partner's order)
    or IllegalTransition.
    """
    return _without_money(
        session, user, order_id, OrderStatus.DRAFT, "order.converted_to_draft", now
    )


def cancel_order(session: Session, user: User, order_id: int, *, now: datetime) -> Order:
    """Cancel an order that took no money (draft, sent, approved, declined, voided).

    Raises NotFound (another partner's order) or IllegalTransition.
    """
    return _without_money(session, user, order_id, OrderStatus.CANCELED, "order.canceled", now)


def _without_money(
    session: Session, user: User, order_id: int, target: OrderStatus, action: str, now: datetime
) -> Order:
    partner_order(session, user, order_id)
    order = lock_order(session, order_id)
    try:
        move(order, target, now=now)
    except IllegalTransition:
        session.rollback()
        raise
    order.approval_nonce = ""
    order.approval_expires_at = None
    if order.signed_at is not None:
        order.signer_name = order.signature_kind = order.signature = order.signer_address = ""
        order.signed_at = None
    record(session, order, action, user=user)
    session.add(order)
    session.commit()
    return order
