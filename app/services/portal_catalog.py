"""Joining a membership or starting a gift from the portal's catalog: the first period is
paid now, exactly once per rendered form.

The form token's nonce is the attempt's purpose key (``form:<nonce>``), committed before
the processor is called; a double click or a second tab gets the first submission's
outcome. The approval and all its effects (subscription, paid invoice, the card kept,
history, receipt) commit together in :func:`finish_join`, which the reconciler also calls
for a lost answer. What is offered and at what price: ``portal_products``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import update
from sqlmodel import Session, col, select

from app.domain import schedule as rules
from app.domain.errors import Conflict, InvalidInput, NotFound
from app.domain.money import format_money
from app.gateway.base import GatewayResult, PaymentGateway, TokenizedMethod
from app.models import (
    AuditEvent,
    CustomerAccount,
    Partner,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Product,
    Subscription,
    User,
)
from app.services import card_testing, payments
from app.services.form_tokens import FormToken
from app.services.invoices import LineInput, add_invoice, apply_paid_amount
from app.services.notifications import write_receipt
from app.services.portal_products import (
    JoinInput,
    is_member,
    join_page,
    join_terms,
    member_message,
)
from app.services.saved_methods import keep_method
from app.services.schedules import refresh_next_charge_date

SOURCE: Final = "portal_join"


@dataclass(frozen=True)
class MethodChoice:
    """A saved method of the account, or a newly tokenized card."""

    saved_method_id: int | None = None
    new_method: TokenizedMethod | None = None


@dataclass(frozen=True)
class JoinOutcome:
    """A sign-up as it stands: approved (with its subscription), declined, or pending."""

    status: str  # payment status: approved | declined | error | unknown | pending
    payment_id: int | None
    subscription_id: int | None
    description: str
    donation: bool
    amount: int
    currency: str
    next_charge_date: date | None
    next_amount: int | None
    message: str
    email_ids: tuple[int, ...] = ()

    @property
    def approved(self) -> bool:
        return self.status == PaymentStatus.APPROVED


def replay(session: Session, form: FormToken) -> JoinOutcome | None:
    """The outcome of an earlier submission of this form token, or None if it is unused.

    A submission still in flight (double click, second tab) is waited for briefly.
    """
    attempt = payments.find_attempt(session, form.purpose_key)
    if attempt is None:
        return None
    if attempt.detail.get("source") != SOURCE:
        raise NotFound("Not found.")
    settled = payments.wait_until_settled(session, attempt.id)  # type: ignore[arg-type]
    return outcome_of(session, settled)


def join(
    session: Session,
    gateway: PaymentGateway,
    user: User,
    product_id: int,
    *,
    form: FormToken,
    data: JoinInput,
    method: MethodChoice,
    client_address: str,
    now: datetime,
    as_of: date,
    limit: card_testing.DeclineLimit,
) -> JoinOutcome:
    """Pay the first period of a catalog product now and start its subscription.

    Once per form token: a second submission gets the first one's outcome. Approved:
    see :func:`finish_join`. Declined: nothing is created, the reason is returned and
    the decline counts against the card-testing limit.

    Raises:
        NotFound: not a customer, or the product is not in their catalog.
        Conflict: already a member of this membership (or a sign-up for it is still
            being confirmed).
        FieldsInvalid: a gift's amount or frequency (see :func:`join_terms`).
        InvalidInput: no method chosen, or a saved method that is not the account's
            (field ``saved_method``).
        TooManyDeclines: too many declines from this address or email.
    """
    page = join_page(session, user, product_id)
    earlier = replay(session, form)
    if earlier is not None:
        return earlier
    item, account = page.item, page.account
    if item.is_member:
        raise Conflict(member_message(item.product))
    terms = join_terms(page, data)
    source = f"portal:join:{account.partner_id}"
    email = account.billing_email or account.email
    card_testing.ensure_allowed(
        session, source=source, client_address=client_address, email=email, now=now, limit=limit
    )
    card = _chosen(session, account, method)
    account_id, customer_ref = account.id, account.gateway_customer_ref
    assert account_id is not None
    name = account.name
    session.rollback()  # no transaction open during the processor calls
    if card.new is not None and not customer_ref:
        customer_ref = gateway.create_customer(
            email=email, name=name, idempotency_key=f"portico:account:{account_id}:customer"
        )
    spec = payments.AttemptSpec(
        partner_id=account.partner_id,
        purpose_key=form.purpose_key,
        amount=terms.amount,
        currency=item.currency,
        method=card.kind,
        customer_account_id=account_id,
        payment_method_id=card.saved_id,
        brand=card.brand,
        last4=card.last4,
        is_recurring=True,
        period_date=as_of,
        gateway=gateway.name,
        detail={
            "source": SOURCE,
            "product_id": item.product.id,
            "description": item.product.name,
            "donation": item.donation,
            "frequency": terms.frequency,
            "method": card.new,
            "user_id": user.id,
            "actor": user.email,
            "payer_name": name,
            "payer_email": email,
            "client_address": client_address,
        },
    )
    product = item.product

    def precheck(tx: Session) -> None:
        _claim_account(tx, account_id, product, customer_ref)

    attempt, created = payments.open_attempt(session, spec, precheck=precheck)
    if not created:
        return outcome_of(session, payments.wait_until_settled(session, attempt.id))  # type: ignore[arg-type]
    result = _call(gateway, attempt, card, customer_ref, product.name)
    return finish_join(session, attempt, result, now=now)


@dataclass(frozen=True)
class _Card:
    token: str
    kind: str
    brand: str
    last4: str
    saved_id: int | None
    new: dict[str, Any] | None


def _chosen(session: Session, account: CustomerAccount, choice: MethodChoice) -> _Card:
    """The card to charge. Raises InvalidInput (``saved_method``) for none or another's."""
    if choice.new_method is not None:
        new = choice.new_method
        saved = {
            "token": new.token,
            "kind": new.kind,
            "brand": new.brand,
            "last4": new.last4,
            "exp_month": new.exp_month,
            "exp_year": new.exp_year,
            "bank_name": new.bank_name,
        }
        return _Card(new.token, new.kind, new.brand, new.last4, None, saved)
    if choice.saved_method_id is not None:
        method = session.get(PaymentMethod, choice.saved_method_id)
        if method is None or method.customer_account_id != account.id:
            raise InvalidInput("Choose one of your saved payment methods.", "saved_method")
        return _Card(method.token, method.kind, method.brand, method.last4, method.id, None)
    raise InvalidInput("Choose a saved payment method or enter a new card.", "saved_method")


