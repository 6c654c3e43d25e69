"""Manual charges of a subscription: "Charge now" and the initial amount (ARCHITECTURE §1).

A manual charge is not a recurring charge: it counts against the total
(``amount_charged``) but not towards ``recurring_count``, so the schedule keeps its next
date unless the balance is now paid (a ``balance_due`` schedule then completes). The
caller shows the resulting next date and offers to skip the next scheduled charge, so
nobody is charged twice by accident.

Each charge has the purpose key ``manual:{subscription}:{n}``. A page that offers charge
number ``n`` (``sequence``) is charged at most once, however often it is submitted. Money
moves as in ``app.services.payments``: the attempt is committed first, the processor is
called with no transaction open, and the outcome and all its effects commit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, func, select

from app.domain import schedule as rules
from app.domain.errors import Conflict, NotFound
from app.domain.money import format_money
from app.gateway.base import GatewayResult, PaymentGateway
from app.models import (
    CustomerAccount,
    Partner,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Subscription,
    User,
)
from app.services import payments
from app.services.audit_log import add_event
from app.services.invoices import LineInput, add_invoice, apply_paid_amount
from app.services.notifications import write_receipt
from app.services.schedules import schedule_of
from app.services.subscription_access import (
    lock_in_transaction,
    method_of,
    partner_subscription,
    store_next,
    word,
)

MANUAL_SOURCE: Final = "manual_charge"
CHARGEABLE: Final = (
    rules.SubscriptionStatus.RECURRING,
    rules.SubscriptionStatus.ERROR,
    rules.SubscriptionStatus.STOPPED,
)


@dataclass(frozen=True)
class ManualCharge:
    """The outcome of a manual charge ("Charge now", or the initial amount).

    ``status`` is a payment status (approved, declined, error, unknown, pending);
    ``next_charge_date`` is the schedule's next recurring charge after it (None when
    nothing more is scheduled). ``email_ids`` are outbox rows to enqueue after commit.
    """

    status: str
    subscription_id: int
    amount: int
    currency: str
    payment_id: int | None
    next_charge_date: date | None
    message: str = ""
    initial: bool = False
    email_ids: tuple[int, ...] = ()

    @property
    def approved(self) -> bool:
        return self.status == PaymentStatus.APPROVED

    @property
    def summary(self) -> str:
        """One sentence for the person who pressed the button."""
        amount = format_money(self.amount, self.currency)
        what = "Initial amount" if self.initial else "Manual charge"
        if self.approved:
            return f"{what} of {amount} approved."
        if self.status in (PaymentStatus.DECLINED, PaymentStatus.ERROR):
            return f"{what} of {amount} declined: {self.message}"
        return f"{what} of {amount}: {self.message}"


def manual_key(subscription_id: int, sequence: int) -> str:
    """The purpose key of the subscription's manual charge number ``sequence``."""
    return f"manual:{subscription_id}:{sequence}"


def manual_count(session: Session, subscription_id: int) -> int:
    """How many manual charges (any outcome) the subscription has had."""
    return int(
        session.exec(
            select(func.count())
            .select_from(Payment)
            .where(
                Payment.subscription_id == subscription_id,
                col(Payment.purpose_key).startswith(f"manual:{subscription_id}:"),
            )
        ).one()
    )


def manual_spec(
    sub: Subscription,
    account: CustomerAccount,
    method: PaymentMethod,
    sequence: int,
    amount: int,
    user: User,
    *,
    gateway_name: str,
    initial: bool = False,
) -> payments.AttemptSpec:
    """The attempt of manual charge number ``sequence`` (not recurring, no period)."""
    return payments.AttemptSpec(
        partner_id=sub.partner_id,
        purpose_key=manual_key(sub.id, sequence),  # type: ignore[arg-type]
        amount=amount,
        currency=sub.currency,
        method=method.kind,
        customer_account_id=account.id,
        subscription_id=sub.id,
        payment_method_id=method.id,
        brand=method.brand,
        last4=method.last4,
        is_recurring=False,
        gateway=gateway_name,
        detail={
            "source": MANUAL_SOURCE,
            "initial": initial,
            "payer_name": account.name,
            "actor": user.email,
            "actor_user_id": user.id,
        },
    )


