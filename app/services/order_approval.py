"""Sending an order to its customer for approval, and the customer's approval (ADR 0015).

A partner user sends an order (``draft`` → ``pending_approval``); the customer gets an
email with a link ``/approve/<token>``. The token is signed with ``itsdangerous`` over
(order id, nonce); the nonce lives on the order, so re-sending replaces it (the old link
stops working) and approving clears it (single use). On the approval page the customer
signs (typed or drawn) and, when the order takes payment, pays with a card: then the
payment goes through :func:`app.services.order_payments.pay_on_approval`, which records
the signature in the payment attempt's transaction through our ``on_claim`` callback.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from itsdangerous import BadSignature, URLSafeSerializer
from sqlmodel import Session

from app.clock import local_day
from app.domain.errors import Conflict, DomainError, NotFound
from app.domain.orders import OrderStatus
from app.domain.signatures import Signature, SignatureKind, check_signature, png_bytes
from app.gateway.base import PaymentGateway, TokenizedMethod
from app.models import CustomerAccount, Order, Partner, User
from app.services import order_payments
from app.services.notifications import write_email
from app.services.order_access import (
    approval_takes_payment,
    ensure_may_send,
    lock_order,
    move,
    partner_order,
    record,
)
from app.services.order_activation import order_lines
from app.services.order_approval_page import (
    ApprovalPage,
    after_payment_settles,
    page_for,
)
from app.services.order_outcomes import OrderPaymentOutcome
from app.services.widget_payments import FieldErrors

SALT: Final = "portico-order-approval"
# Once the customer has signed, the link shows the order's outcome in these statuses.
_SIGNED: Final = frozenset(
    {
        OrderStatus.APPROVED,
        OrderStatus.PROCESSING,
        OrderStatus.AUTHORIZED,
        OrderStatus.SCHEDULED,
        OrderStatus.ACTIVATED,
        OrderStatus.DECLINED,
    }
)


class ApprovalLinkInvalid(NotFound):
    """A tampered, malformed or unknown approval token (404, nothing about any order)."""

    def __init__(self) -> None:
        super().__init__("This approval link is not valid. Check that you copied all of it.")


class ApprovalLinkGone(DomainError):
    """A genuine link that no longer works: replaced, expired, or the order withdrawn (410)."""

    status_code = 410

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # replaced | expired | closed


@dataclass(frozen=True)
class ApprovalResult:
    """What approving did; ``replay`` when the link had already been used (nothing new)."""

    page: ApprovalPage
    payment: OrderPaymentOutcome | None
    email_ids: tuple[int, ...]
    replay: bool = False


class _LinkUsed(DomainError):
    """Raised inside the claim when another request used the link first."""


def _serializer(secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=SALT)


def token_for(secret: str, order: Order) -> str:
    """The URL token of the order's current approval link (signed; the order decides the rest)."""
    return _serializer(secret).dumps({"o": order.id, "n": order.approval_nonce})


def send_for_approval(
    session: Session, user: User, order_id: int, *, now: datetime, base_url: str, secret: str
) -> tuple[Order, list[int]]:
    """Send (from ``draft``) or re-send (while ``pending_approval``) an order for approval.

    Every send makes a new nonce and expiry (``partner.approval_link_days``), so earlier
    links stop working; records who sent it and whether the approval page takes a card;
    writes the approval email to the customer's billing email (else their email) and a
    history event; commits once. Returns the order and the email row ids to enqueue.

    Raises:
        NotFound: not a partner user, or another partner's order.
        Forbidden: a sales user the partner does not allow to send (the reason says which
            setting).
        Conflict: the order has no lines or no total, or its status cannot be sent
            (IllegalTransition, e.g. an activated order).
    """
    partner_order(session, user, order_id)  # tenant scope first: a foreign id is NotFound
    order = lock_order(session, order_id)
    partner = session.get(Partner, order.partner_id)
    account = session.get(CustomerAccount, order.customer_account_id)
    assert partner is not None and account is not None
    ensure_may_send(partner, user)
    lines = order_lines(session, order_id)
    if not lines or order.total <= 0:
        raise Conflict("Add at least one product line with a price before sending the order.")
    resend = order.status == OrderStatus.PENDING_APPROVAL
    if not resend:
        move(order, OrderStatus.PENDING_APPROVAL, now=now)  # raises IllegalTransition
        _forget_signature(order)  # a new approval round needs a new signature
    order.sent_by_user_id = user.id
    order.approval_takes_payment = approval_takes_payment(partner, user)
    order.approval_nonce = secrets.token_urlsafe(24)
    order.approval_sent_at = now
    order.approval_expires_at = now + timedelta(days=partner.approval_link_days)
    order.payment_choice = "approval"
    order.updated_at = now
    session.add(order)
    to_address = account.billing_email or account.email
    expires_on = local_day(partner.timezone, order.approval_expires_at)
    message = write_email(
        session,
        template="order_approval",
        dedupe_key=f"order-approval:{order.id}:{order.approval_nonce}",
        to_address=to_address,
        subject=f"Please approve order {order.number} from {partner.name}",
        partner_id=partner.id,
        order=order,
        lines=lines,
        partner=partner,
        account=account,
        takes_payment=order.approval_takes_payment,
        url=f"{base_url}/approve/{token_for(secret, order)}",
        expires_on=expires_on,
    )
    record(
        session,
        order,
        "order.approval_resent" if resend else "order.sent_for_approval",
        user=user,
        to=to_address,
        takes_payment=order.approval_takes_payment,
        expires_on=expires_on.isoformat(),
    )
    session.commit()
    return order, [message.id] if message.id is not None else []


