"""The rows of ``bench.datasets``' partner set, generated in memory-light passes.

Each method returns ``(columns, rows)`` for one table; ``rows`` is an iterator, so the
300,000 payments stream straight into COPY. The invoice plan (who, when, status, lines,
how it was paid) is made once up front because customers (a stopped service),
subscriptions (suspended), invoices, lines, notices and payments all follow from it.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bench.dataset_payments import PaymentRows

Rows = tuple[tuple[str, ...], Iterator[tuple]]
PARTNER = 1
ADMIN = 1
ADMIN_EMAIL = "admin@bench-partner.example"
TIMEZONE = "America/New_York"
TAX_BP = 725
STAGES = ((5, "reminder"), (10, "reminder"), (15, "reminder"), (25, "reminder"),
          (30, "warning"), (35, "stop"))  # fmt: skip
PRICES = (1500, 2500, 4000, 4900, 7500, 9900, 12000, 15000, 25000)
WORDS = ("Harbor", "Maple", "Cedar", "Riverside", "Summit", "Oak", "Willow", "Granite",
         "Lakeside", "Pine", "Meadow", "Beacon", "Orchard", "Canyon", "Prairie", "Coastal",
         "Northern", "Valley", "Hillside", "Elm", "Aspen", "Birch", "Bayview", "Redwood",
         "Silver", "Golden", "Union", "Liberty", "Heritage", "Evergreen")  # fmt: skip
KINDS = ("Rowing Club", "Choir", "Chess Society", "Youth League", "Food Bank", "Scouts",
         "Theatre Group", "Garden Club", "Tennis Club", "Library Friends", "Swim Team",
         "Arts Council", "Running Club", "Orchestra", "Book Club")  # fmt: skip
SKEW = 0.6  # Zipf exponent of rows per customer: the largest holds ~1 % of them
STOP_DAY = STAGES[-1][0]


@dataclass
class _Invoice:
    id: int
    account: int
    issue: date
    due: date
    status: str
    lines: list[tuple[int, int]]  # (unit amount, quantity)
    total: int = 0
    paid: int = 0
    installments: int = 1  # approved payments that make up ``paid``
    declines: int = 0
    series: str = "INV"
    sequence: int = 0
    cancels: int | None = None
    subscription: int | None = None


@dataclass
class _Method:
    id: int
    brand: str
    last4: str
    kind: str = "card"


@dataclass
class _Plan:
    invoices: list[_Invoice] = field(default_factory=list)
    stopped_on: dict[int, date] = field(default_factory=dict)  # account -> service stop day


def _tax(amount: int) -> int:
    return (amount * TAX_BP + 5000) // 10000  # half-up to the minor unit


class Generator(PaymentRows):
    """The rows of one partner set of ``sizes`` (customers, invoices, payments, …)."""

    def __init__(self, sizes: Any, today: date) -> None:
        self.sizes = sizes
        self.today = today
        self.zone = ZoneInfo(TIMEZONE)
        self.rng = random.Random(sizes.seed)
        self.accounts = list(range(1, sizes.customers + 1))
        ranks = self.accounts[:]
        self.rng.shuffle(ranks)
        self.cum = list(itertools.accumulate(1 / r**SKEW for r in ranks))  # cumulative
        self.email = {a: f"billing{a}@customer{a}.example" for a in self.accounts}
        self.cards: dict[int, _Method] = {}
        self.subs_of: dict[int, list[int]] = {}
        self.subs: list[tuple[int, int, str, datetime]] = []  # id, account, status, created
        self.method_rows = self._method_rows()
        self.plan = self._plan_invoices()

    def _at(self, day: date, hour: int = 9) -> datetime:
        seconds = self.rng.randrange(0, 8 * 3600)
        local = datetime.combine(day, time(hour), tzinfo=self.zone) + timedelta(seconds=seconds)
        return local.astimezone(UTC)

    def _day(self, back: int) -> date:
        return self.today - timedelta(days=self.rng.randrange(0, back))

    # -- partner, users, customers, methods, subscriptions ------------------------------------

    def partner(self) -> Rows:
        columns = ("id", "name", "slug", "country", "timezone", "currency", "locale",
                   "tax_rate_bp", "allowed_origins", "billing_hour", "allow_partial_payments",
                   "pay_link_days", "receipt_wording", "sales_send_for_approval",
                   "sales_collect_payment", "approval_link_days", "authorization_days",
                   "portal_cancel_allowed", "portal_schedule_after_due", "created_at")  # fmt: skip
        row = (PARTNER, "Bench Partner", "bench-partner", "US", TIMEZONE, "USD", "en_US", TAX_BP,
               "[]", 3, True, 30, "", True, False, 14, 7, False, False,
               self._at(self.today - timedelta(days=800)))  # fmt: skip
        return columns, iter([row])

    def users(self, password_hash: str) -> Rows:
        columns = ("id", "email", "name", "password_hash", "role", "partner_id", "is_active",
                   "recent_failed_logins", "created_at")  # fmt: skip
        created = self._at(self.today - timedelta(days=800))
        rows = [
            (ADMIN, ADMIN_EMAIL, "Bench Admin", password_hash, "partner_admin",
             PARTNER, True, "[]", created),
            (2, "sales@bench-partner.example", "Bench Sales", password_hash, "partner_sales",
             PARTNER, True, "[]", created),
        ]  # fmt: skip
        return columns, iter(rows)

    def customers(self) -> Rows:
        columns = ("id", "partner_id", "name", "email", "billing_email", "phone", "status",
                   "currency", "gateway_customer_ref", "service_stopped_on", "on_behalf_start",
                   "on_behalf_email", "created_at")  # fmt: skip

        def rows() -> Iterator[tuple]:
            seen: set[str] = set()
            for a in self.accounts:
                rng = self.rng
                name = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {rng.choice(KINDS)}"
                if name in seen:
                    name = f"{name} {a}"
                seen.add(name)
                stopped = self.plan.stopped_on.get(a)
                status = "suspended" if stopped else rng.choices(
                    ("active", "suspended", "closed"), (96, 1, 3))[0]  # fmt: skip
                behalf = rng.random() < 0.05
                yield (
                    a, PARTNER, name, self.email[a], "", f"+1 555 {a:07d}", status, "USD",
                    f"cus_bench_{a}", stopped,
                    self._day(300) if behalf else None,
                    f"ap{a}@customer{a}.example" if behalf else "",
                    self._at(self.today - timedelta(days=730 + rng.randrange(0, 60))),
                )  # fmt: skip

        return columns, rows()

    def _method_rows(self) -> list[tuple]:
        """Cards for seven customers in ten (the default), a bank account for some of them."""
        rng, rows = self.rng, []
        for a in self.accounts:
            if rng.random() >= 0.7:
                continue
            n = len(rows) + 1
            card = _Method(
                n, rng.choice(("visa", "mastercard", "amex")), f"{rng.randrange(10000):04d}"
            )
            self.cards[a] = card
            year = self.today.year + rng.randrange(-1, 5)
            rows.append((n, PARTNER, a, "sandbox", f"tok_bench_{n}", "card", card.brand,
                         card.last4, rng.randrange(1, 13), year, "", f"Holder {a}", True,
                         self._at(self._day(700))))  # fmt: skip
            if rng.random() < 0.1:
                rows.append((n + 1, PARTNER, a, "sandbox", f"tok_bench_{n + 1}", "bank_account",
                             "", f"{rng.randrange(10000):04d}", None, None, "First Bench Bank",
                             f"Holder {a}", False, self._at(self._day(700))))  # fmt: skip
        return rows

    def methods(self) -> Rows:
        columns = ("id", "partner_id", "customer_account_id", "gateway", "token", "kind",
                   "brand", "last4", "exp_month", "exp_year", "bank_name", "holder_name",
                   "is_default", "created_at")  # fmt: skip
        return columns, iter(self.method_rows)

    def subscriptions(self) -> Rows:
        from app.domain import schedule as rules

        columns = ("id", "partner_id", "customer_account_id", "payment_method_id", "description",
                   "status", "frequency", "currency", "manual_amount", "initial_amount",
                   "start_date", "stop_rule", "next_charge_date", "first_period",
                   "recurring_count", "amount_charged", "last_error", "created_at")  # fmt: skip

        def rows() -> Iterator[tuple]:
            rng = self.rng
            owners = rng.choices(self.accounts, cum_weights=self.cum, k=self.sizes.subscriptions)
            for n, a in enumerate(owners, start=1):
                self.subs_of.setdefault(a, []).append(n)
                frequency = rng.choices(("monthly", "annual", "weekly", "quarterly"),
                                        (80, 10, 5, 5))[0]  # fmt: skip
                amount = rng.choice(PRICES)
                start = self._day(700)
                schedule = rules.Schedule(
                    frequency=rules.Frequency(frequency), start_date=start, charge_day=None,
                    stop_rule=rules.StopRule.UNENDING, end_date=None, stop_count=None,
                    total_amount=None, manual_amount=amount,
                )  # fmt: skip
                charged = rules.period_index_on_or_after(schedule, self.today)
                status = rng.choices(("recurring", "stopped", "error"), (92, 5, 3))[0]
                if a in self.plan.stopped_on:
                    status = "suspended"
                error = ""
                if status == "error" and charged:
                    charged -= 1
                    error = "Your card was declined."
                next_on = rules.nth_charge_date(schedule, charged)
                self.subs.append((n, a, status, self._at(start)))
                yield (n, PARTNER, a, self.cards[a].id if a in self.cards else None,
                       f"{frequency.capitalize()} membership", status, frequency, "USD", amount,
                       0, start, "unending", next_on, 0, charged, charged * amount, error,
                       self.subs[-1][3])  # fmt: skip

        return columns, rows()

    # -- invoices ------------------------------------------------------------------------------

    def _plan_invoices(self) -> _Plan:
        rng, today, plan = self.rng, self.today, _Plan()
        cancellations = self.sizes.invoices // 70
        count = self.sizes.invoices - cancellations
        owners = rng.choices(self.accounts, cum_weights=self.cum, k=count)
        issued = sorted(self._day(730) for _ in range(count))
        for n, (account, issue) in enumerate(zip(owners, issued, strict=True), start=1):
            lines = [(rng.choice(PRICES), rng.choice((1, 1, 1, 2, 3)))
                     for _ in range(rng.choice((1, 1, 2, 3)))]  # fmt: skip
            inv = _Invoice(n, account, issue, issue + timedelta(days=30), "paid", lines,
                           sequence=n)  # fmt: skip
            inv.total = sum(u * q + _tax(u * q) for u, q in lines)
            late = (today - inv.due).days
            roll = rng.random()
            if late <= 0:
                inv.status = "created" if roll < 0.7 else "paid"
            elif roll < (0.15 if late <= 60 else 0.005):
                inv.status = "overdue"
            if inv.status == "paid":
                inv.paid = inv.total
                inv.installments = rng.randrange(3, 13) if rng.random() < 0.03 else 1
                inv.declines = 1 if rng.random() < 0.15 else 0
            elif inv.status == "overdue":
                if rng.random() < 0.2:
                    inv.paid, inv.installments = inv.total // 3, rng.randrange(1, 3)
                else:
                    inv.installments = 0
                inv.declines = rng.randrange(0, 4)
                if late > STOP_DAY:
                    stop = inv.due + timedelta(days=STOP_DAY)
                    plan.stopped_on[account] = min(stop, plan.stopped_on.get(account, stop))
            else:
                inv.installments = 0
            if account not in self.cards:
                inv.declines = 0
            plan.invoices.append(inv)
        old = [inv for inv in plan.invoices if inv.status == "paid" and inv.due < today]
        canceled = sorted(rng.sample(old, min(cancellations, len(old))), key=lambda i: i.id)
        cn = []
        for inv in canceled:
            inv.status, inv.paid, inv.installments, inv.declines = "canceled", 0, 0, 0
            day = min(today, inv.issue + timedelta(days=rng.randrange(1, 20)))
            negative = [(-u, q) for u, q in inv.lines]
            cn.append(_Invoice(0, inv.account, day, day, "cancellation", negative,
                               total=-inv.total, series="CN", cancels=inv.id))  # fmt: skip
        cn.sort(key=lambda i: (i.issue, i.cancels))
        for k, inv in enumerate(cn, start=1):
            inv.id, inv.sequence = count + k, k
            plan.invoices.append(inv)
        return plan

    def _dunning(self, inv: _Invoice) -> tuple[date | None, int]:
        """(next_dunning_on, dunning_day) of an invoice as the sweep would have left it."""
        if inv.status == "created":
            return inv.due + timedelta(days=STAGES[0][0]), 0
        if inv.status != "overdue":
            return None, 0
        late = (self.today - inv.due).days
        done = [day for day, _ in STAGES if day <= late]
        after = [day for day, _ in STAGES if day > late]
        return (inv.due + timedelta(days=after[0]) if after else None), (done[-1] if done else 0)

    def invoices(self) -> Rows:
        columns = ("id", "partner_id", "customer_account_id", "subscription_id",
                   "cancels_invoice_id", "series", "sequence", "number", "status", "currency",
                   "issue_date", "due_date", "subtotal", "tax", "total", "amount_paid",
                   "billing_email", "memo", "next_dunning_on", "dunning_day",
                   "created_at")  # fmt: skip

        def rows() -> Iterator[tuple]:
            for inv in self.plan.invoices:
                subs = self.subs_of.get(inv.account)
                if subs and inv.series == "INV":
                    inv.subscription = subs[inv.id % len(subs)]
                subtotal = sum(u * q for u, q in inv.lines)
                next_on, day = self._dunning(inv)
                yield (inv.id, PARTNER, inv.account, inv.subscription, inv.cancels, inv.series,
                       inv.sequence,
                       f"{inv.series}-{PARTNER:03d}-{inv.sequence:06d}", inv.status, "USD",
                       inv.issue, inv.due, subtotal, inv.total - subtotal, inv.total, inv.paid,
                       self.email[inv.account], "", next_on, day,
                       self._at(inv.issue, hour=3))  # fmt: skip

        return columns, rows()

    def lines(self) -> Rows:
        columns = ("id", "invoice_id", "description", "quantity", "unit_amount", "tax_rate_bp",
                   "amount", "tax_amount")  # fmt: skip

        def rows() -> Iterator[tuple]:
            n = 0
            for inv in self.plan.invoices:
                for unit, quantity in inv.lines:
                    n += 1
                    amount = unit * quantity
                    yield (n, inv.id, f"Membership {abs(unit) // 100}", quantity, unit, TAX_BP,
                           amount, _tax(amount) if amount >= 0 else -_tax(-amount))  # fmt: skip

        return columns, rows()

    def sequences(self) -> Rows:
        last = {"INV": 0, "CN": 0}
        for inv in self.plan.invoices:
            last[inv.series] = max(last[inv.series], inv.sequence)
        rows = [(PARTNER, series, value + 1) for series, value in last.items()]
        return ("partner_id", "series", "next_value"), iter(rows)

    def notices(self) -> Rows:
        columns = ("id", "partner_id", "invoice_id", "customer_account_id", "day", "stage",
                   "due_on", "handled_on", "skipped", "recipients", "created_at")  # fmt: skip

        def rows() -> Iterator[tuple]:
            n = 0
            for inv in self.plan.invoices:
                _, last = self._dunning(inv)
                who = f"customer:{self.email[inv.account]};partner:{ADMIN_EMAIL}"
                for day, stage in STAGES:
                    if inv.status != "overdue" or day > last:
                        break
                    n += 1
                    on = inv.due + timedelta(days=day)
                    yield (n, PARTNER, inv.id, inv.account, day, stage, on, on, False, who,
                           self._at(on, hour=3))  # fmt: skip

        return columns, rows()