def _claim_account(tx: Session, account_id: int, product: Product, customer_ref: str) -> None:
    """In the attempt's transaction, under the account's lock: still not a member, no
    sign-up for this membership in flight; keep the processor customer on the account."""
    # A no-op UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite) first, so
    # two tabs joining the same membership cannot both pass.
    tx.execute(
        update(CustomerAccount)
        .where(col(CustomerAccount.id) == account_id)
        .values(name=CustomerAccount.name)
    )
    account = tx.get(CustomerAccount, account_id, populate_existing=True)
    assert account is not None
    if not product.payer_sets_amount:
        if is_member(tx, account_id, product):
            raise Conflict(member_message(product))
        in_flight = tx.exec(
            select(Payment).where(
                Payment.customer_account_id == account_id,
                col(Payment.status).in_(payments.OPEN_STATUSES),
            )
        ).all()
        if any(
            p.detail.get("source") == SOURCE and p.detail.get("product_id") == product.id
            for p in in_flight
        ):
            raise Conflict(
                f"Your sign-up for {product.name} is still being confirmed; nothing more "
                "was charged. Check your subscriptions in a few minutes."
            )
    if customer_ref and not account.gateway_customer_ref:
        account.gateway_customer_ref = customer_ref
        tx.add(account)


def _call(
    gateway: PaymentGateway, attempt: Payment, card: _Card, customer_ref: str, description: str
) -> GatewayResult:
    """Save a new card to the processor customer (it is charged every period), then pay."""
    if card.new is not None:
        refused = payments.attach_or_decline(
            gateway, attempt, customer_ref=customer_ref, token=card.token
        )
        if refused is not None:
            return refused
    return payments.charge(
        gateway, attempt, token=card.token, customer_ref=customer_ref, description=description
    )


