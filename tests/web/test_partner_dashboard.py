"""The partner dashboard and the CSV exports in the browser: figures, accessible SVG
charts, date ranges, tenant isolation and who may open them."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, select
from werkzeug.test import TestResponse

from app.clock import local_today
from app.domain.money import format_money
from app.models import CustomerAccount, Partner, User
from app.services.dashboard import dashboard
from tests.services.dashboard_helpers import make_invoice, make_payment
from tests.web.helpers import sign_in

US_ADMIN = "admin@us-partner.example"
US_SALES = "sales@us-partner.example"
DE_ADMIN = "admin@de-partner.example"
JORDAN = "customer@example.com"
OPERATOR = "operator@example.com"
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    """A session on the demo database; the ``app`` fixture empties it afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _partner(db: Session, slug: str) -> Partner:
    return db.exec(select(Partner).where(Partner.slug == slug)).one()


def _account(db: Session, email: str) -> CustomerAccount:
    return db.exec(select(CustomerAccount).where(CustomerAccount.email == email)).one()


def _user(db: Session, email: str) -> User:
    return db.exec(select(User).where(User.email == email)).one()


def _signed_in(client: FlaskClient, email: str) -> FlaskClient:
    assert sign_in(client, email).status_code in (302, 303)
    return client


def _download(client: FlaskClient, path: str) -> tuple[TestResponse, list[list[str]]]:
    """Fetch a streamed CSV and close the response as a WSGI server does; the export's
    read transaction must end then (no connection left checked out of the pool)."""
    pool = client.application.extensions["portico"].engine.pool
    in_use = pool.checkedout()
    with client.get(path) as response:
        assert response.status_code == 200 and response.is_streamed
        assert "Content-Length" not in response.headers
        body = response.get_data()
        assert body.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
        rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert pool.checkedout() == in_use
    return response, rows


# --- the dashboard --------------------------------------------------------------------


def test_does_the_dashboard_show_every_figure_and_three_accessible_charts(
    db: Session, client: FlaskClient
) -> None:
    page = _signed_in(client, US_ADMIN).get("/partner/dashboard")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    partner = _partner(db, "us-partner")
    figures = dashboard(db, _user(db, US_ADMIN), as_of=local_today(partner.timezone))
    for label, amount in (
        ("Collected this month", figures.collected_this_month),
        ("Outstanding", figures.outstanding),
        ("Monthly recurring revenue", figures.mrr),
        ("Charges expected in the next 30 days", figures.expected_amount),
    ):
        assert re.search(rf"<dt>{label}</dt><dd>{re.escape(format_money(amount, 'USD'))}", html)
    assert figures.overdue_count >= 2 and figures.mrr > 0 and figures.expected_count > 0
    svgs = re.findall(r"<svg[^>]*>.*?</svg>", html, flags=re.S)
    assert len(svgs) == 3
    for svg in svgs:
        assert 'role="img"' in svg and "<title id=" in svg and "<desc id=" in svg
        labelled = re.search(r'aria-labelledby="([^"]+)"', svg)
        assert labelled and all(f'id="{i}"' in svg for i in labelled.group(1).split())
    desc = re.search(r"<desc[^>]*>(.*?)</desc>", svgs[0], flags=re.S)
    assert desc and "31–60 days" in desc.group(1)
    for bucket in figures.overdue:  # the numbers are also in a table
        assert re.search(
            rf"<th scope=\"row\">{re.escape(bucket.label)}</th>"
            rf"<td class=\"num\">{bucket.count}</td>"
            rf"<td class=\"num\">{re.escape(format_money(bucket.amount, 'USD'))}</td>",
            html,
        )
    assert re.search(r'<nav aria-label="Main">\s*<a href="/partner/dashboard" aria-current', html)


def test_does_a_sales_user_see_the_dashboard(db: Session, client: FlaskClient) -> None:
    page = _signed_in(client, US_SALES).get("/partner/dashboard")
    assert page.status_code == 200
    assert "Monthly recurring revenue" in page.get_data(as_text=True)