def approval_page(session: Session, token: str, *, secret: str, now: datetime) -> ApprovalPage:
    """The approval page of ``token``: the order to sign, or its outcome once signed.

    Raises:
        ApprovalLinkInvalid: tampered, malformed, or for no order (404).
        ApprovalLinkGone: replaced by a newer link, expired (the message gives the date),
            or the order is no longer waiting for approval (410).
    """
    order_id, nonce = _read_token(secret, token)
    order = session.get(Order, order_id, populate_existing=True)
    if order is None:
        raise ApprovalLinkInvalid()
    partner = session.get(Partner, order.partner_id)
    assert partner is not None
    state = _link_state(order, partner, nonce, now)
    if state == "done" and order.status == OrderStatus.PROCESSING:
        order = after_payment_settles(session, order)
    return page_for(session, order, partner, state)


def approve(
    session: Session,
    gateway: PaymentGateway,
    token: str,
    *,
    signer_name: str,
    signature_kind: str,
    signature: str,
    card: TokenizedMethod | None,
    sequence: int,
    client_address: str,
    now: datetime,
    as_of: date,
    secret: str,
) -> ApprovalResult:
    """The customer approves the order of ``token``: sign, and pay when it takes payment.

    Without payment: the signature (name, kind, signature, time, client address) is kept,
    the link is used up, the order becomes ``approved``, history records it; one commit.
    With payment: :func:`order_payments.pay_on_approval` charges ``card`` once per
    ``sequence`` and records the signature in the attempt's transaction (approved: the
    order activates or is scheduled, with a paid invoice; declined: ``declined`` with the
    tag "Payment declined"). A link already used returns the order's outcome with
    ``replay`` set: nothing is signed or charged twice.

    Raises:
        ApprovalLinkInvalid: tampered, malformed, or for no order (404).
        ApprovalLinkGone: replaced, expired, or the order is no longer waiting (410).
        FieldErrors: by field: ``signer_name``, ``signature_kind``, ``signature``,
            ``card`` (required when the order takes payment).
        Conflict: the page is out of date (another submission changed the order).
    """
    order_id, nonce = _read_token(secret, token)
    order = session.get(Order, order_id, populate_existing=True)
    if order is None:
        raise ApprovalLinkInvalid()
    partner = session.get(Partner, order.partner_id)
    assert partner is not None
    if _link_state(order, partner, nonce, now) == "done":
        return _replayed(session, order, partner)
    checked, errors = check_signature(signer_name, signature_kind, signature)
    takes_payment = order.approval_takes_payment
    if takes_payment and card is None:
        errors["card"] = "Enter your card details to pay for the order."
    if errors or checked is None:
        raise FieldErrors(errors)

    def claim(tx: Session, locked: Order) -> None:
        _claim_link(tx, locked, partner, nonce, checked, client_address=client_address, now=now)

    if not takes_payment:
        session.rollback()
        locked = lock_order(session, order_id)
        try:
            claim(session, locked)
        except _LinkUsed:
            session.rollback()
            return _replayed(session, order, partner)
        move(locked, OrderStatus.APPROVED, now=now)
        record(session, locked, "order.approved_by_customer", **_signed_detail(locked))
        session.add(locked)
        session.commit()
        return ApprovalResult(page_for(session, locked, partner, "done"), None, ())
    assert card is not None
    try:
        outcome = order_payments.pay_on_approval(
            session, gateway, order_id, card=card, sequence=sequence, now=now, as_of=as_of,
            on_claim=claim,
        )  # fmt: skip
    except (_LinkUsed, Conflict):
        # Another submission took the order first (the link is used, or the order is
        # already with the processor): show what became of it, or say why not.
        session.rollback()
        current = session.get(Order, order_id, populate_existing=True)
        assert current is not None
        if _link_state(current, partner, nonce, now) != "done":
            raise
        return _replayed(session, current, partner)
    session.rollback()
    settled = session.get(Order, order_id, populate_existing=True)
    assert settled is not None
    return ApprovalResult(page_for(session, settled, partner, "done"), outcome, outcome.email_ids)