def finish_join(
    session: Session, attempt: Payment, result: GatewayResult, *, now: datetime
) -> JoinOutcome:
    """Record the processor's answer to a sign-up and apply it (commits).

    Approved, in one transaction: the subscription (its first period paid by this
    charge, the next charge one period later), the method kept on the account (default
    when it has none), a paid invoice, the payment linked to both, a history event and a
    receipt email. Declined: the decline is counted; nothing else is written. A lost
    answer stays ``unknown`` for the reconciler, which calls this again; a second call for
    a settled attempt applies nothing and returns the outcome as it stands.
    """
    if not payments.claim_outcome(session, attempt, result, now=now):
        session.rollback()
        settled = payments.wait_until_settled(session, attempt.id)  # type: ignore[arg-type]
        return outcome_of(session, settled)
    email_ids: list[int] = []
    if result.approved:
        email_ids = _apply(session, attempt)
    elif result.status == PaymentStatus.DECLINED:
        card_testing.record_decline(
            session,
            partner_id=attempt.partner_id,
            source=f"portal:join:{attempt.partner_id}",
            client_address=str(attempt.detail.get("client_address", "")),
            email=str(attempt.detail.get("payer_email", "")),
            now=now,
        )
    session.commit()
    return outcome_of(session, attempt, email_ids)


def _apply(session: Session, attempt: Payment) -> list[int]:
    """Every effect of an approved sign-up, in the caller's transaction; the email ids."""
    detail = attempt.detail
    account = session.get(CustomerAccount, attempt.customer_account_id)
    partner = session.get(Partner, attempt.partner_id)
    assert account is not None and partner is not None
    start = attempt.period_date or attempt.received_on
    assert start is not None
    method = keep_method(session, account, attempt, saved=detail.get("method"))
    description = str(detail.get("description", ""))
    sub = Subscription(
        partner_id=partner.id,  # type: ignore[arg-type]
        customer_account_id=account.id,  # type: ignore[arg-type]
        product_id=detail.get("product_id"),
        payment_method_id=method.id if method else None,
        description=description,
        status=rules.SubscriptionStatus.RECURRING,
        frequency=str(detail["frequency"]),
        currency=attempt.currency,
        manual_amount=attempt.amount,
        start_date=start,
        stop_rule=rules.StopRule.UNENDING,
        recurring_count=1,  # this charge paid the first period
        amount_charged=attempt.amount,
    )
    refresh_next_charge_date(sub)
    session.add(sub)
    session.flush()
    invoice = add_invoice(
        session,
        partner=partner,
        account=account,
        lines=[LineInput(f"{description} — {start:%b %-d, %Y}", 1, attempt.amount, sub.product_id)],
        issue_date=start,
        due_date=start,
        subscription_id=sub.id,
        prices_include_tax=True,  # the charge is the price with its tax
    )
    apply_paid_amount(invoice, invoice.total)
    session.add(invoice)
    attempt.invoice_id = invoice.id
    attempt.subscription_id = sub.id
    session.add(attempt)
    session.add(
        AuditEvent(
            partner_id=partner.id,
            customer_account_id=account.id,
            actor_user_id=detail.get("user_id"),
            actor_label=str(detail.get("actor") or "customer"),
            action="subscription.joined_by_customer",
            subject_type="subscription",
            subject_id=sub.id,
            detail={
                "product_id": sub.product_id,
                "amount": attempt.amount,
                "frequency": sub.frequency,
                "payment_id": attempt.id,
            },
        )
    )
    session.flush()
    return write_receipt(
        session, attempt, to_address=account.billing_email or account.email, partner=partner
    )


def outcome_of(
    session: Session, attempt: Payment, email_ids: list[int] | None = None
) -> JoinOutcome:
    """A sign-up attempt as it stands now, with the words to show the customer."""
    detail = attempt.detail
    description = str(detail.get("description", ""))
    donation = bool(detail.get("donation"))
    sub = session.get(Subscription, attempt.subscription_id) if attempt.subscription_id else None
    next_date = sub.next_charge_date if sub else None
    next_amount = sub.manual_amount if sub else None
    if attempt.status == PaymentStatus.APPROVED:
        next_part = ""
        if next_date is not None and next_amount is not None:
            on = f"{next_date:%b} {next_date.day}, {next_date.year}"
            next_part = f"; next payment {format_money(next_amount, attempt.currency)} on {on}"
        if donation:
            message = f"Thank you! Your gift to {description} is set up{next_part}."
        else:
            message = f"Welcome! {description} is active{next_part}."
    else:
        message = payments.unapproved_message(attempt)
    return JoinOutcome(
        status=str(attempt.status),
        payment_id=attempt.id,
        subscription_id=sub.id if sub else None,
        description=description,
        donation=donation,
        amount=attempt.amount,
        currency=attempt.currency,
        next_charge_date=next_date,
        next_amount=next_amount,
        message=message,
        email_ids=tuple(email_ids or ()),
    )
