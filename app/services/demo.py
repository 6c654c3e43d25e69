"""``flask seed-demo``: load the demo data set once, through the real gateway.

Gateway work (customers, tokens, charges) happens first, outside any transaction of
ours, with keys unique to this run; then every row is written in one transaction. A
second run finds the demo partners and changes nothing.
"""

from __future__ import annotations

import secrets
from datetime import date, timedelta

from sqlmodel import Session, select

from app.clock import local_today
from app.domain import schedule as rules
from app.gateway.base import (
    PaymentGateway,
)
from app.models import (
    AmountMode,
    CustomerAccount,
    Invoice,
    InvoiceStatus,
    Partner,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
    Product,
    Role,
    Subscription,
    User,
    Widget,
)
from app.services.auth import hash_password
from app.services.demo_data import (
    DEMO_PASSWORD,
    DEMO_WIDGET_KEY,
    OPERATOR,
    PARTNERS,
    CustomerSpec,
    InvSpec,
    PartnerSpec,
    SubSpec,
)
from app.services.demo_gateway import DemoCharge, GatewayWork, gateway_work, spec_schedule
from app.services.invoices import LineInput, add_invoice, apply_paid_amount
from app.services.schedules import refresh_next_charge_date, schedule_of

DEMO_ORIGINS = ("http://localhost:5001", "http://127.0.0.1:5001")


def seed_demo(session: Session, gateway: PaymentGateway) -> bool:
    """Create the demo partners, users, customers, schedules and invoices.

    Returns False (and changes nothing) when the demo data is already there.
    Raises GatewayError if the processor refuses a demo card.
    """
    if session.exec(select(Partner).where(Partner.slug == PARTNERS[0].slug)).first() is not None:
        return False
    session.rollback()  # hold no read transaction while the gateway writes
    run = secrets.token_hex(4)
    today = {spec.slug: local_today(spec.timezone) for spec in PARTNERS}
    work = {
        (spec.slug, cust.key): gateway_work(gateway, run, spec, cust, today[spec.slug])
        for spec in PARTNERS
        for cust in spec.customers
    }
    password = hash_password(DEMO_PASSWORD)
    session.add(
        User(email=OPERATOR[0], name=OPERATOR[1], password_hash=password, role=Role.OPERATOR)
    )
    for spec in PARTNERS:
        _write_partner(session, spec, today[spec.slug], work, password)
    session.commit()
    return True


def _write_partner(
    session: Session,
    spec: PartnerSpec,
    today: date,
    work: dict[tuple[str, str], GatewayWork],
    password: str,
) -> None:
    partner = Partner(
        name=spec.name,
        slug=spec.slug,
        country=spec.country,
        timezone=spec.timezone,
        currency=spec.currency,
        locale=spec.locale,
        tax_rate_bp=spec.tax_rate_bp,
        allowed_origins=list(DEMO_ORIGINS) if spec.country == "US" else [],
        sales_collect_payment=spec.sales_collect_payment,
        portal_cancel_allowed=spec.portal_cancel_allowed,
    )
    session.add(partner)
    session.flush()
    for product in spec.products:
        session.add(
            Product(
                partner_id=partner.id,  # type: ignore[arg-type]
                name=product.name,
                sku=product.sku,
                unit_amount=product.amount,
                currency=spec.currency,
                frequency=product.frequency,
                self_service=product.self_service,
                payer_sets_amount=product.payer_sets_amount,
            )
        )
    if spec.country == "US":
        session.add(
            Widget(
                partner_id=partner.id,  # type: ignore[arg-type]
                key=DEMO_WIDGET_KEY,
                title="Support Harbor Community",
                purpose="Your gift keeps our workshops, library and youth programs running.",
                currency=spec.currency,
                amount_mode=AmountMode.PAYER,
                min_amount=500,
                max_amount=50000,
                accept_card=True,
                accept_bank=True,
                allow_one_time=True,
                recurring_frequencies=["monthly", "annual"],
                success_message="Thank you for supporting Harbor Community!",
            )
        )
    for email, name, role in spec.users:
        session.add(
            User(email=email, name=name, password_hash=password, role=role, partner_id=partner.id)
        )
    for cust in spec.customers:
        _write_customer(session, partner, cust, today, work[(spec.slug, cust.key)], password)