def signature_png(session: Session, user: User, order_id: int) -> bytes:
    """The drawn signature of one of the partner's orders, as PNG bytes.

    Raises NotFound for another partner's order, or an order without a drawn signature.
    """
    order = partner_order(session, user, order_id)
    if order.signature_kind != SignatureKind.DRAWN or not order.signature:
        raise NotFound("This order has no drawn signature.")
    try:
        return png_bytes(order.signature)
    except ValueError:
        raise NotFound("This order has no drawn signature.") from None


# -- the link -------------------------------------------------------------------------------


def _read_token(secret: str, token: str) -> tuple[int, str]:
    try:
        data = _serializer(secret).loads(token)
    except BadSignature:
        raise ApprovalLinkInvalid() from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("o"), int)
        or not isinstance(data.get("n"), str)
        or not data["n"]
    ):
        raise ApprovalLinkInvalid()
    return data["o"], data["n"]


def _link_state(order: Order, partner: Partner, nonce: str, now: datetime) -> str:
    """``open`` or ``done`` (signed: show the outcome); raises ApprovalLinkGone otherwise."""
    if order.approval_nonce and secrets.compare_digest(order.approval_nonce, nonce):
        if order.status != OrderStatus.PENDING_APPROVAL:
            raise _closed(partner)
        expires = order.approval_expires_at
        if expires is None or expires <= now:
            on = local_day(partner.timezone, expires or now)
            raise ApprovalLinkGone(
                f"This approval link expired on {on:%b} {on.day}, {on.year}. "
                f"Ask {partner.name} to send you a new one.",
                "expired",
            )
        return "open"
    if order.approval_nonce:
        raise ApprovalLinkGone(
            f"{partner.name} has sent a newer approval link for this order; this one no "
            "longer works. Use the link in the most recent email.",
            "replaced",
        )
    if order.signed_at is not None and order.status in _SIGNED:
        return "done"
    raise _closed(partner)


def _closed(partner: Partner) -> ApprovalLinkGone:
    return ApprovalLinkGone(
        f"This order is no longer waiting for your approval. Contact {partner.name} if you "
        "have questions about it.",
        "closed",
    )


def _claim_link(
    session: Session,
    order: Order,
    partner: Partner,
    nonce: str,
    signature: Signature,
    *,
    client_address: str,
    now: datetime,
) -> None:
    """Under the order's lock: the link is still current, then keep the signature (no commit).

    Raises _LinkUsed when another request used the link first, ApprovalLinkGone when it
    was replaced, expired or withdrawn meanwhile. Does not change the status.
    """
    if _link_state(order, partner, nonce, now) != "open":
        raise _LinkUsed("This order has already been approved.")
    order.signer_name = signature.signer_name
    order.signature_kind = signature.kind
    order.signature = signature.value
    order.signed_at = now
    order.signer_address = client_address[:64]
    order.approval_nonce = ""  # single use
    order.updated_at = now
    session.add(order)
    session.flush()


def _forget_signature(order: Order) -> None:
    order.signer_name = ""
    order.signature_kind = ""
    order.signature = ""
    order.signed_at = None
    order.signer_address = ""


def _signed_detail(order: Order) -> dict[str, object]:
    return {
        "actor_label": f"customer {order.signer_name}",
        "signer_name": order.signer_name,
        "signature_kind": order.signature_kind,
        "client_address": order.signer_address,
    }


def _replayed(session: Session, order: Order, partner: Partner) -> ApprovalResult:
    if order.status == OrderStatus.PROCESSING:
        order = after_payment_settles(session, order)
    return ApprovalResult(page_for(session, order, partner, "done"), None, (), replay=True)
