"""The billing-on-behalf wizard in the browser (Flask test client): steps, Back, reload,
validation next to the fields, the information section and its inline email edit."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.clock import local_today
from app.models import CustomerAccount, Subscription
from app.services.on_behalf import earliest_start
from tests.web.helpers import csrf_token, sign_in

US_ADMIN = "admin@us-partner.example"
DE_ADMIN = "admin@de-partner.example"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _jordan(db: Session) -> CustomerAccount:
    db.rollback()
    return db.exec(
        select(CustomerAccount).where(CustomerAccount.email == "customer@example.com")
    ).one()


def _start() -> date:
    return earliest_start(local_today("America/New_York"))


def _url(account: CustomerAccount, rest: str = "") -> str:
    return f"/partner/customers/{account.id}/on-behalf{rest}"


def _post(client: FlaskClient, path: str, data: dict, **kw) -> object:  # noqa: ANN003
    return client.post(path, data={"csrf_token": csrf_token(client, path), **data}, **kw)


def test_can_a_partner_admin_run_the_wizard_with_back_and_reload(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_ADMIN)
    account = _jordan(db)
    page = client.get(f"/partner/customers/{account.id}").get_data(as_text=True)
    assert "Activate billing on behalf" in page

    start = _start()
    first = _post(client, _url(account), {"start_date": start.isoformat(),
                                          "billing_email": "ap@rivera.example"})  # fmt: skip
    assert first.status_code == 303 and first.headers["Location"].endswith("/subscriptions")

    subs = db.exec(select(Subscription).where(Subscription.customer_account_id == account.id)).all()
    chosen = [subs[0].id, subs[1].id]
    choose = _post(client, _url(account, "/subscriptions"),
                   {"wants_changes": "yes", "subscription": chosen})  # fmt: skip
    assert choose.headers["Location"].endswith("/subscriptions/1")

    later = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    _post(client, _url(account, "/subscriptions/1"),
          {"start_date": later.isoformat(), "price": "31.50", "action": "next"})  # fmt: skip
    # Back from the second step shows the first step's values, kept.
    back = _post(client, _url(account, "/subscriptions/2"),
                 {"start_date": start.isoformat(), "price": "12", "action": "back"})  # fmt: skip
    assert back.headers["Location"].endswith("/subscriptions/1")
    step1 = client.get(_url(account, "/subscriptions/1")).get_data(as_text=True)
    assert later.isoformat() in step1 and 'value="31.50"' in step1
    # A reload of step 2 mid-way continues with what was saved there.
    _post(client, _url(account, "/subscriptions/1"),
          {"start_date": later.isoformat(), "price": "31.50", "action": "next"})  # fmt: skip
    reloaded = client.get(_url(account, "/subscriptions/2")).get_data(as_text=True)
    assert 'value="12"' in reloaded and "subscription 2 of 2" in reloaded
    done = _post(client, _url(account, "/subscriptions/2"),
                 {"start_date": start.isoformat(), "price": "12", "action": "next"})  # fmt: skip
    assert done.headers["Location"].endswith("/review")

    review = client.get(_url(account, "/review")).get_data(as_text=True)
    assert "$31.50" in review and "$12.00" in review and "Changed" in review
    version = re.search(r'name="version" value="(\d+)"', review)
    assert version
    confirmed = _post(client, _url(account, "/review"), {"version": version.group(1)})
    assert confirmed.headers["Location"].endswith("/done")
    assert "Billing on behalf activated" in client.get(_url(account, "/done")).get_data(
        as_text=True
    )

    page = client.get(f"/partner/customers/{account.id}").get_data(as_text=True)
    assert "Billing on Behalf Information" in page and "ap@rivera.example" in page
    assert "Activate billing on behalf" not in page
    db.rollback()
    moved = db.get(Subscription, chosen[0], populate_existing=True)
    assert moved is not None and moved.manual_amount == 3150 and moved.start_date == later


def test_are_step_errors_shown_next_to_their_fields(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_ADMIN)
    account = _jordan(db)
    bad = _post(client, _url(account), {"start_date": "2020-01-01", "billing_email": "nope"})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422
    assert 'id="start_date-error"' in html and "or later" in html
    assert 'id="billing_email-error"' in html and 'aria-invalid="true"' in html
    _post(
        client, _url(account), {"start_date": _start().isoformat(), "billing_email": "a@b.example"}
    )
    none = _post(client, _url(account, "/subscriptions"), {"wants_changes": "yes"})
    assert none.status_code == 422
    assert "Choose at least one subscription to change." in none.get_data(as_text=True)


def test_does_the_inline_email_edit_show_errors_and_save(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_ADMIN)
    account = _jordan(db)
    _post(
        client, _url(account), {"start_date": _start().isoformat(), "billing_email": "a@b.example"}
    )
    _post(client, _url(account, "/subscriptions"), {"wants_changes": "no"})
    review = client.get(_url(account, "/review")).get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', review)
    assert version
    _post(client, _url(account, "/review"), {"version": version.group(1)})

    form = client.get(_url(account, "/email?edit=1"), headers=HTMX).get_data(as_text=True)
    assert "<form" in form and "Save" in form and "Cancel" in form and "<html" not in form
    token = csrf_token(client, f"/partner/customers/{account.id}")
    bad = client.post(_url(account, "/email"), headers={**HTMX, "X-CSRFToken": token},
                      data={"billing_email": "not-an-email"})  # fmt: skip
    assert bad.status_code == 422 and "Enter a billing email" in bad.get_data(as_text=True)
    assert _jordan(db).on_behalf_email == "a@b.example"  # nothing changed
    good = client.post(_url(account, "/email"), headers={**HTMX, "X-CSRFToken": token},
                       data={"billing_email": "billing@rivera.example"})  # fmt: skip
    assert good.status_code == 200 and "billing@rivera.example" in good.get_data(as_text=True)
    assert _jordan(db).on_behalf_email == "billing@rivera.example"
    no_csrf = client.post(_url(account, "/email"), headers=HTMX, data={"billing_email": "x@y.z"})
    assert no_csrf.status_code == 400


def test_is_the_wizard_absent_and_explained_outside_eligible_countries(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, DE_ADMIN)
    de_account = db.exec(select(CustomerAccount).where(CustomerAccount.currency == "EUR")).first()
    assert de_account is not None
    page = client.get(f"/partner/customers/{de_account.id}").get_data(as_text=True)
    assert "Activate billing on behalf" not in page
    refused = client.get(_url(de_account))
    assert refused.status_code == 409
    assert "available to partners in US only" in refused.get_data(as_text=True)


def test_is_another_partners_wizard_not_found(client: FlaskClient, db: Session) -> None:
    sign_in(client, DE_ADMIN)
    assert client.get(_url(_jordan(db))).status_code == 404
    assert client.get(_url(_jordan(db), "/review")).status_code == 404
