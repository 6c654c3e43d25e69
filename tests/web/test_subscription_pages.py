"""Subscription pages in the browser: the partner's form and buttons, the customer's
"Retry now", and the operator's billing runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from app.clock import local_today, utcnow
from app.models import (
    BillingRun,
    CustomerAccount,
    Partner,
    Payment,
    PaymentMethod,
    RunStatus,
    Subscription,
)
from app.services.subscription_billing import charge_next_period
from tests.services.payer_helpers import card, sandbox
from tests.web.helpers import csrf_token, sign_in

US_ADMIN = "admin@us-partner.example"
US_SALES = "sales@us-partner.example"
DE_ADMIN = "admin@de-partner.example"
JORDAN = "customer@example.com"
OPERATOR = "operator@example.com"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    """A session on the demo database; the ``app`` fixture empties it afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _today() -> date:
    return local_today("America/New_York")  # the US demo partner's day, as the views use


def _account(db: Session, email: str = JORDAN) -> CustomerAccount:
    db.rollback()
    return db.exec(select(CustomerAccount).where(CustomerAccount.email == email)).one()


def _sub(db: Session, subscription_id: int) -> Subscription:
    db.rollback()
    sub = db.get(Subscription, subscription_id, populate_existing=True)
    assert sub is not None
    return sub


def _count(db: Session, model: type) -> int:
    db.rollback()
    return db.exec(select(func.count()).select_from(model)).one()


def _form(**changes: str) -> dict[str, str]:
    form = {
        "description": "Studio membership",
        "currency": "USD",
        "frequency": "monthly",
        "start_date": (_today() + timedelta(days=3)).isoformat(),
        "charge_day": "",
        "stop_rule": "unending",
        "end_date": "",
        "stop_count": "",
        "amount_mode": "fixed",
        "manual_amount": "25.00",
        "total_amount": "",
        "initial_amount": "",
    }
    return form | changes


def _signed_in(client: FlaskClient, email: str, page: str) -> str:
    """Sign in and return the CSRF token of ``page``."""
    assert sign_in(client, email).status_code == 303
    return csrf_token(client, page)


def _new_subscription(db: Session, start: date | None = None) -> Subscription:
    """A subscription of Jordan's, written directly so tests do not rely on the form."""
    account = _account(db)
    sub = Subscription(
        partner_id=account.partner_id,
        customer_account_id=account.id,
        description="Pottery class",
        frequency="monthly",
        currency="USD",
        manual_amount=4000,
        start_date=start or _today() + timedelta(days=10),
        next_charge_date=start or _today() + timedelta(days=10),
    )
    db.add(sub)
    db.commit()
    return sub


# -- the partner's form ----------------------------------------------------------------


def test_can_a_partner_user_create_a_subscription_from_the_customer_page(
    client: FlaskClient, db: Session
) -> None:
    account = _account(db)
    token = _signed_in(client, US_SALES, f"/partner/customers/{account.id}")
    page = client.get(f"/partner/customers/{account.id}").get_data(as_text=True)
    new_url = f"/partner/customers/{account.id}/subscriptions/new"
    assert f'href="{new_url}"' in page and "New subscription" in page

    form_page = client.get(new_url)
    assert form_page.status_code == 200
    assert '<label for="start_date">Start date</label>' in form_page.get_data(as_text=True)
    response = client.post(new_url, data=_form(csrf_token=token))

    assert response.status_code == 303
    sub = db.exec(select(Subscription).where(Subscription.description == "Studio membership")).one()
    assert response.headers["Location"].endswith(f"/partner/subscriptions/{sub.id}")
    assert (sub.customer_account_id, sub.manual_amount, sub.status) == (
        account.id,
        2500,
        "recurring",
    )
    customer_page = client.get(f"/partner/customers/{account.id}").get_data(as_text=True)
    assert f'href="/partner/subscriptions/{sub.id}"' in customer_page  # the row's Edit link


def test_does_the_htmx_preview_return_only_six_charges_and_write_nothing(
    client: FlaskClient, db: Session
) -> None:
    account = _account(db)
    token = _signed_in(client, US_ADMIN, f"/partner/customers/{account.id}")
    before = (_count(db, Subscription), _count(db, Payment))

    response = client.post(
        f"/partner/customers/{account.id}/subscriptions/preview",
        data=_form(start_date="2099-01-31", csrf_token=token),
        headers=HTMX,
    )

    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" not in body and body.lstrip().startswith('<div id="schedule-preview"')
    assert "HX-Request" in response.headers.get("Vary", "")
    dates = re.findall(r"<td>(\w{3} \d{1,2}, 2099)</td>", body)
    assert dates == [
        "Jan 31, 2099",
        "Feb 28, 2099",
        "Mar 31, 2099",
        "Apr 30, 2099",
        "May 31, 2099",
        "Jun 30, 2099",
    ]
    assert body.count("$25.00") == 6
    assert (_count(db, Subscription), _count(db, Payment)) == before


