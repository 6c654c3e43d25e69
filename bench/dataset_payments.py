"""Payments and history events of ``bench.datasets``' partner set (a mixin of its generator).

Invoice payments follow the invoice plan: declined card attempts, then the approved
payment (card, or a check, cash or bank transfer recorded by hand), or several
installments whose sum is the invoice's amount paid. Widget donations (no invoice; a
fifth of them from payers without an account) fill the set up to its size, 2 % of them
refunded (a refund row pointing at its payment, whose refunded amount is set). History
events follow as the services write them: subscriptions created, changed and stopped,
invoices canceled, payments recorded by hand, widget payments, refunds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

PAYMENT_COLUMNS = (
    "id", "partner_id", "customer_account_id", "invoice_id", "subscription_id",
    "payment_method_id", "parent_payment_id", "purpose_key", "idempotency_key", "kind", "method",
    "status", "amount", "currency", "is_recurring", "period_date", "gateway", "gateway_reference",
    "brand", "last4", "decline_code", "decline_reason", "reference", "received_on",
    "refunded_amount", "detail", "created_at", "settled_at",
)  # fmt: skip
EVENT_COLUMNS = ("id", "partner_id", "customer_account_id", "actor_user_id", "actor_label",
                 "action", "subject_type", "subject_id", "detail", "created_at")  # fmt: skip
DECLINED = ("card_declined", "Your card was declined.")


class PaymentRows:
    """``payments()`` and ``events()`` for the generator (uses its plan, rng and clock)."""

    rng: Any
    today: date
    zone: Any
    plan: Any
    sizes: Any
    accounts: list[int]
    cum: list[float]
    cards: dict[int, Any]
    subs: list[tuple[int, int, str, datetime]]

    def _payment(
        self, n: int, account: int | None, *, amount: int, at: datetime, kind: str = "charge",
        status: str = "approved", invoice: Any = None, parent: int | None = None,
        refunded: int = 0, detail: dict | None = None,
    ) -> tuple:  # fmt: skip
        card = self.cards.get(account) if account else None
        manual = kind in ("check", "cash", "bank_transfer")
        code, reason = DECLINED if status == "declined" else ("", "")
        day = at.astimezone(self.zone).date()
        sub = invoice.subscription if invoice is not None else None
        return (
            n, 1, account, invoice.id if invoice is not None else None, sub,
            card.id if card and not manual else None, parent, f"bench:{n}", f"bench:{n}", kind,
            "manual" if manual else "card", status, amount, "USD", sub is not None,
            invoice.issue if sub is not None else None, "" if manual else "sandbox",
            "" if manual else f"ch_bench_{n}", "" if manual else (card.brand if card else "visa"),
            "" if manual else (card.last4 if card else "4242"), code, reason,
            f"#{1000 + n % 9000}" if manual else "", day if status == "approved" else None,
            refunded, json.dumps(detail or {}), at, at,
        )  # fmt: skip

    def _someone(self) -> int:
        """A customer, the larger ones more often."""
        return self.rng.choices(self.accounts, cum_weights=self.cum)[0]

    def _when(self, first: date, last: date) -> datetime:
        first = min(first, self.today)
        span = max(0, (min(last, self.today) - first).days)
        return self._at(first + timedelta(days=self.rng.randrange(span + 1)))  # type: ignore[attr-defined]

    def payments(self) -> tuple[tuple[str, ...], Iterator[tuple]]:
        """Every payment row, invoice payments first, then donations up to the set's size."""

        self.logged: list[tuple[int, int | None, str, int, datetime]] = []

        closing = datetime.combine(self.today, time(23, 59), tzinfo=self.zone).astimezone(UTC)

        def rows() -> Iterator[tuple]:
            rng, limit, n = self.rng, self.sizes.payments, 0
            for inv in self.plan.invoices:
                if n >= limit:
                    break
                for _ in range(inv.declines):
                    n += 1
                    at = self._when(inv.issue, inv.due)
                    yield self._payment(n, inv.account, amount=inv.total - inv.paid or inv.total,
                                        at=at, status="declined", invoice=inv)  # fmt: skip
                share = inv.paid // inv.installments if inv.installments else 0
                for k in range(inv.installments):
                    n += 1
                    amount = share if k < inv.installments - 1 else inv.paid - share * k
                    manual = inv.account not in self.cards or rng.random() < 0.15
                    kind = rng.choice(("check", "bank_transfer", "cash")) if manual else "charge"
                    at = self._when(inv.issue + timedelta(days=k * 14), inv.due + timedelta(k * 14))
                    yield self._payment(n, inv.account, amount=amount, at=at, kind=kind,
                                        invoice=inv)  # fmt: skip
                    if manual:
                        self.logged.append((n, inv.account, "payment.recorded", amount, at))
            while n < limit:
                n += 1
                account = None if rng.random() < 0.2 else self._someone()
                amount = rng.choice((1000, 2500, 5000, 10000, rng.randrange(500, 50000)))
                at = self._when(self.today - timedelta(days=729), self.today)
                status = "approved" if rng.random() < 0.92 else "declined"
                refund = 0
                if status == "approved" and n < limit and rng.random() < 0.02:
                    refund = amount if rng.random() < 0.5 else amount // 2
                email = f"payer{n}@donors.example"
                detail = {"source": "widget", "payer_email": email}
                yield self._payment(n, account, amount=amount, at=at, status=status,
                                    refunded=refund, detail=detail)  # fmt: skip
                if account and status == "approved":
                    self.logged.append((n, account, "widget.paid", amount, at))
                if refund:
                    n += 1
                    later = min(at + timedelta(days=rng.randrange(1, 10)), closing)
                    yield self._payment(n, account, amount=refund, at=later, kind="refund",
                                        parent=n - 1)  # fmt: skip
                    self.logged.append((n - 1, account, "payment.refunded", refund, later))

        return PAYMENT_COLUMNS, rows()

    def events(self) -> tuple[tuple[str, ...], Iterator[tuple]]:
        """History: each subscription's creation (and stop or change), each cancellation,
        each payment recorded by hand, widget payment of a customer and refund."""

        def rows() -> Iterator[tuple]:
            rng, n = self.rng, 0
            for sub, account, status, created in self.subs:
                n += 1
                yield (n, 1, account, 1, "", "subscription.created", "subscription", sub,
                       '{"initial_amount": 0}', created)  # fmt: skip
                later = self._when(created.date(), self.today)
                if status in ("stopped", "suspended"):
                    n += 1
                    action = "subscription.stopped" if status == "stopped" else "service.stopped"
                    yield (n, 1, account, 1 if status == "stopped" else None,
                           "" if status == "stopped" else "dunning", action, "subscription", sub,
                           "{}", later)  # fmt: skip
                elif rng.random() < 0.3:
                    n += 1
                    yield (n, 1, account, 1, "", "subscription.updated", "subscription", sub,
                           "{}", later)  # fmt: skip
            for inv in self.plan.invoices:
                if inv.status == "canceled":
                    n += 1
                    yield (n, 1, inv.account, 1, "", "invoice.canceled", "invoice", inv.id,
                           json.dumps({"number": f"INV-001-{inv.sequence:06d}"}),
                           self._when(inv.issue, inv.issue + timedelta(days=20)))  # fmt: skip
            for payment, account, action, amount, at in self.logged:
                n += 1
                actor, label = (1, "") if action == "payment.recorded" else (None, "payer")
                yield (n, 1, account, actor, label, action, "payment", payment,
                       json.dumps({"amount": amount}), at)  # fmt: skip

        return EVENT_COLUMNS, rows()
