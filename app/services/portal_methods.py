"""The customer's payment methods: the list with expiry flags, add, make default, remove.

Every function acts on the signed-in customer's own account; a method id of another
account answers NotFound, exactly like one that does not exist. Rules:

- An account has exactly one default method once it has any (the first one saved is).
- A subscription is charged to its own ``payment_method_id``, else to the account's
  default (``subscription_access.method_of``). Subscriptions charged to the default
  follow it when another method becomes the default; those pinned to another method
  keep theirs.
- A method cannot be removed while it is the account's only one and pays for an active
  subscription (recurring, error or suspended) or a scheduled payment: the customer adds
  another first. Removing one moves what it paid for to the (new) default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Final

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.domain import schedule as rules
from app.domain.cards import CardExpiry, card_expiry
from app.domain.errors import Conflict, NotFound
from app.gateway.base import GatewayError, PaymentGateway, TokenizedMethod
from app.models import (
    AuditEvent,
    CustomerAccount,
    Partner,
    Payment,
    PaymentMethod,
    ScheduledPayment,
    ScheduledStatus,
    Subscription,
    User,
)
from app.services.customer_billing import lock_account, promote, save_tokenized
from app.services.subscription_access import audit, default_method
from app.services.tenancy import own_account, owned

log = logging.getLogger(__name__)

# Subscriptions that still charge (or will again once paid up): the only method on file
# cannot be removed from under them.
ACTIVE: Final = (
    rules.SubscriptionStatus.RECURRING,
    rules.SubscriptionStatus.ERROR,
    rules.SubscriptionStatus.SUSPENDED,
)


def method_label(method: PaymentMethod) -> str:
    """A method in words: "Visa ending in 4242", "STRIPE TEST BANK account ending in 6789"."""
    if method.kind == "card":
        return f"{(method.brand or 'card').title()} ending in {method.last4}"
    return f"{method.bank_name or 'Bank'} account ending in {method.last4}"


def _names(subs: list[Subscription]) -> str:
    names = [s.description for s in subs]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True)
class MethodRow:
    """One method on the page: its expiry state and the subscriptions charged to it."""

    method: PaymentMethod
    expiry: CardExpiry
    subscriptions: list[Subscription]

    @property
    def label(self) -> str:
        return method_label(self.method)


@dataclass(frozen=True)
class FailedSubscription:
    """A subscription in ``error`` and the method "Retry now" would charge."""

    subscription: Subscription
    method: PaymentMethod | None


@dataclass(frozen=True)
class MethodsPage:
    account: CustomerAccount
    partner: Partner
    rows: list[MethodRow]
    failed: list[FailedSubscription]


@dataclass(frozen=True)
class MethodChange:
    """What adding a method or making one the default did."""

    method: PaymentMethod
    label: str
    is_default: bool
    in_error: list[Subscription]  # subscriptions waiting for "Retry now"


@dataclass(frozen=True)
class Removed:
    """What removing a method did. ``new_default_promoted``: the removed one was the
    default and ``new_default`` took its place; ``detached`` is False when the
    processor could not be told (logged)."""

    label: str
    new_default: PaymentMethod | None
    new_default_promoted: bool
    moved: list[Subscription]
    detached: bool


def partner_of_customer(session: Session, user: User) -> Partner:
    """The partner of the customer's own account (for its timezone). Raises NotFound."""
    partner = session.get(Partner, own_account(session, user).partner_id)
    if partner is None:
        raise NotFound("Not found.")
    return partner


def methods_page(session: Session, user: User, *, as_of: date) -> MethodsPage:
    """The customer's methods (default first, then oldest), each with its expiry state on
    ``as_of`` (the partner's local day) and the subscriptions charged to it, and the
    subscriptions in ``error``. Completed subscriptions are left out (nothing is charged).

    Raises NotFound when the user is not a customer.
    """
    account = own_account(session, user)
    partner = session.get(Partner, account.partner_id)
    assert partner is not None
    methods = _methods(session, account.id)  # type: ignore[arg-type]
    subs = session.exec(
        select(Subscription)
        .where(
            Subscription.customer_account_id == account.id,
            Subscription.status != rules.SubscriptionStatus.COMPLETE,
        )
        .order_by(col(Subscription.id))
    ).all()
    by_id = {m.id: m for m in methods}
    default = methods[0] if methods else None
    charged: dict[int | None, list[Subscription]] = {}
    failed = []
    for sub in subs:
        method = by_id.get(sub.payment_method_id) or default
        charged.setdefault(method.id if method else None, []).append(sub)
        if sub.status == rules.SubscriptionStatus.ERROR:
            failed.append(FailedSubscription(sub, method))
    rows = [
        MethodRow(m, card_expiry(m.exp_month, m.exp_year, as_of=as_of), charged.get(m.id, []))
        for m in methods
    ]
    return MethodsPage(account, partner, rows, failed)