def test_does_the_preview_give_the_reason_of_an_invalid_combination(
    client: FlaskClient, db: Session
) -> None:
    account = _account(db)
    token = _signed_in(client, US_ADMIN, f"/partner/customers/{account.id}")

    response = client.post(
        f"/partner/customers/{account.id}/subscriptions/preview",
        data=_form(frequency="weekly", charge_day="15", csrf_token=token),
        headers=HTMX,
    )

    body = response.get_data(as_text=True)
    assert "A charge day can only be set for monthly or longer schedules." in body
    assert "<table" not in body


def test_does_the_form_ask_htmx_for_the_preview_as_the_fields_change(
    client: FlaskClient, db: Session
) -> None:
    account = _account(db)
    _signed_in(client, US_ADMIN, "/partner/")

    page = client.get(f"/partner/customers/{account.id}/subscriptions/new").get_data(as_text=True)

    assert f'hx-post="/partner/customers/{account.id}/subscriptions/preview"' in page
    assert 'hx-trigger="input changed delay:300ms, change"' in page
    assert 'hx-target="#schedule-preview"' in page


def test_are_errors_shown_next_to_their_fields_and_nothing_saved(
    client: FlaskClient, db: Session
) -> None:
    account = _account(db)
    token = _signed_in(client, US_ADMIN, f"/partner/customers/{account.id}")
    before = _count(db, Subscription)
    yesterday = (_today() - timedelta(days=1)).isoformat()

    response = client.post(
        f"/partner/customers/{account.id}/subscriptions/new",
        data=_form(start_date=yesterday, stop_rule="count", stop_count="0", csrf_token=token),
    )

    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'aria-describedby="start_date-hint start_date-error" aria-invalid="true"' in body
    assert (
        '<p class="error" id="start_date-error">The start date cannot be in the past.</p>' in body
    )
    assert 'id="stop_count-error"' in body
    assert _count(db, Subscription) == before


def test_does_editing_save_the_schedule(client: FlaskClient, db: Session) -> None:
    sub = _new_subscription(db)
    token = _signed_in(client, US_ADMIN, f"/partner/subscriptions/{sub.id}")

    response = client.post(
        f"/partner/subscriptions/{sub.id}",
        data=_form(description="Pottery class", manual_amount="45.00", csrf_token=token),
    )

    assert response.status_code == 303
    assert _sub(db, sub.id).manual_amount == 4500


# -- the schedule's buttons ------------------------------------------------------------


def test_does_charge_now_show_the_next_scheduled_date_and_offer_a_skip(
    client: FlaskClient, db: Session
) -> None:
    sub = _new_subscription(db)
    next_date = sub.next_charge_date
    assert next_date is not None
    token = _signed_in(client, US_ADMIN, f"/partner/subscriptions/{sub.id}")
    page = client.get(f"/partner/subscriptions/{sub.id}").get_data(as_text=True)
    assert 'name="sequence" value="1"' in page

    charged = client.post(
        f"/partner/subscriptions/{sub.id}/charge", data={"csrf_token": token, "sequence": "1"}
    )
    again = client.post(
        f"/partner/subscriptions/{sub.id}/charge", data={"csrf_token": token, "sequence": "1"}
    )

    assert charged.status_code == again.status_code == 303
    assert charged.headers["Location"] == again.headers["Location"]  # one charge, shown twice
    result = client.get(charged.headers["Location"]).get_data(as_text=True)
    assert "Manual charge of $40.00 approved." in result
    assert f"Next scheduled charge: {next_date:%b %-d, %Y}" in result
    assert "Skip the next scheduled charge" in result
    payment = db.exec(select(Payment).where(Payment.subscription_id == sub.id)).one()
    assert not payment.is_recurring and _sub(db, sub.id).next_charge_date == next_date

    skipped = client.post(f"/partner/subscriptions/{sub.id}/skip", data={"csrf_token": token})

    assert skipped.status_code == 303
    moved = _sub(db, sub.id).next_charge_date
    assert (
        moved is not None
        and (moved.year * 12 + moved.month) - (next_date.year * 12 + next_date.month) == 1
    )
    assert f"Next charge: {moved:%b %-d, %Y}" in client.get(skipped.headers["Location"]).get_data(
        as_text=True
    )


