"""The partner's account page data: card expiry, payments, history, in constant statements."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import Engine, event
from sqlmodel import Session

from app.domain.cards import ExpiryState
from app.domain.errors import NotFound
from app.models import Payment, PaymentKind, PaymentStatus
from app.services.account_page import PAYMENTS_LIMIT, account_page
from app.services.history import HISTORY_LIMIT
from tests.services.account_helpers import (
    DE_ADMIN,
    JORDAN,
    KOELN,
    US_ADMIN,
    US_SALES,
    account,
    add_card,
    add_events,
    add_payments,
    subscriptions,
    user,
)

TODAY = date(2026, 1, 15)


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.mark.parametrize(
    ("days_left", "state"),
    [
        (61, ExpiryState.OK),
        (60, ExpiryState.EXPIRING),
        (59, ExpiryState.EXPIRING),
        (0, ExpiryState.EXPIRING),
        (-1, ExpiryState.EXPIRED),
    ],
)
def test_does_a_card_on_file_warn_within_60_days_of_the_partners_today(
    db: Session, days_left: int, state: ExpiryState
) -> None:
    jordan = account(db, JORDAN)
    add_card(db, jordan, last4="0005", month=3, year=2026)  # works through Mar 31, 2026
    as_of = date(2026, 3, 31) - timedelta(days=days_left)

    page = account_page(db, user(db, US_ADMIN), jordan.id, as_of=as_of)

    row = next(r for r in page.methods if r.method.last4 == "0005")
    assert row.expiry.state == state
    assert row.expiry.days_left == days_left


def test_are_payments_newest_first_and_only_the_latest_20_with_a_count(db: Session) -> None:
    jordan = account(db, JORDAN)
    before = account_page(db, user(db, US_ADMIN), jordan.id, as_of=TODAY).payment_count
    added = add_payments(db, jordan, 25)
    refund = Payment(
        partner_id=jordan.partner_id,
        customer_account_id=jordan.id,
        parent_payment_id=added[-1].id,
        purpose_key="test:refund",
        idempotency_key="test:refund",
        kind=PaymentKind.REFUND,
        method="card",
        status=PaymentStatus.APPROVED,
        amount=500,
        currency="USD",
        created_at=added[-1].created_at + timedelta(hours=1),
    )
    added[-1].refunded_amount = 500
    db.add_all([refund, added[-1]])
    db.commit()

    page = account_page(db, user(db, US_ADMIN), jordan.id, as_of=TODAY)

    assert len(page.payments) == PAYMENTS_LIMIT
    assert page.payment_count == before + 25  # the refund is shown on its payment
    assert [r.payment.id for r in page.payments] == [p.id for p in reversed(added)][:20]
    newest = page.payments[0]
    assert newest.payment.refunded_amount == 500
    assert newest.label == "Visa •••• 4242"
    zone = ZoneInfo(page.partner.timezone)
    assert newest.on == newest.payment.created_at.astimezone(zone).date()


def test_is_the_history_the_accounts_and_its_subscriptions_newest_first(db: Session) -> None:
    jordan, koeln = account(db, JORDAN), account(db, KOELN)
    admin, sales = user(db, US_ADMIN), user(db, US_SALES)
    add_events(db, jordan, 3, actor=sales)
    add_events(db, koeln, 2, actor=user(db, DE_ADMIN), start=10)  # later, another partner

    page = account_page(db, admin, jordan.id, as_of=TODAY)

    newest, middle, oldest = page.history[:3]
    assert newest.text == "Changed the billing-on-behalf email"
    assert newest.details == ["old2@example.com → new2@example.com"]
    assert newest.actor == (sales.name or sales.email)
    description = subscriptions(db, jordan)[0].description
    assert middle.text == f"Skipped the next charge of subscription “{description}”"
    assert middle.details == ["Charge of 2030-01-02 skipped"]
    assert oldest.details == ["old0@example.com → new0@example.com"]
    assert newest.at > middle.at > oldest.at
    assert not any("old1" in d or "new1" in d for e in page.history for d in e.details)
    texts = " ".join(" ".join(e.details) for e in page.history)
    assert "old10@" not in texts and "old11@" not in texts  # Köln's rows never appear


def test_is_the_history_limited_to_the_latest_30_with_a_count(db: Session) -> None:
    jordan = account(db, JORDAN)
    before = account_page(db, user(db, US_ADMIN), jordan.id, as_of=TODAY).history_count
    add_events(db, jordan, 35, actor=user(db, US_SALES))

    page = account_page(db, user(db, US_ADMIN), jordan.id, as_of=TODAY)

    assert len(page.history) == HISTORY_LIMIT
    assert page.history_count == before + 35


def test_does_another_partner_get_not_found(db: Session) -> None:
    with pytest.raises(NotFound):
        account_page(db, user(db, DE_ADMIN), account(db, JORDAN).id, as_of=TODAY)


def test_does_the_statement_count_not_grow_with_payments_and_events(
    db: Session, engine: Engine
) -> None:
    jordan = account(db, JORDAN)
    admin = user(db, US_ADMIN)

    def statements() -> int:
        seen: list[str] = []

        def count(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
            seen.append(statement)

        db.expunge_all()  # nothing cached from the set-up
        event.listen(engine, "before_cursor_execute", count)
        try:
            page = account_page(db, admin, jordan.id, as_of=TODAY)
            assert page.payments and page.history
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(seen)

    add_payments(db, jordan, 2)
    add_events(db, jordan, 2, actor=admin)
    few = statements()
    add_payments(db, jordan, 18, start=2)
    add_events(db, jordan, 18, actor=admin, start=2)
    many = statements()

    assert few == many
    assert many <= 8