def _write_customer(
    session: Session,
    partner: Partner,
    cust: CustomerSpec,
    today: date,
    work: GatewayWork,
    password: str,
) -> None:
    account = CustomerAccount(
        partner_id=partner.id,  # type: ignore[arg-type]
        name=cust.name,
        email=cust.email,
        currency=partner.currency,
        gateway_customer_ref=work.customer_ref,
    )
    session.add(account)
    session.flush()
    if cust.user:
        session.add(
            User(
                email=cust.email, name=cust.name, password_hash=password, role=Role.CUSTOMER,
                partner_id=partner.id, customer_account_id=account.id,
            )
        )  # fmt: skip
    method = None
    if work.method is not None:
        m = work.method
        method = PaymentMethod(
            partner_id=partner.id,  # type: ignore[arg-type]
            customer_account_id=account.id,  # type: ignore[arg-type]
            gateway="sandbox",
            token=m.token,
            kind=m.kind,
            brand=m.brand,
            last4=m.last4,
            exp_month=m.exp_month,
            exp_year=m.exp_year,
            bank_name=m.bank_name,
            holder_name=cust.name,
            is_default=True,
        )
        session.add(method)
        session.flush()
    for sub in cust.subscriptions:
        _write_subscription(
            session, partner, account, method, sub, today, work.charges.get(sub.key, [])
        )
    for inv in cust.invoices:
        _write_invoice(
            session, partner, account, method, inv, today, work.charges.get(f"inv-{inv.key}", [])
        )


def _write_subscription(
    session: Session,
    partner: Partner,
    account: CustomerAccount,
    method: PaymentMethod | None,
    spec: SubSpec,
    today: date,
    charges: list[DemoCharge],
) -> None:
    schedule = spec_schedule(spec, today)
    product_id = session.exec(
        select(Product.id).where(Product.partner_id == partner.id, Product.name == spec.description)
    ).first()  # a plan sold as a product is that product's subscription
    sub = Subscription(
        partner_id=partner.id,  # type: ignore[arg-type]
        customer_account_id=account.id,  # type: ignore[arg-type]
        product_id=product_id,
        payment_method_id=method.id if method else None,
        description=spec.description,
        frequency=schedule.frequency,
        currency=partner.currency,
        total_amount=spec.total,
        manual_amount=spec.amount,
        start_date=schedule.start_date,
        charge_day=spec.charge_day,
        stop_rule=schedule.stop_rule,
        stop_count=spec.stop_count,
        status=spec.status,
    )
    session.add(sub)
    session.flush()
    for charge in charges:
        invoice = add_invoice(
            session,
            partner=partner,
            account=account,
            lines=[LineInput(spec.description, 1, _net_of(charge.amount, partner.tax_rate_bp))],
            issue_date=charge.period or today,
            due_date=charge.period or today,
            subscription_id=sub.id,
        )
        _record_payment(session, invoice, method, charge, f"sub:{sub.id}:{charge.period}", sub.id)
        if charge.result.approved:
            sub.recurring_count += 1
            sub.amount_charged += charge.amount
        else:
            sub.last_error = charge.result.message
    if spec.status == rules.SubscriptionStatus.COMPLETE and not charges:
        sub.recurring_count = 1
        sub.amount_charged = spec.amount
    if spec.status in (rules.SubscriptionStatus.RECURRING, rules.SubscriptionStatus.ERROR):
        refresh_next_charge_date(sub)
    elif spec.status == rules.SubscriptionStatus.STOPPED:
        sub.next_charge_date = None
    else:
        sub.next_charge_date = rules.next_charge_date(
            schedule_of(sub), charged_periods=sub.recurring_count, amount_charged=sub.amount_charged
        )
    session.add(sub)