def test_can_a_partner_stop_resume_and_set_a_schedule_back_to_recurring(
    client: FlaskClient, db: Session
) -> None:
    sub = _new_subscription(db)
    token = _signed_in(client, US_ADMIN, f"/partner/subscriptions/{sub.id}")
    base = f"/partner/subscriptions/{sub.id}"

    assert client.post(f"{base}/stop", data={"csrf_token": token}).status_code == 303
    assert _sub(db, sub.id).status == "stopped"
    assert "Resume" in client.get(base).get_data(as_text=True)
    assert client.post(f"{base}/resume", data={"csrf_token": token}).status_code == 303
    assert _sub(db, sub.id).status == "recurring"

    refused = client.post(f"{base}/set-recurring", data={"csrf_token": token})  # not in error
    assert refused.status_code == 303
    assert "Only a subscription in error" in client.get(base).get_data(as_text=True)

    errored = _sub(db, sub.id)
    errored.status, errored.last_error = "error", "Your card was declined."
    db.add(errored)
    db.commit()
    page = client.get(base).get_data(as_text=True)
    assert "Set back to recurring" in page and "Your card was declined." in page
    assert client.post(f"{base}/set-recurring", data={"csrf_token": token}).status_code == 303
    assert _sub(db, sub.id).status == "recurring"


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("POST", ""),
        ("POST", "/preview"),
        ("POST", "/stop"),
        ("POST", "/charge"),
        ("POST", "/skip"),
    ],
)
def test_can_a_german_admin_reach_a_us_subscription(
    client: FlaskClient, db: Session, method: str, suffix: str
) -> None:
    sub = _new_subscription(db)
    token = _signed_in(client, DE_ADMIN, "/partner/")
    payments = _count(db, Payment)

    response = client.open(
        f"/partner/subscriptions/{sub.id}{suffix}",
        method=method,
        data=_form(csrf_token=token) if method == "POST" else None,
        headers=HTMX if suffix == "/preview" else {},
    )

    assert response.status_code == 404
    assert "Pottery class" not in response.get_data(as_text=True)
    assert _sub(db, sub.id).status == "recurring" and _count(db, Payment) == payments


def test_can_a_german_admin_open_the_form_for_a_us_customer(
    client: FlaskClient, db: Session
) -> None:
    account = _account(db)
    token = _signed_in(client, DE_ADMIN, "/partner/")

    assert client.get(f"/partner/customers/{account.id}/subscriptions/new").status_code == 404
    preview = client.post(
        f"/partner/customers/{account.id}/subscriptions/preview",
        data=_form(csrf_token=token),
        headers=HTMX,
    )
    assert preview.status_code == 404


# -- the customer's Retry now ----------------------------------------------------------


def _declined(app: Flask, db: Session) -> Subscription:
    """Jordan's subscription declined by the billing run today (its card saves, then declines)."""
    sub = _new_subscription(db, start=_today())
    gateway = sandbox(app)
    bad = gateway.attach_payment_method(
        customer_ref=_account(db).gateway_customer_ref,
        token=card(gateway, "4000000000000341").token,
    )
    method = PaymentMethod(
        partner_id=sub.partner_id, customer_account_id=sub.customer_account_id, gateway="sandbox",
        token=bad.token, kind="card", brand=bad.brand, last4=bad.last4,
    )  # fmt: skip
    db.add(method)
    db.commit()
    sub.payment_method_id = method.id
    db.add(sub)
    db.commit()
    with app.app_context():
        result = charge_next_period(db, gateway, sub.id, as_of=_today(), now=utcnow())
    assert result.status == "declined"
    return _sub(db, sub.id)


def _card_form(token: str, number: str) -> dict[str, str]:
    return {
        "csrf_token": token,
        "name": "Jordan Rivera",
        "card_number": number,
        "exp": "12/39",
        "cvc": "123",
    }


