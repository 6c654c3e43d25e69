"""Dunning stages and donation-receipt wording on the partner settings page: admins edit
them, sales users cannot, every post needs its CSRF token, and errors sit by their field."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.domain.dunning import DEFAULT_POLICY, parse_policy
from app.models import AuditEvent, Partner, User
from tests.web.helpers import csrf_token, sign_in

US_ADMIN = "admin@us-partner.example"
US_SALES = "sales@us-partner.example"
DE_ADMIN = "admin@de-partner.example"

CUSTOM = {
    "stages-0-day": "3", "stages-0-stage": "reminder", "stages-0-recipients": ["partner"],
    "stages-1-day": "7", "stages-1-stage": "reminder", "stages-1-recipients": ["partner"],
    "stages-2-day": "20", "stages-2-stage": "reminder",
    "stages-2-recipients": ["customer", "partner"],
    "stages-3-day": "", "stages-3-stage": "reminder",  # a spare row, left empty
}  # fmt: skip


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _partner(db: Session, email: str) -> Partner:
    db.expire_all()
    user = db.exec(select(User).where(User.email == email)).one()
    partner = db.get(Partner, user.partner_id)
    assert partner is not None
    return partner


def _admin(client: FlaskClient, email: str = US_ADMIN) -> str:
    assert sign_in(client, email).status_code == 303
    return csrf_token(client, "/partner/settings")


def _field(page: str, field: str) -> tuple[str, str]:
    """The tag of ``field`` and the error shown next to it (which the tag points at)."""
    tag = re.search(rf'<(?:input|select|textarea)[^>]*id="{field}"[^>]*>', page)
    assert tag, f"no field {field}"
    error = re.search(rf'<p class="error" id="{field}-error">([^<]+)</p>', page)
    assert error, f"no error next to {field}"
    return tag.group(0), error.group(1)


def test_does_the_settings_page_show_the_default_stages(client: FlaskClient, db: Session) -> None:
    _admin(client)
    page = client.get("/partner/settings").get_data(as_text=True)
    assert 'id="dunning-heading"' in page and "You use the default policy." in page
    for n, stage in enumerate(DEFAULT_POLICY):
        assert re.search(rf'id="stages-{n}-day"[^>]*value="{stage.day}"', page)
    assert 'id="stages-6-day"' in page and 'id="stages-9-day"' not in page  # 3 spare rows
    assert "Reset to default" not in page  # already the default
    assert 'id="receipts-heading"' in page and '<label for="receipt_wording">' in page


def test_can_an_admin_save_custom_stages_and_reset_them(client: FlaskClient, db: Session) -> None:
    token = _admin(client)

    saved = client.post("/partner/settings/dunning", data={**CUSTOM, "csrf_token": token})

    assert saved.status_code == 303
    stored = _partner(db, US_ADMIN).dunning_policy
    assert stored is not None
    assert [(s["day"], s["stage"], s["recipients"]) for s in stored] == [
        (3, "reminder", ["partner"]), (7, "reminder", ["partner"]),
        (20, "reminder", ["customer", "partner"]),
    ]  # fmt: skip
    page = client.get("/partner/settings").get_data(as_text=True)
    assert "Dunning stages saved." in page and "Reset to default" in page
    assert re.search(r'id="stages-2-day"[^>]*value="20"', page)
    assert _partner(db, DE_ADMIN).dunning_policy is None  # another tenant is untouched

    reset = client.post("/partner/settings/dunning/reset", data={"csrf_token": token})

    assert reset.status_code == 303
    assert _partner(db, US_ADMIN).dunning_policy is None
    actions = db.exec(select(AuditEvent.action).where(AuditEvent.subject_type == "partner")).all()
    assert {"partner.dunning_policy_updated", "partner.dunning_policy_reset"} <= set(actions)


def test_are_policy_errors_shown_next_to_each_field(client: FlaskClient, db: Session) -> None:
    token = _admin(client)
    bad = {
        "csrf_token": token,
        "stages-0-day": "10", "stages-0-stage": "reminder", "stages-0-recipients": ["customer"],
        "stages-1-day": "8", "stages-1-stage": "reminder",  # before day 10, and nobody told
        "stages-2-day": "400", "stages-2-stage": "warning", "stages-2-recipients": ["customer"],
        "stages-3-day": "40", "stages-3-stage": "stop",
    }  # fmt: skip

    response = client.post("/partner/settings/dunning", data=bad)

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    tag, message = _field(page, "stages-1-day")
    assert 'aria-invalid="true"' in tag and "stages-1-day-error" in tag
    assert message == "Stage 2: enter a day after day 10 of stage 1."
    assert _field(page, "stages-1-recipients")[1] == "Stage 2: choose at least one recipient."
    assert _field(page, "stages-2-day")[1] == "Stage 3: enter a day from 1 to 365."
    assert 'role="alert"' in page and 'href="#stages-1-day"' in page
    assert re.search(r'id="stages-2-day"[^>]*value="400"', page)  # what was typed is kept
    assert _partner(db, US_ADMIN).dunning_policy is None  # nothing saved


def test_is_a_stop_without_a_warning_refused_by_name(client: FlaskClient, db: Session) -> None:
    token = _admin(client)
    data = {
        "csrf_token": token,
        "stages-0-day": "5", "stages-0-stage": "reminder", "stages-0-recipients": ["customer"],
        "stages-1-day": "35", "stages-1-stage": "stop",
    }  # fmt: skip
    page = client.post("/partner/settings/dunning", data=data).get_data(as_text=True)
    assert "add a warning stage before the stop" in _field(page, "stages-1-stage")[1]


def test_can_a_sales_user_see_or_change_the_dunning_stages(
    client: FlaskClient, db: Session
) -> None:
    assert sign_in(client, US_SALES).status_code == 303
    token = csrf_token(client, "/partner/")

    assert client.get("/partner/settings").status_code == 404
    for path in ("/partner/settings/dunning", "/partner/settings/dunning/reset"):
        assert client.post(path, data={**CUSTOM, "csrf_token": token}).status_code == 404
    posted = client.post(
        "/partner/settings/receipts", data={"receipt_wording": "Sales text", "csrf_token": token}
    )
    assert posted.status_code == 404
    partner = _partner(db, US_ADMIN)
    assert (partner.dunning_policy, partner.receipt_wording) == (None, "")


def test_is_a_post_without_its_csrf_token_refused(client: FlaskClient, db: Session) -> None:
    _admin(client)
    assert client.post("/partner/settings/dunning", data=CUSTOM).status_code == 400
    assert client.post("/partner/settings/dunning/reset").status_code == 400
    no_token = client.post("/partner/settings/receipts", data={"receipt_wording": "x"})
    assert no_token.status_code == 400
    assert _partner(db, US_ADMIN).dunning_policy is None


def test_can_an_admin_set_the_donation_receipt_wording(client: FlaskClient, db: Session) -> None:
    token = _admin(client)
    wording = "No goods or services were provided.\r\nEIN 12-3456789."

    response = client.post(
        "/partner/settings/receipts", data={"receipt_wording": wording, "csrf_token": token}
    )

    assert response.status_code == 303
    assert _partner(db, US_ADMIN).receipt_wording == (
        "No goods or services were provided.\nEIN 12-3456789."
    )
    page = client.get("/partner/settings").get_data(as_text=True)
    assert "Receipt wording saved." in page and "EIN 12-3456789." in page

    too_long = client.post(
        "/partner/settings/receipts", data={"receipt_wording": "x" * 1001, "csrf_token": token}
    )
    assert too_long.status_code == 422
    tag, message = _field(too_long.get_data(as_text=True), "receipt_wording")
    assert 'aria-invalid="true"' in tag
    assert message == "Keep the receipt wording to 1,000 characters (it has 1,001)."
    assert _partner(db, US_ADMIN).receipt_wording.endswith("EIN 12-3456789.")


def test_does_a_saved_policy_parse_back_like_the_form(client: FlaskClient, db: Session) -> None:
    token = _admin(client)
    client.post("/partner/settings/dunning", data={**CUSTOM, "csrf_token": token})
    policy = parse_policy(_partner(db, US_ADMIN).dunning_policy)
    assert [s.day for s in policy] == [3, 7, 20]