def _net_of(gross: int, rate_bp: int) -> int:
    """The net amount whose tax brings it to ``gross`` (demo subscriptions are priced gross)."""
    net = (gross * 10000 + (10000 + rate_bp) // 2) // (10000 + rate_bp)
    return net


def _write_invoice(
    session: Session,
    partner: Partner,
    account: CustomerAccount,
    method: PaymentMethod | None,
    spec: InvSpec,
    today: date,
    charges: list[DemoCharge],
) -> None:
    invoice = add_invoice(
        session,
        partner=partner,
        account=account,
        lines=[LineInput(spec.description, 1, spec.net)],
        issue_date=today + timedelta(days=spec.issue_offset),
        due_date=today + timedelta(days=spec.due_offset),
    )
    if spec.status == "overdue":
        invoice.status = InvoiceStatus.OVERDUE
    elif spec.status == "paid":
        for charge in charges:
            _record_payment(session, invoice, method, charge, f"inv:{invoice.id}:1", None)
    elif spec.status == "paid_by_check":
        session.add(
            Payment(
                partner_id=invoice.partner_id,
                customer_account_id=account.id,
                invoice_id=invoice.id,
                purpose_key=f"inv:{invoice.id}:manual:1",
                idempotency_key=f"inv:{invoice.id}:manual:1",
                kind=PaymentKind.CHECK,
                method="manual",
                status=PaymentStatus.APPROVED,
                amount=invoice.total,
                currency=invoice.currency,
                reference="Check #1042",
                received_on=invoice.issue_date + timedelta(days=2),
            )
        )
        apply_paid_amount(invoice, invoice.total)
    elif spec.status == "canceled":
        _cancel(session, partner, account, invoice, today)
    session.add(invoice)


def _record_payment(
    session: Session,
    invoice: Invoice,
    method: PaymentMethod | None,
    charge: DemoCharge,
    purpose_key: str,
    subscription_id: int | None,
) -> None:
    result = charge.result
    status = PaymentStatus.APPROVED if result.approved else PaymentStatus(result.status)
    session.add(
        Payment(
            partner_id=invoice.partner_id,
            customer_account_id=invoice.customer_account_id,
            invoice_id=invoice.id,
            subscription_id=subscription_id,
            payment_method_id=method.id if method else None,
            purpose_key=purpose_key,
            idempotency_key=charge.idempotency_key,  # as sent, so the gateway finds it
            kind=PaymentKind.CHARGE,
            method=method.kind if method else "card",
            status=status,
            amount=charge.amount,
            currency=invoice.currency,
            is_recurring=subscription_id is not None,
            period_date=charge.period,
            gateway="sandbox",
            gateway_reference=result.reference,
            brand=method.brand if method else "",
            last4=method.last4 if method else "",
            decline_code=result.decline_code,
            decline_reason=result.message if not result.approved else "",
            received_on=charge.period or invoice.issue_date,
        )
    )
    if result.approved:
        apply_paid_amount(invoice, charge.amount)
    elif invoice.due_date <= invoice.issue_date:
        invoice.status = InvoiceStatus.OVERDUE
    session.add(invoice)


def _cancel(
    session: Session, partner: Partner, account: CustomerAccount, invoice: Invoice, today: date
) -> None:
    from app.models import InvoiceLine

    invoice.status = InvoiceStatus.CANCELED
    lines = session.exec(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id)).all()
    add_invoice(
        session,
        partner=partner,
        account=account,
        lines=[
            LineInput(
                f"Cancels {invoice.number}: {line.description}", line.quantity, -line.unit_amount
            )
            for line in lines
        ],
        issue_date=today,
        due_date=today,
        series="CN",
        status=InvoiceStatus.CANCELLATION,
        cancels_invoice_id=invoice.id,
    )
