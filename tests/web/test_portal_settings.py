"""The "Customer portal" section of the partner settings: admins save what customers may
do and which recurring products the catalog offers; sales users are refused with the
reason; every post needs its CSRF token; other partners' products are not found."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.models import AuditEvent, Partner, Product
from tests.web.helpers import csrf_token, sign_in

US_ADMIN = "admin@us-partner.example"
US_SALES = "sales@us-partner.example"
JORDAN = "customer@example.com"


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _partner(db: Session) -> Partner:
    db.rollback()
    return db.exec(select(Partner).where(Partner.slug == "us-partner")).one()


def _product(db: Session, name: str) -> Product:
    db.rollback()
    return db.exec(select(Product).where(Product.name == name)).one()


def _admin(client: FlaskClient) -> str:
    assert sign_in(client, US_ADMIN).status_code == 303
    return csrf_token(client, "/partner/settings")


def test_does_the_settings_page_show_the_customer_portal_section(
    client: FlaskClient, db: Session
) -> None:
    _admin(client)

    page = client.get("/partner/settings").get_data(as_text=True)

    assert "Customer portal" in page
    assert "Customers may cancel subscriptions at the end of the current period" in page
    assert "Customers may schedule invoice payments after the due date" in page
    assert "Community membership" in page and "Youth programs fund" in page
    assert "Customer chooses the amount" in page
    assert "Workshop seat" not in page.split('id="portal-heading"')[1].split("</section>")[0]
    assert "Mitgliedschaft" not in page


def test_can_an_admin_save_the_portal_settings(client: FlaskClient, db: Session) -> None:
    token = _admin(client)
    membership = _product(db, "Community membership")
    supporter = _product(db, "Annual supporter plan")
    fund = _product(db, "Youth programs fund")

    response = client.post(
        "/partner/settings/portal",
        data={
            "csrf_token": token,
            "portal_schedule_after_due": "on",  # and cancel no longer allowed
            "offered": [str(membership.id), str(fund.id)],
            "payer_sets_amount": [str(membership.id)],
        },
    )

    assert response.status_code == 303
    assert response.headers["Location"].endswith("/partner/settings#portal-heading")
    partner = _partner(db)
    assert (partner.portal_cancel_allowed, partner.portal_schedule_after_due) == (False, True)
    membership, supporter, fund = (
        _product(db, "Community membership"),
        _product(db, "Annual supporter plan"),
        _product(db, "Youth programs fund"),
    )
    assert (membership.self_service, membership.payer_sets_amount) == (True, True)
    assert (supporter.self_service, supporter.payer_sets_amount) == (False, False)
    assert (fund.self_service, fund.payer_sets_amount) == (True, False)
    event = db.exec(
        select(AuditEvent).where(AuditEvent.action == "partner.portal_settings_updated")
    ).one()
    assert event.detail["portal_schedule_after_due"] is True
    assert "Customer portal settings saved." in client.get("/partner/settings").get_data(
        as_text=True
    )


def test_does_the_catalog_follow_the_saved_settings(client: FlaskClient, db: Session) -> None:
    token = _admin(client)
    fund = _product(db, "Youth programs fund")
    client.post("/partner/settings/portal", data={"csrf_token": token, "offered": [str(fund.id)]})
    client.post("/logout", data={"csrf_token": token})

    assert sign_in(client, JORDAN).status_code == 303
    catalog = client.get("/portal/catalog").get_data(as_text=True)

    assert "Youth programs fund" in catalog and "Community membership" not in catalog


def test_is_a_sales_user_refused_with_the_reason(client: FlaskClient, db: Session) -> None:
    assert sign_in(client, US_SALES).status_code == 303
    token = csrf_token(client, "/partner/")

    response = client.post(
        "/partner/settings/portal", data={"csrf_token": token, "portal_cancel_allowed": "on"}
    )

    assert response.status_code == 403
    assert "Only partner admins can change the customer portal settings" in response.get_data(
        as_text=True
    )
    assert _partner(db).portal_schedule_after_due is False


def test_is_a_post_without_its_csrf_token_refused(client: FlaskClient, db: Session) -> None:
    _admin(client)

    response = client.post("/partner/settings/portal", data={"portal_schedule_after_due": "on"})

    assert response.status_code == 400
    assert _partner(db).portal_schedule_after_due is False


def test_is_another_partners_product_not_found_and_nothing_saved(
    client: FlaskClient, db: Session
) -> None:
    token = _admin(client)
    german = _product(db, "Mitgliedschaft")

    response = client.post(
        "/partner/settings/portal",
        data={"csrf_token": token, "portal_schedule_after_due": "on", "offered": [str(german.id)]},
    )

    assert response.status_code == 404
    assert _partner(db).portal_schedule_after_due is False
    assert _product(db, "Mitgliedschaft").self_service is True  # untouched


def test_is_a_one_time_product_refused_beside_the_list(client: FlaskClient, db: Session) -> None:
    token = _admin(client)
    seat = _product(db, "Workshop seat")

    response = client.post(
        "/partner/settings/portal",
        data={"csrf_token": token, "portal_schedule_after_due": "on", "offered": [str(seat.id)]},
    )

    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="portal-products-error"' in body and "Only active recurring products" in body
    assert re.search(r'name="portal_schedule_after_due"[^>]*checked', body)  # kept as typed
    assert _partner(db).portal_schedule_after_due is False
    assert _product(db, "Workshop seat").self_service is False