def charge_now(
    session: Session,
    gateway: PaymentGateway,
    user: User,
    subscription_id: int,
    *,
    now: datetime,
    sequence: int | None = None,
) -> ManualCharge:
    """Charge the next installment now, as a manual (not recurring) charge.

    The amount is what the next recurring charge would take. Approved: a paid invoice, a
    receipt email, the amount counted against the total; the next scheduled date stays
    (unless the balance is now paid). Declined: the reason; the status is unchanged.

    ``sequence`` is the charge number the page offered (``next_manual_sequence``): a
    second submission of that page returns the first one's outcome instead of charging
    again. Without it, the next number is used.

    Raises:
        NotFound: not a partner user, or a subscription of another partner.
        Conflict: complete or suspended, nothing owed, no payment method, or ``sequence``
            is not the next number (the page is out of date).
    """
    sub = partner_subscription(session, user, subscription_id)
    assert sub.id is not None
    sub_id = sub.id
    next_sequence = manual_count(session, sub_id) + 1
    if sequence is not None:
        earlier = payments.find_attempt(session, manual_key(sub_id, sequence))
        if earlier is not None:
            settled = payments.wait_until_settled(session, earlier.id)  # type: ignore[arg-type]
            return manual_outcome(session, settled)
        if sequence != next_sequence:
            raise Conflict("This page is out of date: reload it before charging.")
    amount, method, account = _chargeable(session, sub)
    seen = (sub.status, sub.amount_charged)
    spec = manual_spec(sub, account, method, next_sequence, amount, user, gateway_name=gateway.name)
    call = {
        "token": method.token,
        "customer_ref": account.gateway_customer_ref,
        "description": sub.description,
    }

    def still_the_same(tx: Session) -> None:
        # In the attempt's transaction, under the row lock: nothing changed meanwhile.
        current = lock_in_transaction(tx, sub_id)
        if (current.status, current.amount_charged) != seen or (
            manual_count(tx, sub_id) + 1 != next_sequence
        ):
            raise Conflict("The subscription changed meanwhile: reload the page and try again.")

    session.rollback()
    attempt, created = payments.open_attempt(session, spec, precheck=still_the_same)
    if not created:
        settled = payments.wait_until_settled(session, attempt.id)  # type: ignore[arg-type]
        return manual_outcome(session, settled)
    return send_manual(session, gateway, attempt, now=now, **call)


def _chargeable(session: Session, sub: Subscription) -> tuple[int, PaymentMethod, CustomerAccount]:
    if sub.status not in CHARGEABLE:
        raise Conflict(f"A {word(sub.status)} subscription cannot be charged.")
    amount = rules.charge_amount(schedule_of(sub), amount_charged=sub.amount_charged)
    if amount <= 0:
        raise Conflict("Nothing is owed on this subscription.")
    method = method_of(session, sub)
    if method is None:
        raise Conflict("This customer has no payment method on file.")
    account = session.get(CustomerAccount, sub.customer_account_id)
    assert account is not None
    return amount, method, account


def send_manual(
    session: Session,
    gateway: PaymentGateway,
    attempt: Payment,
    *,
    token: str,
    customer_ref: str,
    description: str,
    now: datetime,
) -> ManualCharge:
    """Call the processor for a committed manual attempt and record the outcome."""
    session.rollback()  # no transaction open during the network call
    result = payments.charge(
        gateway, attempt, token=token, customer_ref=customer_ref, description=description
    )
    return finish_manual_charge(session, attempt, result, now=now)


def finish_manual_charge(
    session: Session, attempt: Payment, result: GatewayResult, *, now: datetime
) -> ManualCharge:
    """Record the processor's answer for a manual attempt and apply its effects (commits).

    A declined initial amount puts the schedule in ``error`` with the reason, so no
    recurring charge runs before a person has looked at it. The reconciler should call
    this for a settled ``manual:`` attempt (``detail["source"] == "manual_charge"``).
    """
    if not payments.claim_outcome(session, attempt, result, now=now):
        session.rollback()
        settled = session.get(Payment, attempt.id, populate_existing=True)
        assert settled is not None
        return manual_outcome(session, settled)
    email_ids: list[int] = []
    _audit_manual(session, attempt)
    if result.approved:
        email_ids = apply_manual_charge(session, attempt)
    elif result.status in ("declined", "error") and attempt.detail.get("initial"):
        sub = lock_in_transaction(session, attempt.subscription_id)  # type: ignore[arg-type]
        sub.status = rules.SubscriptionStatus.ERROR
        reason = result.message or "no reason given"
        sub.last_error = f"The initial charge was declined: {reason}"[:500]
        sub.updated_at = now
        session.add(sub)
    session.commit()
    return manual_outcome(session, attempt, email_ids)


