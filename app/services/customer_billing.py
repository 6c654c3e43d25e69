"""A customer's own subscription: update the card it is charged to, and "Retry now";
and saving a tokenized method to an account (shared with ``portal_methods``).

A declined recurring charge leaves the subscription in ``error`` (ARCHITECTURE §1); the
customer saves a new card from the portal and retries, which charges the owed period
exactly as the billing run would. Only the customer's own subscriptions are reachable;
anything else answers NotFound.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from app.domain import schedule as rules
from app.domain.errors import Conflict, InvalidInput, NotFound
from app.gateway.base import GatewayError, PaymentGateway, PaymentMethodRejected, TokenizedMethod
from app.models import CustomerAccount, Partner, PaymentMethod, Subscription, User
from app.services.subscription_access import (
    audit,
    customer_subscription_row,
    default_method,
    lock,
    lock_in_transaction,
    method_of,
)
from app.services.subscription_billing import PeriodResult, charge_next_period
from app.services.tenancy import own_account

log = logging.getLogger(__name__)

# The processor names fields by what they are; the portal form by its inputs.
_FORM_FIELD: Final = {
    "number": "card_number",
    "exp": "exp",
    "cvc": "cvc",
    "routing_number": "routing_number",
    "account_number": "account_number",
}


@dataclass(frozen=True)
class CustomerSubscription:
    """A customer's own subscription with the method it is charged to."""

    subscription: Subscription
    account: CustomerAccount
    partner: Partner
    payment_method: PaymentMethod | None

    @property
    def can_retry(self) -> bool:
        return self.subscription.status == rules.SubscriptionStatus.ERROR


def customer_subscription(
    session: Session, user: User, subscription_id: int
) -> CustomerSubscription:
    """A customer's own subscription with its account, partner and payment method.

    Raises:
        NotFound: not a customer, or not their subscription.
    """
    sub = customer_subscription_row(session, user, subscription_id)
    account = own_account(session, user)
    partner = session.get(Partner, sub.partner_id)
    assert partner is not None
    return CustomerSubscription(sub, account, partner, method_of(session, sub))


