"""A customer's own subscription: update the card it is charged to, and "Retry now".

A declined recurring charge leaves the subscription in ``error`` (ARCHITECTURE §1); the
customer saves a new card from the portal and retries, which charges the owed period
exactly as the billing run would. Only the customer's own subscriptions are reachable;
anything else answers NotFound.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from sqlalchemy import update
from sqlmodel import Session, col, select

from app.domain import schedule as rules
from app.domain.errors import Conflict, InvalidInput
from app.gateway.base import PaymentGateway, PaymentMethodRejected, TokenizedMethod
from app.models import CustomerAccount, Partner, PaymentMethod, Subscription, User
from app.services.subscription_access import (
    audit,
    customer_subscription_row,
    lock,
    lock_in_transaction,
    method_of,
)
from app.services.subscription_billing import PeriodResult, charge_next_period
from app.services.tenancy import own_account

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
    default. Nothing is charged (a card may attach and still decline later).

    Raises:
        NotFound: not a customer, or not their subscription.
        InvalidInput: the processor refused to save the method (field ``card_number``,
            or the field at fault); nothing is written.
    """
    sub = customer_subscription_row(session, user, subscription_id)
    account = own_account(session, user)
    account_id, sub_id = account.id, sub.id
    assert account_id is not None and sub_id is not None
    customer_ref = account.gateway_customer_ref
    email, name = account.billing_email or account.email, account.name
    session.rollback()  # hold no transaction during processor calls
    try:
        if not customer_ref:
            customer_ref = gateway.create_customer(
                email=email, name=name, idempotency_key=f"portico:account:{account_id}:customer"
            )
        saved = gateway.attach_payment_method(customer_ref=customer_ref, token=method.token)
    except PaymentMethodRejected as exc:
        raise InvalidInput(exc.message, _FORM_FIELD.get(exc.field, "card_number")) from None
    account = session.get(CustomerAccount, account_id, populate_existing=True)
    assert account is not None
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
        raise InvalidInput("This card cannot be saved to your account.", "card_number")
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
            holder_name=name,
        )
        session.add(row)
        session.flush()
    others = (col(PaymentMethod.customer_account_id) == account_id, col(PaymentMethod.id) != row.id)
    session.execute(update(PaymentMethod).where(*others).values(is_default=False))
    row.is_default = True
    session.add(row)
    sub = lock_in_transaction(session, sub_id)
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
