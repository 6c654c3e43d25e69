"""What the operator sees of billing runs: recent runs, one run's progress and failures.

Operators only; anyone else gets NotFound. Read-only: nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlmodel import Session, col, func, select

from app.domain.errors import NotFound
from app.models import (
    BillingRun,
    CustomerAccount,
    Partner,
    Payment,
    PaymentStatus,
    Role,
    RunStatus,
    Subscription,
    User,
)

RECENT_RUNS: Final = 50
MAX_FAILURES: Final = 200
FAILED: Final = (PaymentStatus.DECLINED, PaymentStatus.ERROR, PaymentStatus.UNKNOWN)


@dataclass(frozen=True)
class RunRow:
    run: BillingRun
    partner_name: str


@dataclass(frozen=True)
class Failure:
    """A recurring charge attempt of the run that was not approved."""

    payment: Payment
    account: CustomerAccount
    subscription: Subscription


@dataclass(frozen=True)
class RunDetail:
    run: BillingRun
    partner: Partner
    failures: list[Failure]
    failure_count: int

    @property
    def running(self) -> bool:
        return self.run.status == RunStatus.RUNNING

    @property
    def progress_max(self) -> int:
        return max(self.run.due, self.run.processed, 1)

    @property
    def progress_value(self) -> int:
        return self.progress_max if not self.running else min(self.run.processed, self.progress_max)

    @property
    def percent(self) -> int:
        return self.progress_value * 100 // self.progress_max


def _operator_only(user: User) -> None:
    if user.role != Role.OPERATOR:
        raise NotFound("Not found.")


def list_runs(session: Session, user: User, *, limit: int = RECENT_RUNS) -> list[RunRow]:
    """The most recent runs of every partner, newest first.

    Raises:
        NotFound: the user is not an operator.
    """
    _operator_only(user)
    rows = session.exec(
        select(BillingRun, Partner.name)
        .join(Partner, col(Partner.id) == BillingRun.partner_id)
        .order_by(col(BillingRun.run_date).desc(), col(BillingRun.id).desc())
        .limit(limit)
    ).all()
    return [RunRow(run, name) for run, name in rows]


def run_detail(session: Session, user: User, run_id: int) -> RunDetail:
    """One run with its counters and its failed attempts.

    The failures are the partner's recurring billing-run attempts (declined, error or
    unknown, as they stand now) for the periods this run covered: dated after the
    partner's previous run and on or before this run's date (a run catches up the days
    missed before it). An attempt settled as approved since no longer appears.

    Raises:
        NotFound: the user is not an operator, or there is no such run.
    """
    _operator_only(user)
    run = session.get(BillingRun, run_id)
    if run is None:
        raise NotFound("Not found.")
    partner = session.get(Partner, run.partner_id)
    assert partner is not None
    previous = session.exec(
        select(func.max(BillingRun.run_date)).where(
            BillingRun.partner_id == run.partner_id, col(BillingRun.run_date) < run.run_date
        )
    ).one()
    filters = [
        Payment.partner_id == run.partner_id,
        col(Payment.is_recurring).is_(True),
        col(Payment.purpose_key).startswith("sub:"),
        col(Payment.status).in_(FAILED),
        col(Payment.period_date) <= run.run_date,
    ]
    if previous is not None:
        filters.append(col(Payment.period_date) > previous)
    count = session.exec(select(func.count()).select_from(Payment).where(*filters)).one()
    rows = session.exec(
        select(Payment, CustomerAccount, Subscription)
        .join(CustomerAccount, col(CustomerAccount.id) == Payment.customer_account_id)
        .join(Subscription, col(Subscription.id) == Payment.subscription_id)
        .where(*filters)
        .order_by(col(Payment.id))
        .limit(MAX_FAILURES)
    ).all()
    failures = [Failure(p, a, s) for p, a, s in rows]
    return RunDetail(run, partner, failures, int(count))