def test_can_a_customer_update_the_card_and_retry(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    sub = _declined(demo, db)
    page_url = f"/portal/subscriptions/{sub.id}/payment-method"
    token = _signed_in(client, JORDAN, "/portal/")
    account = client.get("/portal/").get_data(as_text=True)
    assert f'href="{page_url}"' in account

    page = client.get(page_url).get_data(as_text=True)
    assert "Retry now" in page and '<label for="f-card_number">Card number</label>' in page
    saved = client.post(page_url, data=_card_form(token, "4242 4242 4242 4242"))
    assert saved.status_code == 303
    retried = client.post(f"/portal/subscriptions/{sub.id}/retry", data={"csrf_token": token})

    assert retried.status_code == 303
    assert "Payment of $40.00 received" in client.get(page_url).get_data(as_text=True)
    after = _sub(db, sub.id)
    assert (after.status, after.recurring_count, after.last_error) == ("recurring", 1, "")


def test_does_a_retry_with_a_card_that_declines_stay_in_error(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    sub = _declined(demo, db)
    page_url = f"/portal/subscriptions/{sub.id}/payment-method"
    token = _signed_in(client, JORDAN, "/portal/")

    assert client.post(page_url, data=_card_form(token, "4000 0000 0000 0341")).status_code == 303
    client.post(f"/portal/subscriptions/{sub.id}/retry", data={"csrf_token": token})

    page = client.get(page_url).get_data(as_text=True)
    assert "The payment was declined" in page and "Retry now" in page
    assert _sub(db, sub.id).status == "error"


def test_is_a_refused_card_reported_next_to_the_card_number(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    sub = _declined(demo, db)
    token = _signed_in(client, JORDAN, "/portal/")

    response = client.post(
        f"/portal/subscriptions/{sub.id}/payment-method",
        data=_card_form(token, "4000 0000 0000 0002"),
    )

    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'aria-invalid="true" aria-describedby=" f-card_number-error"' in body
    assert "4000 0000 0000 0002" not in body  # card numbers are never echoed back


def test_can_a_customer_open_someone_elses_payment_page(client: FlaskClient, db: Session) -> None:
    makers = _account(db, "makers@example.com")
    theirs = db.exec(
        select(Subscription).where(Subscription.customer_account_id == makers.id)
    ).first()
    assert theirs is not None
    token = _signed_in(client, JORDAN, "/portal/")

    assert client.get(f"/portal/subscriptions/{theirs.id}/payment-method").status_code == 404
    retry = client.post(f"/portal/subscriptions/{theirs.id}/retry", data={"csrf_token": token})
    assert retry.status_code == 404


# -- the operator's billing runs -------------------------------------------------------


def _run(db: Session, status: str, **counts: int) -> BillingRun:
    partner = db.exec(select(Partner).where(Partner.slug == "us-partner")).one()
    run = BillingRun(partner_id=partner.id, run_date=_today(), status=status, **counts)
    db.add(run)
    db.commit()
    return run


def test_does_the_run_page_show_progress_and_poll_while_running(
    client: FlaskClient, db: Session
) -> None:
    run = _run(db, RunStatus.RUNNING, due=8, processed=3, charged=2, declined=1, chunks=1)
    _signed_in(client, OPERATOR, "/operator/")

    listing = client.get("/operator/runs").get_data(as_text=True)
    page = client.get(f"/operator/runs/{run.id}").get_data(as_text=True)
    block = client.get(f"/operator/runs/{run.id}", headers=HTMX)

    assert f'href="/operator/runs/{run.id}"' in listing and "Harbor Community Network" in listing
    assert '<progress id="run-bar" max="8" value="3">37 %</progress>' in page
    assert "3 of 8 due subscriptions processed" in page
    assert 'hx-trigger="every 1s"' in page and f'hx-get="/operator/runs/{run.id}"' in page
    body = block.get_data(as_text=True)
    assert "<html" not in body and body.lstrip().startswith('<div id="run-progress"')
    assert 'hx-trigger="every 1s"' in body
    assert "HX-Request" in block.headers.get("Vary", "")


def test_does_a_complete_run_stop_polling(client: FlaskClient, db: Session) -> None:
    run = _run(db, RunStatus.COMPLETE, due=8, processed=8, charged=8)
    _signed_in(client, OPERATOR, "/operator/")

    block = client.get(f"/operator/runs/{run.id}", headers=HTMX).get_data(as_text=True)

    assert "hx-trigger" not in block
    assert 'value="8"' in block and "100 %" in block


def test_does_the_run_page_list_each_failure_with_a_link(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    sub = _declined(demo, db)
    run = _run(db, RunStatus.COMPLETE, due=1, processed=1, declined=1)
    _signed_in(client, OPERATOR, "/operator/")

    page = client.get(f"/operator/runs/{run.id}").get_data(as_text=True)

    assert "Pottery class" in page and "Jordan Rivera" in page
    customer_url = f"/operator/customers/{sub.customer_account_id}"
    assert f'href="{customer_url}"' in page
    assert _sub(db, sub.id).last_error in page  # the reason
    assert client.get(customer_url).status_code == 200


@pytest.mark.parametrize("email", [US_ADMIN, JORDAN])
def test_can_anyone_but_an_operator_see_the_runs(
    client: FlaskClient, db: Session, email: str
) -> None:
    run = _run(db, RunStatus.RUNNING)
    assert sign_in(client, email).status_code == 303

    assert client.get("/operator/runs").status_code == 404
    assert client.get(f"/operator/runs/{run.id}", headers=HTMX).status_code == 404
    assert client.get(f"/operator/customers/{_account(db).id}").status_code == 404
