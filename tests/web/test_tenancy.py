"""Tenant isolation on the demo data: partners see their customers, customers themselves.

``tests/security/test_tenant_matrix.py`` supersedes the foreign-id checks here for every
route and actor; the examples below stay as readable cases on the demo data.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.domain.errors import NotFound
from app.models import CustomerAccount, User
from app.services.directory import account_overview
from app.services.tenancy import customer_for
from tests.web.helpers import sign_in

US_CUSTOMER = "Jordan Rivera"
DE_CUSTOMER = "Kölner Chorverein"


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    """A session on the app's database; the ``app`` fixture empties it afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _account(session: Session, name: str) -> CustomerAccount:
    return session.exec(select(CustomerAccount).where(CustomerAccount.name == name)).one()


def _user(session: Session, email: str) -> User:
    return session.exec(select(User).where(User.email == email)).one()


# -- partner users -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "own", "foreign"),
    [
        ("admin@us-partner.example", US_CUSTOMER, DE_CUSTOMER),
        ("admin@de-partner.example", DE_CUSTOMER, US_CUSTOMER),
    ],
    ids=["admin-us", "admin-de"],
)
def test_can_a_partner_user_open_another_partners_customer(
    client: FlaskClient, demo: Flask, db: Session, email: str, own: str, foreign: str
) -> None:
    sign_in(client, email)
    own_page = client.get(f"/partner/customers/{_account(db, own).id}")
    assert own_page.status_code == 200
    assert own in own_page.get_data(as_text=True)

    response = client.get(f"/partner/customers/{_account(db, foreign).id}")

    assert response.status_code == 404
    assert foreign not in response.get_data(as_text=True)


def test_can_a_sales_user_open_another_partners_customer(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    sign_in(client, "sales@us-partner.example")
    foreign = _account(db, DE_CUSTOMER)

    response = client.get(f"/partner/customers/{foreign.id}")
    missing = client.get("/partner/customers/999999")

    assert response.status_code == missing.status_code == 404  # foreign looks like missing
    assert foreign.name not in response.get_data(as_text=True)
    assert foreign.email not in response.get_data(as_text=True)


def test_does_the_service_refuse_a_partner_user_another_partners_account(
    demo: Flask, db: Session
) -> None:
    admin = _user(db, "admin@us-partner.example")
    foreign = _account(db, DE_CUSTOMER)

    with pytest.raises(NotFound):
        account_overview(db, admin, foreign.id)
    with pytest.raises(NotFound):
        customer_for(db, admin, foreign.id)
    assert account_overview(db, admin, _account(db, US_CUSTOMER).id)


# -- customers -------------------------------------------------------------------------------


def test_can_a_customer_open_another_customers_account(demo: Flask, db: Session) -> None:
    """The portal has no customer-id route yet, so the service answers for it."""
    customer = _user(db, "customer@example.com")

    for other in ("Maple Street Makers", DE_CUSTOMER):  # same partner, another partner
        other_id = _account(db, other).id
        assert other_id is not None
        with pytest.raises(NotFound):
            account_overview(db, customer, other_id)
        with pytest.raises(NotFound):
            customer_for(db, customer, other_id)

    assert account_overview(db, customer).account.name == US_CUSTOMER
    assert customer_for(db, customer, customer.customer_account_id).name == US_CUSTOMER


@pytest.mark.parametrize(
    ("email", "own", "other"),
    [
        ("customer@example.com", US_CUSTOMER, "Maple Street Makers"),
        ("makers@example.com", "Maple Street Makers", US_CUSTOMER),
    ],
)
def test_does_the_portal_show_only_the_customers_own_account(
    client: FlaskClient, demo: Flask, email: str, own: str, other: str
) -> None:
    sign_in(client, email)

    page = client.get("/portal/").get_data(as_text=True)

    assert own in page
    assert other not in page


# -- customer search -----------------------------------------------------------------------


SEARCHES = {
    # user: [(query, names it finds, names it must not show)]
    "admin@us-partner.example": [
        ("jordan", {US_CUSTOMER}, {"Maple Street Makers"}),
        ("riverside-soccer", {"Riverside Youth Soccer"}, {US_CUSTOMER}),  # only in the email
        ("MAKERS", {"Maple Street Makers"}, {US_CUSTOMER}),
        ("koelner", set(), {DE_CUSTOMER}),  # another tenant's email
        ("chor", set(), {DE_CUSTOMER}),  # another tenant's name
    ],
    "sales@us-partner.example": [
        ("example", {US_CUSTOMER, "Riverside Youth Soccer"}, {DE_CUSTOMER, "Bonner Schachclub"}),
    ],
    "admin@de-partner.example": [
        ("koelner", {DE_CUSTOMER}, {"Bonner Schachclub"}),
        ("jordan", set(), {US_CUSTOMER}),
    ],
}


@pytest.mark.parametrize("email", list(SEARCHES))
def test_does_the_customer_search_find_by_name_or_email_within_the_tenant(
    client: FlaskClient, demo: Flask, email: str
) -> None:
    sign_in(client, email)

    for query, found, not_found in SEARCHES[email]:
        page = client.get("/partner/", query_string={"q": query}).get_data(as_text=True)

        for name in found:
            assert name in page, (query, name)
        for name in not_found:
            assert name not in page, (query, name)
        if not found:
            assert "No customers match." in page, query


@pytest.mark.parametrize("query", ["%", "_", "\\"])
def test_are_like_wildcards_in_a_search_matched_literally(
    client: FlaskClient, demo: Flask, query: str
) -> None:
    sign_in(client, "admin@us-partner.example")

    page = client.get("/partner/", query_string={"q": query}).get_data(as_text=True)

    assert "No customers match." in page
    assert "Jordan Rivera" not in page


def test_does_an_htmx_search_return_only_the_customer_table(
    client: FlaskClient, demo: Flask
) -> None:
    sign_in(client, "admin@us-partner.example")

    full = client.get("/partner/?q=jordan")
    block = client.get("/partner/?q=jordan", headers={"HX-Request": "true"})

    assert "<html" in full.get_data(as_text=True)
    assert block.status_code == 200
    body = block.get_data(as_text=True)
    assert "<html" not in body
    assert 'role="search"' not in body  # the search form is outside the block
    assert body.lstrip().startswith('<div id="customer-table">')
    assert US_CUSTOMER in body
    assert "Maple Street Makers" not in body
    assert "HX-Request" in block.headers.get("Vary", "")
    assert "HX-Request" in full.headers.get("Vary", "")  # caches keep the two apart


def test_does_an_anonymous_htmx_search_get_refused(client: FlaskClient, demo: Flask) -> None:
    response = client.get("/partner/?q=jordan", headers={"HX-Request": "true"})

    assert response.status_code in (302, 401, 404)
    if response.status_code == 302:
        assert response.headers["Location"].startswith("/login")
    body = response.get_data(as_text=True)
    assert US_CUSTOMER not in body
    assert "customer-table" not in body


def test_can_a_signed_in_non_partner_get_the_customer_table_block(app: Flask, demo: Flask) -> None:
    for email in ("customer@example.com", "operator@example.com"):
        client = app.test_client()
        sign_in(client, email)

        response = client.get("/partner/?q=", headers={"HX-Request": "true"})

        assert response.status_code == 404, email
        assert US_CUSTOMER not in response.get_data(as_text=True)