def _methods(session: Session, account_id: int) -> list[PaymentMethod]:
    """The account's methods, the effective default first, then oldest first."""
    return list(
        session.exec(
            select(PaymentMethod)
            .where(PaymentMethod.customer_account_id == account_id)
            .order_by(col(PaymentMethod.is_default).desc(), col(PaymentMethod.id))
        ).all()
    )


def _in_error(session: Session, account_id: int) -> list[Subscription]:
    return list(
        session.exec(
            select(Subscription).where(
                Subscription.customer_account_id == account_id,
                Subscription.status == rules.SubscriptionStatus.ERROR,
            )
        ).all()
    )


def _locked(session: Session, user: User, method_id: int) -> tuple[CustomerAccount, PaymentMethod]:
    """The customer's own method and account, locked in a new transaction.

    Raises NotFound (before taking any lock) for a method of another account.
    """
    found = owned(session, user, PaymentMethod, method_id)
    if user.customer_account_id is None or found.customer_account_id != user.customer_account_id:
        raise NotFound("Not found.")  # operators and partner users have no portal methods
    session.rollback()
    account = lock_account(session, found.customer_account_id)
    row = session.get(PaymentMethod, method_id, populate_existing=True)
    if row is None:  # removed meanwhile
        session.rollback()
        raise NotFound("Not found.")
    return account, row


def _account_event(
    session: Session, user: User, account: CustomerAccount, action: str, **detail: object
) -> None:
    session.add(
        AuditEvent(
            partner_id=account.partner_id,
            customer_account_id=account.id,
            actor_user_id=user.id,
            actor_label=user.email,
            action=action,
            subject_type="customer_account",
            subject_id=account.id,
            detail=detail,
        )
    )


def add_method(
    session: Session,
    gateway: PaymentGateway,
    user: User,
    method: TokenizedMethod,
    *,
    holder_name: str,
    make_default: bool,
) -> MethodChange:
    """Save a tokenized card or bank account to the customer's own account (commits).

    It becomes the default when ``make_default`` or when the account had no method;
    subscriptions charged to the previous default then follow it. Nothing is charged.

    Raises:
        NotFound: the user is not a customer.
        InvalidInput: the processor refused or could not be reached (see
            :func:`save_tokenized`); nothing is stored.
    """
    account_id = own_account(session, user).id
    assert account_id is not None
    row = save_tokenized(session, gateway, account_id, method, holder_name=holder_name)
    account = session.get(CustomerAccount, account_id)
    assert account is not None
    previous = default_method(session, account_id)
    if make_default or previous is None or previous.id == row.id:
        promote(session, user, account_id, row)
    label = method_label(row)
    detail = {"method": label, "made_default": "yes" if row.is_default else ""}
    _account_event(session, user, account, "payment_method.added", **detail)
    in_error = _in_error(session, account_id)
    session.commit()
    return MethodChange(row, label, row.is_default, in_error)


def make_default(session: Session, user: User, method_id: int) -> MethodChange:
    """Make one of the customer's methods the account default (commits).

    Subscriptions charged to the previous default follow it; pinned ones keep theirs.

    Raises:
        NotFound: not a customer, or not a method of their account.
    """
    account, row = _locked(session, user, method_id)
    account_id = row.customer_account_id
    moved = promote(session, user, account_id, row)
    label = method_label(row)
    detail = {"method": label, "subscriptions_moved": len(moved)}
    _account_event(session, user, account, "payment_method.made_default", **detail)
    in_error = _in_error(session, account_id)
    session.commit()
    return MethodChange(row, label, True, in_error)


