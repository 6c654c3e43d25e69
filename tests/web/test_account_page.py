"""The partner's customer account page: profile, cards, payments, orders, history."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import date

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event
from sqlmodel import Session

from app.clock import local_today
from app.domain.cards import last_valid_day
from app.models import Partner
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
    user,
)
from tests.web.helpers import sign_in


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _months_ahead(today: date, months: int) -> tuple[int, int]:
    index = today.year * 12 + today.month - 1 + months
    return index % 12 + 1, index // 12


def _page(client: FlaskClient, account_id: int) -> str:
    response = client.get(f"/partner/customers/{account_id}")
    assert response.status_code == 200
    return html.unescape(response.get_data(as_text=True))


def test_does_the_page_show_profile_cards_payments_orders_and_history(
    client: FlaskClient, db: Session
) -> None:
    jordan = account(db, JORDAN)
    today = local_today(db.get(Partner, jordan.partner_id).timezone)  # type: ignore[union-attr]
    soon_month, soon_year = today.month, today.year  # ends this month: within 60 days
    gone_month, gone_year = _months_ahead(today, -1)  # ended last month
    add_card(db, jordan, last4="1111", month=soon_month, year=soon_year)
    add_card(db, jordan, last4="2222", month=gone_month, year=gone_year)
    add_card(db, jordan, last4="3333", month=today.month, year=today.year + 3)
    add_payments(db, jordan, 2)
    add_events(db, jordan, 2, actor=user(db, US_SALES))
    sign_in(client, US_ADMIN)

    page = _page(client, jordan.id)

    for label in ("Name", "Email", "Billing email", "Phone", "Status", "Currency", "Balance due"):
        assert f"<dt>{label}</dt>" in page
    soon = last_valid_day(soon_month, soon_year)
    days = (soon - today).days
    assert "•••• 1111" in page
    when = "today" if days == 0 else f"in {days} day{'s' if days != 1 else ''}"
    assert f"Warning: expires {when} ({soon:%b} {soon.day}, {soon.year})" in page
    gone = last_valid_day(gone_month, gone_year)
    assert f"Warning: expired on {gone:%b} {gone.day}, {gone.year}" in page
    line_3333 = page[page.index("•••• 3333") :].split("</li>")[0]
    assert "Warning" not in line_3333
    assert '<h2 id="payments-heading">Payments</h2>' in page
    assert "$10.01" in page and "Visa •••• 4242" in page
    assert "No orders yet." in page
    assert "Changed the billing-on-behalf email" in page
    assert "old0@example.com → new0@example.com" in page


def test_does_a_partner_never_see_another_partners_payments_or_history(
    client: FlaskClient, db: Session
) -> None:
    jordan, koeln = account(db, JORDAN), account(db, KOELN)
    add_events(db, koeln, 2, actor=user(db, DE_ADMIN), start=50)
    add_payments(db, koeln, 1, start=77)  # 10.77 EUR
    sign_in(client, US_ADMIN)

    page = _page(client, jordan.id)

    assert "old50@example.com" not in page and "10,77" not in page and "10.77" not in page
    assert client.get(f"/partner/customers/{koeln.id}").status_code == 404


def test_does_the_page_load_in_a_constant_number_of_statements(
    client: FlaskClient, db: Session, engine: Engine
) -> None:
    jordan = account(db, JORDAN)
    admin = user(db, US_ADMIN)
    sign_in(client, US_ADMIN)

    def statements() -> int:
        seen: list[str] = []

        def count(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
            seen.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            assert client.get(f"/partner/customers/{jordan.id}").status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(seen)

    add_payments(db, jordan, 2)
    add_events(db, jordan, 2, actor=admin)
    few = statements()
    add_payments(db, jordan, 18, start=2)
    add_events(db, jordan, 18, actor=admin, start=2)
    many = statements()

    assert few == many, (few, many)
