"""Everything the partner's order page shows: Summary, Payment and History tabs.

The order, its lines and customer, the customer's cards on file, the payments made for
the order (declines with their reason included), its history in words, the customer's
approval and signature, and which actions the acting user may take — or why not, in
the words of ``order_access`` and the status machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from app.domain.cards import CardExpiry, ExpiryState, card_expiry
from app.domain.money import format_money
from app.domain.orders import DECLINED_TAG, EDITABLE, PAYABLE, TRANSITIONS, OrderStatus
from app.models import (
    AuditEvent,
    CustomerAccount,
    MethodKind,
    Order,
    OrderLine,
    Partner,
    Payment,
    PaymentMethod,
    User,
)
from app.services.history import HistoryEntry, Subject, describe
from app.services.order_access import collect_refusal, partner_order, send_refusal
from app.services.orders import order_lines
from app.services.receipts import method_label, payment_method_label
from app.services.tenancy import partner_of

NO_LINES = "Add the order's lines and save them first."
_STATUS_NOTES: Mapping[str, str] = {
    OrderStatus.PROCESSING: "Its payment is still with the processor; wait a moment and reload.",
    OrderStatus.PENDING_APPROVAL: "Sent to the customer for approval; waiting for their signature.",
    OrderStatus.APPROVED: "Approved by the customer; the payment is still to collect.",
    OrderStatus.AUTHORIZED: "The card holds the amount until it is captured or voided.",
    OrderStatus.SCHEDULED: "Paid; it activates on its activation date.",
    OrderStatus.VOIDED: "The authorization was released. Convert it to draft to try again.",
    OrderStatus.CANCELED: "It was canceled.",
}


@dataclass(frozen=True)
class Action:
    """One thing a person might do: ``shown`` when the status allows it, ``reason`` when
    the person may not (a permission, or the order has no lines yet)."""

    shown: bool
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.shown and not self.reason


@dataclass(frozen=True)
class CardRow:
    """A card on file of the customer, with where its expiry stands."""

    method: PaymentMethod
    expiry: CardExpiry

    @property
    def usable(self) -> bool:
        return self.expiry.state != ExpiryState.EXPIRED


@dataclass(frozen=True)
class PaymentTabRow:
    """A payment attempt for the order: what it was, how, and what came of it."""

    payment: Payment
    on: date  # in the partner's timezone
    kind_label: str  # "Charge", "Authorization", "Capture", "Void", …
    method_label: str  # "Visa •••• 4242"


@dataclass(frozen=True)
class Approval:
    """The customer-approval side of the order: the link sent, and who signed."""

    sent_at: datetime | None
    expires_at: datetime | None
    sent_by: str
    takes_payment: bool
    signer_name: str
    signature_kind: str  # typed | drawn | ""
    typed_signature: str
    signed_at: datetime | None
    signer_address: str


@dataclass(frozen=True)
class OrderDetail:
    order: Order
    partner: Partner
    customer: CustomerAccount
    lines: list[OrderLine]
    cards: list[CardRow]
    payments: list[PaymentTabRow]
    history: list[HistoryEntry]
    approval: Approval | None
    actions: dict[str, Action] = field(default_factory=dict)
    held_amount: int = 0  # the authorization still to capture (minor units)

    @property
    def declined(self) -> bool:
        return DECLINED_TAG in (self.order.tags or []) or self.order.status == OrderStatus.DECLINED

    @property
    def status_note(self) -> str:
        return _STATUS_NOTES.get(self.order.status, "")

    @property
    def default_card_id(self) -> int | None:
        usable = [row for row in self.cards if row.usable]
        chosen = next((row for row in usable if row.method.is_default), None) or (
            usable[0] if usable else None
        )
        return chosen.method.id if chosen else None


def order_detail(session: Session, user: User, order_id: int, *, as_of: date) -> OrderDetail:
    """The order page of ``order_id`` for ``user`` on the partner's ``as_of``.

    Raises NotFound when the order does not exist or is another partner's.
    """
    order = partner_order(session, user, order_id)
    partner = partner_of(session, user)
    customer = session.get(CustomerAccount, order.customer_account_id)
    assert customer is not None
    lines = order_lines(session, order.id)  # type: ignore[arg-type]
    payments = order_payments(session, order, timezone=partner.timezone)
    return OrderDetail(
        order=order,
        partner=partner,
        customer=customer,
        lines=lines,
        cards=cards_on_file(session, customer.id, as_of=as_of),  # type: ignore[arg-type]
        payments=payments,
        history=order_history(session, order, timezone=partner.timezone),
        approval=_approval(session, order),
        actions=actions_for(order, partner, user, has_lines=bool(lines)),
        held_amount=_held(order, [row.payment for row in payments]),
    )


def actions_for(
    order: Order, partner: Partner, user: User, *, has_lines: bool
) -> dict[str, Action]:
    """What ``user`` may do with ``order`` now, each with the reason when they may not."""
    status = OrderStatus(order.status)
    lines_reason = "" if has_lines and order.total > 0 else NO_LINES
    collect = collect_refusal(partner, user)
    pending = status == OrderStatus.PENDING_APPROVAL
    return {
        "edit": Action(status in EDITABLE),
        "submit": Action(status in PAYABLE, collect or lines_reason),
        "send": Action(
            status == OrderStatus.DRAFT or pending,
            send_refusal(partner, user) or ("" if pending else lines_reason),
        ),
        "capture": Action(status == OrderStatus.AUTHORIZED, collect),
        "void": Action(status == OrderStatus.AUTHORIZED, collect),
        "draft": Action(OrderStatus.DRAFT in TRANSITIONS[status]),
        "cancel": Action(OrderStatus.CANCELED in TRANSITIONS[status]),
    }


def cards_on_file(session: Session, account_id: int, *, as_of: date) -> list[CardRow]:
    """The account's saved cards, the default first, each with its expiry state on
    ``as_of`` (bank accounts are left out: orders are paid by card)."""
    methods = session.exec(
        select(PaymentMethod)
        .where(
            PaymentMethod.customer_account_id == account_id,
            PaymentMethod.kind == MethodKind.CARD,
        )
        .order_by(col(PaymentMethod.is_default).desc(), col(PaymentMethod.id).desc())
    ).all()
    return [CardRow(m, card_expiry(m.exp_month, m.exp_year, as_of=as_of)) for m in methods]


def order_payments(session: Session, order: Order, *, timezone: str) -> list[PaymentTabRow]:
    """The order's Payment tab: every attempt made for it, newest first."""
    rows = session.exec(
        select(Payment)
        .where(Payment.order_id == order.id)
        .order_by(col(Payment.created_at).desc(), col(Payment.id).desc())
    ).all()
    zone = ZoneInfo(timezone)
    return [
        PaymentTabRow(
            payment=p,
            on=p.received_on or p.created_at.astimezone(zone).date(),
            kind_label=p.kind.replace("_", " ").capitalize(),
            method_label=payment_method_label(p) if p.last4 or p.method == "manual" else "—",
        )
        for p in rows
    ]