def _audit_manual(session: Session, attempt: Payment) -> None:
    """The audit event of a settled manual charge: approved, or not (with the reason).

    An attempt still open (the answer was lost) gets its event when the reconciler
    settles it through :func:`finish_manual_charge`.
    """
    if attempt.status in payments.OPEN_STATUSES:
        return
    what = "initial_charge" if attempt.detail.get("initial") else "charged_now"
    approved = attempt.status == PaymentStatus.APPROVED
    add_event(
        session,
        action=f"subscription.{what}" if approved else f"subscription.{what}_failed",
        subject_type="subscription",
        subject_id=attempt.subscription_id,
        partner_id=attempt.partner_id,
        customer_account_id=attempt.customer_account_id,
        actor_user_id=attempt.detail.get("actor_user_id"),  # type: ignore[arg-type]
        actor_label=str(attempt.detail.get("actor", "")),
        detail={
            "payment_id": attempt.id,
            "amount": format_money(attempt.amount, attempt.currency),
            "status": str(attempt.status),
            "reason": attempt.decline_reason,
        },
    )


def apply_manual_charge(session: Session, attempt: Payment) -> list[int]:
    """Every effect of an approved manual charge, in the caller's transaction.

    A paid invoice (dated the partner's local day of the charge), the amount counted
    against the total (not as a recurring charge), the next date refreshed (a paid
    ``balance_due`` schedule completes), and a receipt email. Returns the email row ids.
    """
    sub = lock_in_transaction(session, attempt.subscription_id)  # type: ignore[arg-type]
    account = session.get(CustomerAccount, sub.customer_account_id)
    partner = session.get(Partner, sub.partner_id)
    assert account is not None and partner is not None
    day = (attempt.settled_at or attempt.created_at).astimezone(ZoneInfo(partner.timezone))
    label = "initial payment" if attempt.detail.get("initial") else "payment"
    invoice = add_invoice(
        session,
        partner=partner,
        account=account,
        lines=[LineInput(f"{sub.description} — {label}", 1, attempt.amount)],
        issue_date=day.date(),
        due_date=day.date(),
        subscription_id=sub.id,
        prices_include_tax=True,
    )
    apply_paid_amount(invoice, invoice.total)
    session.add(invoice)
    attempt.invoice_id = invoice.id
    session.add(attempt)
    sub.amount_charged += attempt.amount
    store_next(sub)
    session.add(sub)
    session.flush()
    return write_receipt(
        session, attempt, to_address=account.billing_email or account.email, partner=partner
    )


def manual_outcome(
    session: Session, attempt: Payment, email_ids: list[int] | None = None
) -> ManualCharge:
    """A manual attempt as it stands, with its subscription's next date."""
    sub = session.get(Subscription, attempt.subscription_id)
    assert sub is not None
    status = str(attempt.status)
    message = "" if status == PaymentStatus.APPROVED else payments.unapproved_message(attempt)
    return ManualCharge(
        status=status,
        subscription_id=sub.id,  # type: ignore[arg-type]
        amount=attempt.amount,
        currency=attempt.currency,
        payment_id=attempt.id,
        next_charge_date=sub.next_charge_date,
        message=message,
        initial=bool(attempt.detail.get("initial")),
        email_ids=tuple(email_ids or ()),
    )


def manual_charge_result(
    session: Session, user: User, subscription_id: int, payment_id: int
) -> ManualCharge:
    """One manual charge of a partner's subscription, as it stands now.

    Raises:
        NotFound: not a partner user, or the payment is not a manual charge of that
            subscription of the user's partner.
    """
    sub = partner_subscription(session, user, subscription_id)
    attempt = session.get(Payment, payment_id)
    if (
        attempt is None
        or attempt.subscription_id != sub.id
        or not attempt.purpose_key.startswith(f"manual:{sub.id}:")
    ):
        raise NotFound("Not found.")
    return manual_outcome(session, attempt)
