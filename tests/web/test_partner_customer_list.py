"""The partner's customer list: search, filters in the query string, pagination, the
htmx table swap, tenant isolation and a statement count that does not grow with rows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event
from sqlmodel import Session

from app.clock import local_today
from app.models import Role, User
from app.services.auth import hash_password
from app.services.directory import CustomerFilters, list_customers
from tests.services.dashboard_helpers import (
    make_account,
    make_invoice,
    make_partner,
    make_subscription,
)
from tests.web.helpers import DEMO_PASSWORD, sign_in

HTMX = {"HX-Request": "true"}


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def harbor(db: Session):  # noqa: ANN201
    """A partner with one admin who can sign in, and a rival partner with a customer."""
    partner, admin = make_partner(db, "harbor")
    admin.password_hash = hash_password(DEMO_PASSWORD)
    db.add(admin)
    db.commit()
    rival, _ = make_partner(db, "rival")
    make_account(db, rival, "Rival Overdue Club")
    return partner, admin


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


def _today() -> date:
    return local_today("America/New_York")


def _names(html: str) -> list[str]:
    return re.findall(r'<a href="/partner/customers/\d+">([^<]+)</a>', html)


def _people(db: Session, partner) -> dict[str, object]:  # noqa: ANN001
    today = _today()
    people = {
        "Alder Active": make_account(db, partner, "Alder Active"),
        "Birch Suspended": make_account(db, partner, "Birch Suspended", status="suspended"),
        "Cedar Closed": make_account(db, partner, "Cedar Closed", status="closed"),
        "Dogwood Behalf": make_account(
            db, partner, "Dogwood Behalf", on_behalf_start=today, on_behalf_email="b@x.example"
        ),
        "Elm Late": make_account(db, partner, "Elm Late", email="treasurer@elm.example"),
        "Fir Past Due": make_account(db, partner, "Fir Past Due"),
        "Gum Paid": make_account(db, partner, "Gum Paid"),
    }
    make_invoice(db, people["Elm Late"], status="overdue", total=500, due=today - timedelta(9))
    # Created and past its due date: overdue even before the sweep marks it.
    make_invoice(db, people["Fir Past Due"], status="created", total=500, due=today - timedelta(1))
    make_invoice(db, people["Alder Active"], status="created", total=500, due=today)
    make_invoice(
        db, people["Gum Paid"], status="paid", total=500, paid=500, due=today - timedelta(40)
    )
    return people


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["Alder Active", "Birch Suspended", "Cedar Closed", "Dogwood Behalf", "Elm Late",
              "Fir Past Due", "Gum Paid"]),
        ("status=active", ["Alder Active", "Dogwood Behalf", "Elm Late", "Fir Past Due",
                           "Gum Paid"]),
        ("status=suspended", ["Birch Suspended"]),
        ("status=closed", ["Cedar Closed"]),
        ("on_behalf=yes", ["Dogwood Behalf"]),
        ("on_behalf=no", ["Alder Active", "Birch Suspended", "Cedar Closed", "Elm Late",
                          "Fir Past Due", "Gum Paid"]),
        ("overdue=yes", ["Elm Late", "Fir Past Due"]),
        ("overdue=no", ["Alder Active", "Birch Suspended", "Cedar Closed", "Dogwood Behalf",
                        "Gum Paid"]),
        ("overdue=yes&q=treasurer@elm", ["Elm Late"]),
        ("q=ALDER", ["Alder Active"]),
        ("q=%25", []),  # a literal percent sign matches nothing, not everything
        ("status=active&on_behalf=no&overdue=no", ["Alder Active", "Gum Paid"]),
        ("status=bogus&overdue=maybe", ["Alder Active", "Birch Suspended", "Cedar Closed",
                                        "Dogwood Behalf", "Elm Late", "Fir Past Due",
                                        "Gum Paid"]),
    ],
)  # fmt: skip
def test_do_the_filters_pick_the_right_customers(
    db: Session,
    client: FlaskClient,
    harbor,
    query: str,
    expected: list[str],  # noqa: ANN001
) -> None:
    _people(db, harbor[0])
    sign_in(client, harbor[1].email)
    page = client.get(f"/partner/?{query}")
    assert page.status_code == 200
    assert _names(page.get_data(as_text=True)) == expected


def test_does_the_page_show_the_chosen_filters_and_flags(
    db: Session,
    client: FlaskClient,
    harbor,  # noqa: ANN001
) -> None:
    _people(db, harbor[0])
    sign_in(client, harbor[1].email)
    html = client.get("/partner/?status=active&overdue=yes").get_data(as_text=True)
    assert '<option value="active" selected>Active</option>' in html
    assert '<option value="yes" selected>Has an overdue invoice</option>' in html
    assert '<label for="filter-on_behalf">Billing on behalf</label>' in html
    assert html.count('<span class="status status-overdue">overdue</span>') == 2
    behalf = client.get("/partner/?on_behalf=yes").get_data(as_text=True)
    assert '<span class="tag">Billing on behalf</span>' in behalf


def test_does_htmx_get_only_the_table(db: Session, client: FlaskClient, harbor) -> None:  # noqa: ANN001
    _people(db, harbor[0])
    sign_in(client, harbor[1].email)
    response = client.get("/partner/?status=suspended", headers=HTMX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    assert html.lstrip().startswith('<div id="customer-table">') and "<html" not in html
    assert _names(html) == ["Birch Suspended"]


def test_does_pagination_keep_the_filters(db: Session, client: FlaskClient, harbor) -> None:  # noqa: ANN001
    partner = harbor[0]
    for i in range(30):
        make_account(db, partner, f"Member {i:02d}", status="suspended" if i % 2 else "active")
    sign_in(client, harbor[1].email)
    first = client.get("/partner/").get_data(as_text=True)
    assert len(_names(first)) == 25 and "Page 1 of 2" in first
    second = client.get("/partner/?page=2").get_data(as_text=True)
    assert _names(second) == [f"Member {i:02d}" for i in range(25, 30)]
    assert "Previous" in second and ">Next<" not in second
    suspended = client.get("/partner/?status=suspended").get_data(as_text=True)
    assert len(_names(suspended)) == 15 and "Page 1 of 1" not in suspended
    for i in range(30, 50):
        make_account(db, partner, f"Member {i:02d}", status="suspended")
    many = client.get("/partner/?status=suspended&q=member").get_data(as_text=True)
    assert "Page 1 of 2" in many
    assert 'href="/partner/?page=2&amp;q=member&amp;status=suspended"' in many
    assert 'hx-get="/partner/?page=2&amp;q=member&amp;status=suspended"' in many
    beyond = client.get("/partner/?status=suspended&q=member&page=99").get_data(as_text=True)
    assert "Page 2 of 2" in beyond and len(_names(beyond)) == 10


def test_is_another_partners_customer_never_listed(
    db: Session,
    client: FlaskClient,
    harbor,  # noqa: ANN001
) -> None:
    _people(db, harbor[0])
    sign_in(client, harbor[1].email)
    for query in ("", "q=rival", "overdue=no", "status=active"):
        assert "Rival" not in client.get(f"/partner/?{query}").get_data(as_text=True)


def _rich_customers(db: Session, partner, n: int) -> None:  # noqa: ANN001
    """Customers with invoices, an overdue one and schedules, so every column has data."""
    today = _today()
    for i in range(n):
        account = make_account(db, partner, f"Row {i:02d}")
        make_invoice(db, account, status="overdue", total=100 + i, due=today - timedelta(5))
        make_invoice(db, account, status="created", total=50, due=today + timedelta(5))
        make_subscription(db, account, frequency="monthly", amount=100, start=today)


def test_is_the_statement_count_the_same_for_5_and_25_rows(
    db: Session,
    client: FlaskClient,
    harbor,
    statements: list[str],  # noqa: ANN001
) -> None:
    _rich_customers(db, harbor[0], 30)
    sign_in(client, harbor[1].email)
    client.get("/partner/")  # warm up
    counts = {}
    for page, rows in ((1, 25), (2, 5)):
        statements.clear()
        html = client.get(f"/partner/?overdue=yes&page={page}").get_data(as_text=True)
        assert len(_names(html)) == rows
        counts[rows] = len(statements)
    assert counts[5] == counts[25], counts


def test_does_the_service_run_two_statements_per_page_whatever_its_size(
    db: Session,
    harbor,
    statements: list[str],  # noqa: ANN001
) -> None:
    _rich_customers(db, harbor[0], 30)
    user = db.get(User, harbor[1].id)
    assert user is not None and user.role == Role.PARTNER_ADMIN
    filters = CustomerFilters(search="row", overdue="yes", on_behalf="no", status="active")
    counts = {}
    for per_page in (5, 25):
        db.expire_all()
        db.get(User, user.id)
        statements.clear()
        result = list_customers(db, user, as_of=_today(), filters=filters, per_page=per_page)
        assert len(result.rows) == per_page and result.total == 30
        assert all(row.has_overdue and row.balance_due > 0 for row in result.rows)
        assert all(row.next_charge_date is not None for row in result.rows)
        counts[per_page] = len(statements)
    assert counts == {5: 2, 25: 2}