def order_history(session: Session, order: Order, *, timezone: str) -> list[HistoryEntry]:
    """The order's history in words, oldest first, with the actor's current name."""
    rows = session.exec(
        select(AuditEvent, User.name, User.email)
        .outerjoin(User, col(User.id) == AuditEvent.actor_user_id)
        .where(AuditEvent.subject_type == "order", AuditEvent.subject_id == order.id)
        .order_by(col(AuditEvent.created_at), col(AuditEvent.id))
    ).all()
    zone = ZoneInfo(timezone)
    entries = []
    for event, name, email in rows:
        text, details = describe_order_event(event.action, event.detail or {}, order.currency)
        actor = event.actor_label.strip() or "system"
        entries.append(
            HistoryEntry(
                at=event.created_at.astimezone(zone),
                actor=name or email or actor[:1].upper() + actor[1:],
                text=text,
                details=details,
                action=event.action,
            )
        )
    return entries


def _amount(detail: Mapping[str, object], key: str, currency: str) -> list[str]:
    value = detail.get(key)
    return (
        [f"{key.capitalize()}: {format_money(value, currency)}"] if isinstance(value, int) else []
    )


ORDER_SENTENCES: Mapping[str, str] = {
    "order.created": "Created the order",
    "order.lines_saved": "Changed the order's lines",
    "order.submitted": "Submitted the order for payment",
    "order.paid": "Payment approved",
    "order.payment_declined": "Payment declined",
    "order.activated": "Order activated",
    "order.scheduled": "Order scheduled for activation",
    "order.authorized": "Card authorized",
    "order.captured": "Authorization captured",
    "order.capture_declined": "Capture declined",
    "order.voided": "Authorization voided",
    "order.void_declined": "Void refused by the processor",
    "order.converted_to_draft": "Converted to draft",
    "order.canceled": "Order canceled",
    "order.sent_for_approval": "Sent to the customer for approval",
    "order.approval_resent": "Approval link sent again",
    "order.approved_by_customer": "Approved and signed by the customer",
}
_CHOICES: Mapping[str, str] = {
    "charge": "Charge now",
    "authorize": "Authorize only",
    "approval": "Paid on approval",
}
_TEXT_DETAILS = (
    ("reason", "Reason"),
    ("number", "Number"),
    ("signer_name", "Signed by"),
    ("client_address", "From address"),
    ("on", "Activation date"),
)


def describe_order_event(
    action: str, detail: Mapping[str, object], currency: str
) -> tuple[str, list[str]]:
    """The sentence and detail lines of one order history row (raises nothing).

    Known actions get their own sentence with amounts formatted in the order's currency;
    any other action reads as the account history shows it.
    """
    sentence = ORDER_SENTENCES.get(action)
    if sentence is None:
        return describe(action, detail, Subject("", currency))
    lines: list[str] = []
    count = detail.get("lines")
    if isinstance(count, int):
        lines.append(f"{count} line{'s' if count != 1 else ''}")
    for key in ("total", "amount"):
        lines += _amount(detail, key, currency)
    choice = detail.get("choice")
    if isinstance(choice, str) and choice in _CHOICES:
        lines.append(_CHOICES[choice])
    if detail.get("last4"):
        lines.append(method_label("card", str(detail.get("brand") or ""), str(detail["last4"])))
    for key, title in _TEXT_DETAILS:
        value = detail.get(key)
        if isinstance(value, str) and value:
            lines.append(f"{title}: {value}")
    return sentence, lines


def _approval(session: Session, order: Order) -> Approval | None:
    if order.approval_sent_at is None and order.signed_at is None:
        return None
    sender = session.get(User, order.sent_by_user_id) if order.sent_by_user_id else None
    return Approval(
        sent_at=order.approval_sent_at,
        expires_at=order.approval_expires_at,
        sent_by=(sender.name or sender.email) if sender else "",
        takes_payment=order.approval_takes_payment,
        signer_name=order.signer_name,
        signature_kind=order.signature_kind,
        typed_signature=order.signature if order.signature_kind == "typed" else "",
        signed_at=order.signed_at,
        signer_address=order.signer_address,
    )


def _held(order: Order, payments: list[Payment]) -> int:
    """The authorized amount still to capture (the order's total when none is found)."""
    if order.status != OrderStatus.AUTHORIZED:
        return 0
    held = next((p for p in payments if p.kind == "authorization" and p.status == "approved"), None)
    return held.amount if held is not None else order.total