@pytest.mark.parametrize("email", [JORDAN, OPERATOR])
@pytest.mark.parametrize(
    "path",
    [
        "/partner/dashboard",
        "/partner/exports/invoices.csv?from=2020-01-01&to=2030-12-31",
        "/partner/exports/payments.csv?from=2020-01-01&to=2030-12-31",
    ],
)
def test_do_customers_and_operators_get_not_found(
    db: Session, client: FlaskClient, email: str, path: str
) -> None:
    assert _signed_in(client, email).get(path).status_code == 404


@pytest.mark.parametrize(
    "path", ["/partner/dashboard", "/partner/exports/invoices.csv?from=2020-01-01&to=2030-12-31"]
)
def test_is_an_anonymous_visitor_sent_to_sign_in(
    db: Session, client: FlaskClient, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_does_another_partners_data_never_reach_the_dashboard(
    db: Session, client: FlaskClient
) -> None:
    _signed_in(client, DE_ADMIN)

    def figures_section() -> str:
        html = client.get("/partner/dashboard").get_data(as_text=True)
        return html[html.index('<dl class="facts kpis">') : html.index('id="export-heading"')]

    before = figures_section()
    jordan = _account(db, JORDAN)
    today = local_today("Europe/Berlin")
    make_invoice(db, jordan, status="overdue", total=98765, due=today - timedelta(days=45))
    make_payment(db, jordan, kind="charge", amount=43210, received_on=today)
    assert figures_section() == before
    assert "$" not in before and "€" in before


# --- CSV exports ----------------------------------------------------------------------


def test_does_the_invoice_export_list_the_range_in_decimal_units(
    db: Session, client: FlaskClient
) -> None:
    jordan = _account(db, JORDAN)
    start, end = date(2024, 2, 1), date(2024, 2, 29)
    make_invoice(db, jordan, status="created", total=1, due=start, issue=start - timedelta(1))
    first = make_invoice(db, jordan, status="paid", total=123450, paid=123450, due=end,
                         issue=start, number="=HYPERLINK(1)")  # fmt: skip
    last = make_invoice(db, jordan, status="overdue", total=5, paid=0, issue=end, due=end)
    yen = make_invoice(db, jordan, status="created", total=1235, currency="JPY", issue=end,
                       due=end)  # fmt: skip
    make_invoice(db, jordan, status="created", total=2, due=end + timedelta(1))
    chess = db.exec(
        select(CustomerAccount).where(CustomerAccount.name == "Bonner Schachclub")
    ).one()
    make_invoice(db, chess, status="created", total=777, issue=start, due=end)

    response, rows = _download(
        _signed_in(client, US_ADMIN), "/partner/exports/invoices.csv?from=2024-02-01&to=2024-02-29"
    )
    assert response.mimetype == "text/csv"
    assert (
        'filename="invoices-2024-02-01-to-2024-02-29.csv"'
        in response.headers["Content-Disposition"]
    )
    assert rows[0] == [
        "number", "status", "issue_date", "due_date", "customer", "customer_email",
        "currency", "subtotal", "tax", "total", "amount_paid", "balance",
    ]  # fmt: skip
    assert rows[1:] == [
        ["'=HYPERLINK(1)", "paid", "2024-02-01", "2024-02-29", "Jordan Rivera", JORDAN, "USD",
         "1234.50", "0.00", "1234.50", "1234.50", "0.00"],
        [last.number, "overdue", "2024-02-29", "2024-02-29", "Jordan Rivera", JORDAN, "USD",
         "0.05", "0.00", "0.05", "0.00", "0.05"],
        [yen.number, "created", "2024-02-29", "2024-02-29", "Jordan Rivera", JORDAN, "JPY",
         "1235", "0", "1235", "0", "1235"],
    ]  # fmt: skip
    assert first.number == "=HYPERLINK(1)"


def test_does_the_payment_export_sign_refunds_and_keep_to_the_range(
    db: Session, client: FlaskClient
) -> None:
    jordan = _account(db, JORDAN)
    day = date(2024, 5, 10)
    charge = make_payment(db, jordan, kind="charge", amount=5000, received_on=day)
    refund = make_payment(db, jordan, kind="refund", amount=1250, received_on=day,
                          method="manual", reference="Check #7")  # fmt: skip
    declined = make_payment(db, jordan, kind="charge", amount=999, status="declined",
                            received_on=day + timedelta(days=2))  # fmt: skip
    make_payment(db, jordan, kind="charge", amount=1, received_on=day - timedelta(days=1))
    make_payment(db, jordan, kind="charge", amount=2, received_on=day + timedelta(days=3))
    chess = db.exec(
        select(CustomerAccount).where(CustomerAccount.name == "Bonner Schachclub")
    ).one()
    make_payment(db, chess, kind="charge", amount=3, received_on=day)

    response, rows = _download(
        _signed_in(client, US_ADMIN), "/partner/exports/payments.csv?from=2024-05-10&to=2024-05-12"
    )
    assert rows[0][:3] == ["id", "date", "customer"] and "amount" in rows[0]
    amount = rows[0].index("amount")
    by_id = {row[0]: row for row in rows[1:]}
    assert set(by_id) == {str(charge.id), str(refund.id), str(declined.id)}
    assert by_id[str(charge.id)][amount] == "50.00"
    assert by_id[str(refund.id)][amount] == "-12.50"
    assert by_id[str(refund.id)][rows[0].index("reference")] == "Check #7"
    assert by_id[str(declined.id)][rows[0].index("status")] == "declined"
    assert by_id[str(declined.id)][1] == "2024-05-12"


def test_does_another_partner_export_only_its_own_rows(db: Session, client: FlaskClient) -> None:
    _, rows = _download(
        _signed_in(client, DE_ADMIN), "/partner/exports/invoices.csv?from=2000-01-01&to=2100-01-01"
    )
    rows = rows[1:]
    assert rows and {row[6] for row in rows} == {"EUR"}
    de_names = {"Kölner Chorverein", "Bonner Schachclub"}
    assert {row[4] for row in rows} <= de_names
    _, payments = _download(client, "/partner/exports/payments.csv?from=2000-01-01&to=2100-01-01")
    assert len(payments) > 1
    assert all(row[2] in de_names | {""} for row in payments[1:])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2024-13-01&to=2024-02-01", "from"),
        ("from=&to=2024-02-01", "from"),
        ("from=2024-02-01&to=tomorrow", "to"),
        ("from=2024-02-02&to=2024-02-01", "to"),
        ("to=2024-02-01", "from"),
    ],
)
def test_is_a_bad_date_a_400_naming_the_field(
    db: Session, client: FlaskClient, query: str, field: str
) -> None:
    _signed_in(client, US_ADMIN)
    for kind in ("invoices", "payments"):
        response = client.get(f"/partner/exports/{kind}.csv?{query}")
        assert response.status_code == 400
        assert response.mimetype == "text/plain"
        assert response.get_data(as_text=True).startswith(f"{field}: ")


def test_does_the_form_show_a_bad_date_next_to_its_field(db: Session, client: FlaskClient) -> None:
    _signed_in(client, US_ADMIN)
    response = client.get("/partner/exports/payments.csv?from=2024-02-01&to=nope", headers=HTML)
    assert response.status_code == 400 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert 'id="export-to-error">Enter the end date as YYYY-MM-DD' in html
    assert 'aria-describedby="export-to-error"' in html
    assert 'name="from" type="date" value="2024-02-01"' in html
    assert "export-from-error" not in html


def test_does_the_dashboard_offer_the_export_form(db: Session, client: FlaskClient) -> None:
    html = _signed_in(client, US_ADMIN).get("/partner/dashboard").get_data(as_text=True)
    today = local_today("America/New_York")
    assert f'name="from" type="date" value="{today.replace(day=1).isoformat()}"' in html
    assert 'formaction="/partner/exports/invoices.csv">Export invoices' in html
    assert 'formaction="/partner/exports/payments.csv">Export payments' in html
