"""The demo data set's processor side: customers, cards and past charges in the sandbox.

Done before any row of ours is written, with keys unique to the seeding run (see
``demo.seed_demo``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from app.domain import schedule as rules
from app.gateway.base import (
    BankAccountDetails,
    CardDetails,
    GatewayResult,
    PaymentGateway,
    TokenizedMethod,
)
from app.services.demo_data import CustomerSpec, PartnerSpec, SubSpec


@dataclass
class DemoCharge:
    amount: int
    result: GatewayResult
    period: date | None = None
    idempotency_key: str = ""  # the key the gateway was called with


@dataclass
class GatewayWork:
    customer_ref: str = ""
    method: TokenizedMethod | None = None
    charges: dict[str, list[DemoCharge]] = field(default_factory=dict)


def start_date(sub: SubSpec, today: date) -> date:
    if sub.start_on_first_of_month:
        return today.replace(day=1)
    return today + timedelta(days=sub.start_offset)


def spec_schedule(sub: SubSpec, today: date) -> rules.Schedule:
    return rules.Schedule(
        frequency=rules.Frequency(sub.frequency),
        start_date=start_date(sub, today),
        charge_day=sub.charge_day,
        stop_rule=rules.StopRule(sub.stop_rule),
        stop_count=sub.stop_count,
        total_amount=sub.total,
        manual_amount=sub.amount,
    )


def gateway_work(
    gateway: PaymentGateway, run: str, partner: PartnerSpec, cust: CustomerSpec, today: date
) -> GatewayWork:
    key = f"demo-{run}-{partner.slug}-{cust.key}"
    work = GatewayWork()
    work.customer_ref = gateway.create_customer(
        email=cust.email, name=cust.name, idempotency_key=f"{key}-cus"
    )
    if cust.card:
        token = gateway.tokenize_card(
            CardDetails(
                number=cust.card,
                exp_month=12,
                exp_year=today.year + 3,
                cvc=_demo_cvc(cust.card),
                name=cust.name,
            )
        )
    elif cust.bank:
        token = gateway.tokenize_bank_account(
            BankAccountDetails(
                routing_number="110000000", account_number="000123456789", account_holder=cust.name
            )
        )
    else:
        return work
    work.method = gateway.attach_payment_method(customer_ref=work.customer_ref, token=token.token)

    def charge(purpose: str, amount: int, period: date | None = None) -> DemoCharge:
        idempotency_key = f"{key}-{purpose}"
        result = gateway.charge(
            amount=amount,
            currency=partner.currency,
            token=token.token,
            customer_ref=work.customer_ref,
            idempotency_key=idempotency_key,
            description=f"Demo: {purpose}",
            metadata={"purpose_key": f"demo:{cust.key}:{purpose}"},
        )
        return DemoCharge(amount, result, period, idempotency_key)

    for sub in cust.subscriptions:
        schedule = spec_schedule(sub, today)
        charges: list[DemoCharge] = []
        if sub.decline_first:
            charges.append(charge(f"{sub.key}-0", sub.amount, schedule.start_date))
        elif sub.history:
            charged = 0
            for period in range(0, 400):
                when = rules.next_charge_date(
                    schedule, charged_periods=period, amount_charged=charged
                )
                if when is None or when > today:
                    break
                amount = rules.charge_amount(schedule, amount_charged=charged)
                charges.append(charge(f"{sub.key}-{period}", amount, when))
                charged += amount
        work.charges[sub.key] = charges
    for inv in cust.invoices:
        if inv.status == "paid":
            gross = inv.net + (inv.net * partner.tax_rate_bp + 5000) // 10000
            work.charges[f"inv-{inv.key}"] = [charge(f"inv-{inv.key}", gross)]
    return work


def _demo_cvc(number: str) -> str:
    return "1234" if number.startswith(("34", "37")) else "123"