def remove_method(session: Session, gateway: PaymentGateway, user: User, method_id: int) -> Removed:
    """Remove one of the customer's methods (commits), then detach it at the processor.

    What it paid for moves to the account default (when it was the default, the oldest
    remaining method becomes the default): subscriptions pinned to it and scheduled
    payments still waiting. Payments made with it keep their brand and last 4 but no
    longer name the row, which is deleted.

    The processor is asked to detach the token only after the commit: the database
    decides what is charged, so a detach that failed leaves at worst an unused token on
    the processor (logged for a person to clean up), while detaching first and then
    failing to commit would leave a method on file that can no longer be charged. So a
    processor failure is logged and reported as ``detached=False``, not as a failed
    removal.

    Raises:
        NotFound: not a customer, or not a method of their account.
        Conflict: it is the account's only method and an active subscription or a
            waiting scheduled payment depends on it (the message names them), or a
            scheduled payment with it is being charged right now, or a payment with it
            was recorded while it was being removed; nothing changes.
    """
    account, row = _locked(session, user, method_id)
    account_id = row.customer_account_id
    label, token, kind = method_label(row), row.token, row.kind
    remaining = [m for m in _methods(session, account_id) if m.id != row.id]
    thing = "card" if kind == "card" else "bank account"
    scheduled = list(
        session.exec(
            select(ScheduledPayment).where(
                ScheduledPayment.customer_account_id == account_id,
                ScheduledPayment.payment_method_id == row.id,
                col(ScheduledPayment.status).in_(
                    (ScheduledStatus.SCHEDULED, ScheduledStatus.PROCESSING)
                ),
            )
        ).all()
    )
    if any(s.status == ScheduledStatus.PROCESSING for s in scheduled):
        session.rollback()
        raise Conflict(
            f"A scheduled payment with this {thing} is being made right now. "
            "Try again in a few minutes."
        )
    if not remaining:
        _refuse_if_needed(session, account_id, thing, bool(scheduled))
    new_default: PaymentMethod | None = None
    promoted = False
    if remaining:
        # The remaining default, else (the removed one was it) the oldest remaining.
        current = next((m for m in remaining if m.is_default), None)
        new_default = current or remaining[0]
        if current is None:
            new_default.is_default = promoted = True
            session.add(new_default)
    target = new_default.id if new_default else None
    moved = list(
        session.exec(
            select(Subscription).where(
                Subscription.customer_account_id == account_id,
                Subscription.payment_method_id == row.id,
            )
        ).all()
    )
    for sub in moved:
        sub.payment_method_id = target
        session.add(sub)
        if new_default is not None:
            audit(
                session, user, sub, "subscription.payment_method_updated", last4=new_default.last4
            )
    for waiting in scheduled:
        waiting.payment_method_id = target
        session.add(waiting)
    session.flush()
    _forget(session, row.id)  # type: ignore[arg-type]
    session.delete(row)
    new_label = method_label(new_default) if new_default and promoted else ""
    detail = {"method": label, "new_default": new_label}
    _account_event(session, user, account, "payment_method.removed", **detail)
    try:
        session.commit()
    except IntegrityError:  # a charge with it was recorded meanwhile (it names the row)
        session.rollback()
        raise Conflict(
            f"A payment with this {thing} is being recorded right now; nothing was removed. "
            "Try again in a moment."
        ) from None
    detached = _detach(gateway, token, account_id)
    return Removed(label, new_default, promoted, moved, detached)


def _refuse_if_needed(session: Session, account_id: int, thing: str, scheduled: bool) -> None:
    """Raise Conflict when the only method still pays for something (see remove_method)."""
    active = list(
        session.exec(
            select(Subscription)
            .where(
                Subscription.customer_account_id == account_id,
                col(Subscription.status).in_(ACTIVE),
            )
            .order_by(col(Subscription.id))
        ).all()
    )
    if active:
        session.rollback()
        raise Conflict(
            f"This {thing} pays for {_names(active)} and it is your only payment method. "
            "Add another card or bank account first."
        )
    if scheduled:
        session.rollback()
        raise Conflict(
            f"This {thing} pays a scheduled payment and it is your only payment method. "
            "Add another card or bank account first, or cancel the scheduled payment."
        )


def _forget(session: Session, method_id: int) -> None:
    """Past payments and finished scheduled payments stop naming the row (their labels
    stay), so it can be deleted."""
    session.execute(
        update(Payment)
        .where(col(Payment.payment_method_id) == method_id)
        .values(payment_method_id=None)
    )
    session.execute(
        update(ScheduledPayment)
        .where(col(ScheduledPayment.payment_method_id) == method_id)
        .values(payment_method_id=None)
    )
    session.flush()


def _detach(gateway: PaymentGateway, token: str, account_id: int) -> bool:
    try:
        gateway.detach_payment_method(token=token)
    except GatewayError:
        log.warning(
            "removed payment method of account %s could not be detached at the processor; "
            "its token stays attached there, unused",
            account_id,
            exc_info=True,
        )
        return False
    return True
