"""The effects of an approved widget payment, applied in the payment's transaction.

Used by the widget service when the processor answers, and by the reconciler when a
lost answer turns out to have been an approval.
"""

from __future__ import annotations

from datetime import date

from sqlmodel import Session, select

from app.domain import schedule as rules
from app.models import (
    AuditEvent,
    CustomerAccount,
    Partner,
    Payment,
    PaymentMethod,
    Subscription,
    Widget,
)
from app.services.invoices import LineInput, add_invoice, apply_paid_amount
from app.services.notifications import write_receipt
from app.services.saved_methods import keep_method
from app.services.schedules import refresh_next_charge_date

ONE_TIME = "once"


def find_account(session: Session, partner_id: int, email: str) -> CustomerAccount | None:
    """The partner's customer account with this email (case-insensitive), if any."""
    from sqlmodel import func

    return session.exec(
        select(CustomerAccount)
        .where(
            CustomerAccount.partner_id == partner_id,
            func.lower(CustomerAccount.email) == email.lower(),
        )
        .order_by(CustomerAccount.id)
    ).first()


def apply_widget_payment(
    session: Session,
    attempt: Payment,
    widget: Widget,
    partner: Partner,
    customer_ref: str,
    as_of: date,
) -> list[int]:
    """Every effect of an approved widget payment, in the caller's transaction.

    Also used by the reconciler once it learns that an ``unknown`` attempt was approved.
    Returns the ids of the email rows written (to enqueue after the commit).
    """
    detail = attempt.detail
    email = str(detail["payer_email"])
    account = find_account(session, partner.id, email)  # type: ignore[arg-type]
    if account is None:
        account = CustomerAccount(
            partner_id=partner.id,  # type: ignore[arg-type]
            name=str(detail["payer_name"]),
            email=email,
            currency=widget.currency,
        )
    if customer_ref and not account.gateway_customer_ref:
        account.gateway_customer_ref = customer_ref
    session.add(account)
    session.flush()
    frequency = str(detail.get("frequency", ONE_TIME))
    method_row = None
    subscription = None
    if frequency != ONE_TIME:
        method_row = keep_method(session, account, attempt, saved=attempt.detail["method"])
        assert method_row is not None
        subscription = _start_subscription(
            session, account, partner, widget, attempt, method_row, as_of
        )
    label = widget.title if frequency == ONE_TIME else f"{widget.title} ({frequency})"
    invoice = add_invoice(
        session,
        partner=partner,
        account=account,
        lines=[LineInput(label, 1, attempt.amount)],
        issue_date=as_of,
        due_date=as_of,
        subscription_id=subscription.id if subscription else None,
        prices_include_tax=True,
    )
    apply_paid_amount(invoice, invoice.total)
    session.add(invoice)
    attempt.customer_account_id = account.id
    attempt.invoice_id = invoice.id
    attempt.subscription_id = subscription.id if subscription else None
    attempt.payment_method_id = method_row.id if method_row else None
    session.add(attempt)
    session.add(
        AuditEvent(
            partner_id=partner.id,
            customer_account_id=account.id,
            actor_label=f"payer {email}",
            action="widget.paid",
            subject_type="payment",
            subject_id=attempt.id,
            detail={"widget_id": widget.id, "amount": attempt.amount, "frequency": frequency},
        )
    )
    session.flush()
    return write_receipt(
        session, attempt, to_address=email, partner=partner, message=widget.success_message
    )


def _start_subscription(
    session: Session,
    account: CustomerAccount,
    partner: Partner,
    widget: Widget,
    attempt: Payment,
    method: PaymentMethod,
    as_of: date,
) -> Subscription:
    subscription = Subscription(
        partner_id=partner.id,  # type: ignore[arg-type]
        customer_account_id=account.id,  # type: ignore[arg-type]
        payment_method_id=method.id,
        description=widget.title,
        status=rules.SubscriptionStatus.RECURRING,
        frequency=str(attempt.detail["frequency"]),
        currency=attempt.currency,
        manual_amount=attempt.amount,
        start_date=as_of,
        stop_rule=rules.StopRule.UNENDING,
        recurring_count=1,  # this charge is the first period
        amount_charged=attempt.amount,
    )
    refresh_next_charge_date(subscription)
    session.add(subscription)
    session.flush()
    return subscription