def lock_account(session: Session, account_id: int) -> CustomerAccount:
    """The account row, locked in the current transaction, so that changes to its
    methods (and their default) happen one at a time.

    PostgreSQL: ``FOR UPDATE``; SQLite: a no-op write takes the database write lock.
    Raises NotFound when the account is gone.
    """
    if session.get_bind().dialect.name == "postgresql":
        query = (
            select(CustomerAccount)
            .where(CustomerAccount.id == account_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        account = session.exec(query).first()
    else:
        session.execute(
            update(CustomerAccount)
            .where(col(CustomerAccount.id) == account_id)
            .values(name=CustomerAccount.name)
        )
        account = session.get(CustomerAccount, account_id, populate_existing=True)
    if account is None:
        raise NotFound("Not found.")
    return account


def save_tokenized(
    session: Session,
    gateway: PaymentGateway,
    account_id: int,
    method: TokenizedMethod,
    *,
    holder_name: str,
) -> PaymentMethod:
    """Attach a tokenized method to the account's processor customer (created first when
    the account has none) and keep its row: token, brand, last 4, expiry, bank name.

    No transaction is held during the processor calls; afterwards the account is
    locked in a new transaction that the caller finishes and commits (the row is not
    made default here, see :func:`promote`). A token this account already saved gives
    its existing row.

    Raises:
        InvalidInput: the processor refused the method (the form field at fault:
            ``card_number`` or ``account_number`` when it names none), could not be
            reached (field ``""``), or the token belongs to another account.
    """
    account = session.get(CustomerAccount, account_id)
    assert account is not None
    customer_ref = account.gateway_customer_ref
    email, name = account.billing_email or account.email, account.name
    session.rollback()  # hold no transaction during processor calls
    fallback_field = "card_number" if method.kind == "card" else "account_number"
    try:
        if not customer_ref:
            customer_ref = gateway.create_customer(
                email=email, name=name, idempotency_key=f"portico:account:{account_id}:customer"
            )
        saved = gateway.attach_payment_method(customer_ref=customer_ref, token=method.token)
    except PaymentMethodRejected as exc:
        raise InvalidInput(exc.message, _FORM_FIELD.get(exc.field, fallback_field)) from None
    except GatewayError:
        log.warning("saving a payment method for account %s: processor unavailable", account_id)
        raise InvalidInput(
            "The payment processor could not be reached, so nothing was saved. "
            "Please try again in a moment.",
            "",
        ) from None
    account = lock_account(session, account_id)
    if not account.gateway_customer_ref:
        account.gateway_customer_ref = customer_ref
        session.add(account)
    row = session.exec(
        select(PaymentMethod).where(
            PaymentMethod.gateway == gateway.name, PaymentMethod.token == saved.token
        )
    ).first()
    if row is not None and row.customer_account_id != account_id:
        session.rollback()
        raise InvalidInput("This payment method cannot be saved to your account.", fallback_field)
    if row is None:
        row = PaymentMethod(
            partner_id=account.partner_id,
            customer_account_id=account_id,
            gateway=gateway.name,
            token=saved.token,
            kind=saved.kind,
            brand=saved.brand,
            last4=saved.last4,
            exp_month=saved.exp_month,
            exp_year=saved.exp_year,
            bank_name=saved.bank_name,
            holder_name=holder_name or name,
        )
        session.add(row)
        session.flush()
    return row


def promote(
    session: Session, user: User | None, account_id: int, method: PaymentMethod
) -> list[Subscription]:
    """Make ``method`` the account's only default, in the caller's transaction.

    Subscriptions charged to the previous default (their method is it, or none) now
    name ``method``; those pinned to another method keep it. Each moved subscription
    gets a history row. Returns the moved subscriptions (none when ``method`` already
    was the effective default); raises nothing.
    """
    previous = default_method(session, account_id)
    moved: list[Subscription] = []
    if previous is not None and previous.id != method.id:
        # Subscriptions naming no method already follow whichever is the default.
        moved = list(
            session.exec(
                select(Subscription).where(
                    Subscription.customer_account_id == account_id,
                    or_(
                        col(Subscription.payment_method_id).is_(None),
                        col(Subscription.payment_method_id) == previous.id,
                    ),
                )
            ).all()
        )
    others = (
        col(PaymentMethod.customer_account_id) == account_id,
        col(PaymentMethod.id) != method.id,
    )
    session.execute(update(PaymentMethod).where(*others).values(is_default=False))
    method.is_default = True
    session.add(method)
    for sub in moved:
        sub.payment_method_id = method.id
        session.add(sub)
        audit(session, user, sub, "subscription.payment_method_updated", last4=method.last4)
    return moved


def replace_payment_method(
    session: Session,
    gateway: PaymentGateway,
    user: User,
    subscription_id: int,
    method: TokenizedMethod,
) -> PaymentMethod:
    """Save a new card (or bank account) for the customer's subscription (commits).

    Creates the processor customer if the account has none, attaches the token to it,
    stores the method, and makes it the subscription's method and the account's
    default (subscriptions that followed the previous default follow it too). Nothing
    is charged (a card may attach and still decline later).

    Raises:
        NotFound: not a customer, or not their subscription.
        InvalidInput: the processor refused to save the method (field ``card_number``,
            or the field at fault); nothing is written.
    """
    sub = customer_subscription_row(session, user, subscription_id)
    account_id, sub_id = sub.customer_account_id, sub.id
    assert sub_id is not None
    account_name = own_account(session, user).name
    row = save_tokenized(session, gateway, account_id, method, holder_name=account_name)
    promote(session, user, account_id, row)
    sub = lock_in_transaction(session, sub_id)
    if sub.payment_method_id != row.id:
        sub.payment_method_id = row.id
        session.add(sub)
        audit(session, user, sub, "subscription.payment_method_updated", last4=row.last4)
    session.commit()
    return row


def retry_now(
    session: Session,
    gateway: PaymentGateway,
    user: User,
    subscription_id: int,
    *,
    as_of: date,
    now: datetime,
    base_url: str,
) -> PeriodResult:
    """The customer's "Retry now": charge the owed period of their own subscription.

    The subscription is set back to ``recurring`` (committed), then its next period is
    charged as the billing run would (``subscription_billing.charge_next_period``, so a
    period is still charged at most once). Approved: it stays recurring and the schedule
    advances. Declined: it is back in ``error`` with the reason, and the decline emails
    are written (enqueue ``result.email_ids``). Nothing due yet: it stays recurring.

    Raises:
        NotFound: not a customer, or not their subscription.
        Conflict: the subscription is not in error.
    """
    sub = customer_subscription_row(session, user, subscription_id)
    sub = lock(session, sub.id)  # type: ignore[arg-type]
    if sub.status != rules.SubscriptionStatus.ERROR:
        session.rollback()
        raise Conflict("Only a subscription whose payment failed can be retried.")
    sub_id = sub.id
    assert sub_id is not None
    sub.status = rules.SubscriptionStatus.RECURRING
    sub.updated_at = now
    session.add(sub)
    audit(session, user, sub, "subscription.retried", last_error=sub.last_error)
    session.commit()
    return charge_next_period(session, gateway, sub_id, as_of=as_of, now=now, base_url=base_url)
