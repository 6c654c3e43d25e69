"""Partner settings and take-payment widgets in the browser: admins only, tenant by tenant."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from app.models import AuditEvent, Partner, User, Widget
from tests.web.helpers import csrf_token, sign_in

US_ADMIN = "admin@us-partner.example"
US_SALES = "sales@us-partner.example"
DE_ADMIN = "admin@de-partner.example"
BASE_URL = "http://localhost"  # the test settings' base_url

GOOD_WIDGET = {
    "title": "Spring raffle",
    "purpose": "Tickets for the spring raffle.",
    "currency": "",
    "amount_mode": "fixed",
    "fixed_amount": "25.00",
    "accept_card": "on",
    "allow_one_time": "on",
    "frequencies": ["monthly", "annual"],
    "success_message": "See you at the draw!",
}


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    """A session on the app's database; the ``app`` fixture empties it afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _partner(db: Session, admin_email: str) -> Partner:
    db.expire_all()
    user = db.exec(select(User).where(User.email == admin_email)).one()
    partner = db.get(Partner, user.partner_id)
    assert partner is not None
    return partner


def _widget_of(db: Session, admin_email: str) -> Widget:
    """A widget of that admin's partner, created directly so tests do not rely on the seed."""
    partner = _partner(db, admin_email)
    widget = Widget(
        partner_id=partner.id,
        key=f"test-{partner.slug}"[:40],
        title=f"{partner.name} dues",
        currency=partner.currency,
        fixed_amount=2500,
    )
    db.add(widget)
    db.commit()
    return widget


def _stored(db: Session, widget_id: int) -> Widget:
    db.expire_all()
    widget = db.get(Widget, widget_id)
    assert widget is not None
    return widget


def _count(db: Session, model: type) -> int:
    db.expire_all()
    return db.exec(select(func.count()).select_from(model)).one()


def _admin(client: FlaskClient, email: str = US_ADMIN) -> str:
    """Sign in and return a CSRF token of the signed-in session."""
    assert sign_in(client, email).status_code == 303
    return csrf_token(client, "/partner/settings" if email != US_SALES else "/partner/")


def _field_error(page: str, field: str) -> str:
    """The error text next to ``field``, after checking the field points at it."""
    match = re.search(rf'<(?:input|textarea)[^>]*id="{field}"[^>]*>', page)
    assert match, f"no field {field}"
    tag = match.group(0)
    assert 'aria-invalid="true"' in tag, tag
    assert f"{field}-error" in tag, tag
    error = re.search(rf'<p class="error" id="{field}-error">([^<]+)</p>', page)
    assert error, f"no error next to {field}"
    return error.group(1)


# -- widgets: create, edit, snippet ----------------------------------------------------------


def test_can_an_admin_create_a_widget_and_copy_its_snippet(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    token = _admin(client)

    response = client.post("/partner/widgets/new", data={**GOOD_WIDGET, "csrf_token": token})

    assert response.status_code == 303
    widget = db.exec(select(Widget).where(Widget.title == "Spring raffle")).one()
    assert response.headers["Location"] == f"/partner/widgets/{widget.id}"
    assert (widget.currency, widget.fixed_amount) == ("USD", 2500)
    assert widget.recurring_frequencies == ["monthly", "annual"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    script = (
        f"&lt;script src=&#34;{BASE_URL}/embed.js&#34; data-widget=&#34;{widget.key}&#34; "
        "async&gt;&lt;/script&gt;"
    )
    assert script in page
    assert f"{BASE_URL}/embed/take-payment/{widget.key}" in page
    assert "title=&#34;Spring raffle&#34;" in page
    assert page.count('data-copy="snippet-') == 2
    assert 'role="status"' in page and 'aria-live="polite"' in page
    assert "/static/js/copy.js" in page
    assert "Widget created." in page
    listing = client.get("/partner/widgets").get_data(as_text=True)
    assert "Spring raffle" in listing and "$25.00" in listing and "Card" in listing


def test_are_all_errors_shown_next_to_their_fields_and_nothing_saved(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    token = _admin(client)
    before = _count(db, Widget)
    bad = {
        "csrf_token": token,
        "title": "",
        "currency": "usd",
        "amount_mode": "payer",
        "min_amount": "50",
        "max_amount": "10",
        "accept_bank": "on",
        "success_message": "x" * 501,
    }

    response = client.post("/partner/widgets/new", data=bad)

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Nothing was saved" in page
    assert _field_error(page, "title") == "Enter a title."
    assert "at least the minimum" in _field_error(page, "max_amount")
    assert "500 characters" in _field_error(page, "success_message")
    assert 'id="recurrence-error"' in page  # neither one-time nor a frequency
    assert 'value="50"' in page and 'value="usd"' in page  # what was typed is kept
    assert _count(db, Widget) == before


def test_does_editing_a_widget_save_it_and_a_bad_edit_change_nothing(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    token = _admin(client)
    widget = _widget_of(db, US_ADMIN)
    path = f"/partner/widgets/{widget.id}"
    page = client.get(path).get_data(as_text=True)
    assert 'value="25.00"' in page

    bad = client.post(
        path, data={**GOOD_WIDGET, "fixed_amount": "lots", "title": "", "csrf_token": token}
    )
    assert bad.status_code == 422
    stored = _stored(db, widget.id)
    assert (stored.fixed_amount, stored.updated_at) == (2500, None)

    good = client.post(path, data={**GOOD_WIDGET, "fixed_amount": "30", "csrf_token": token})
    assert good.status_code == 303
    stored = _stored(db, widget.id)
    assert (stored.title, stored.fixed_amount, stored.key) == ("Spring raffle", 3000, widget.key)


def test_can_an_admin_switch_a_widget_off(client: FlaskClient, demo: Flask, db: Session) -> None:
    token = _admin(client)
    widget = _widget_of(db, US_ADMIN)

    response = client.post(
        f"/partner/widgets/{widget.id}/active", data={"active": "0", "csrf_token": token}
    )

    assert response.status_code == 303
    assert not _stored(db, widget.id).is_active
    assert "inactive" in client.get("/partner/widgets").get_data(as_text=True)


# -- the live preview ------------------------------------------------------------------------


def test_does_the_htmx_preview_return_only_the_preview_block_and_write_nothing(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    token = _admin(client)
    widget = _widget_of(db, US_ADMIN)
    audits = _count(db, AuditEvent)
    unsaved = {**GOOD_WIDGET, "title": "Unsaved title", "fixed_amount": "42", "csrf_token": token}

    response = client.post(
        f"/partner/widgets/{widget.id}/preview", data=unsaved, headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<html" not in body
    assert body.lstrip().startswith('<div id="widget-preview">')
    assert 'name="title"' not in body  # the form is outside the block
    assert "Unsaved title" in body
    assert "Pay $42.00" in body
    assert "Monthly" in body and "Annual" in body and "One time" in body
    assert "HX-Request" in response.headers.get("Vary", "")
    stored = _stored(db, widget.id)
    assert (stored.title, stored.fixed_amount) == (widget.title, 2500)
    assert _count(db, AuditEvent) == audits


def test_does_the_preview_show_the_errors_of_invalid_values(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    token = _admin(client)
    before = _count(db, Widget)
    unsaved = {
        "csrf_token": token,
        "title": "Donate",
        "amount_mode": "payer",
        "min_amount": "5",
        "max_amount": "1",
        "accept_card": "on",
        "frequencies": ["monthly"],
    }

    response = client.post("/partner/widgets/preview", data=unsaved, headers={"HX-Request": "true"})

    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" not in body
    assert '<a href="#max_amount">Enter a maximum that is at least the minimum.</a>' in body
    assert "disabled>Pay</button>" in body  # a payer-chosen amount: no amount on the button
    assert _count(db, Widget) == before


def test_does_the_preview_work_without_javascript(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    token = _admin(client)
    widget = _widget_of(db, US_ADMIN)
    unsaved = {**GOOD_WIDGET, "title": "Typed, not saved", "csrf_token": token}

    response = client.post(f"/partner/widgets/{widget.id}/preview", data=unsaved)

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" in page
    assert 'value="Typed, not saved"' in page  # the form keeps the unsaved values
    assert _stored(db, widget.id).title == widget.title


def test_does_the_widget_form_ask_htmx_for_the_preview(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    _admin(client)
    widget = _widget_of(db, US_ADMIN)

    for path, preview in (
        (f"/partner/widgets/{widget.id}", f"/partner/widgets/{widget.id}/preview"),
        ("/partner/widgets/new", "/partner/widgets/preview"),
    ):
        page = client.get(path).get_data(as_text=True)
        form = re.search(r"<form[^>]*hx-post=[^>]*>", page, re.DOTALL)
        assert form, path
        tag = form.group(0)
        assert f'hx-post="{preview}"' in tag
        assert 'hx-trigger="input changed delay:300ms, change"' in tag
        assert 'hx-target="#widget-preview"' in tag
        assert 'method="post"' in tag  # and it still saves without JavaScript
        assert 'id="widget-preview"' in page


# -- who may open what -------------------------------------------------------------------------


def _widget_requests(widget_id: int) -> list[tuple[str, str]]:
    return [
        ("GET", "/partner/settings"),
        ("GET", "/partner/widgets"),
        ("GET", "/partner/widgets/new"),
        ("GET", f"/partner/widgets/{widget_id}"),
        ("POST", "/partner/widgets/new"),
        ("POST", f"/partner/widgets/{widget_id}"),
        ("POST", f"/partner/widgets/{widget_id}/preview"),
        ("POST", f"/partner/widgets/{widget_id}/active"),
        ("POST", "/partner/widgets/preview"),
        ("POST", "/partner/settings/origins"),
        ("POST", "/partner/settings/origins/remove"),
        ("POST", "/partner/settings/payments"),
    ]


def test_can_a_sales_user_open_the_settings_or_widgets(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    token = _admin(client, US_SALES)
    widget = _widget_of(db, US_ADMIN)
    origins = list(_partner(db, US_ADMIN).allowed_origins)
    data = {
        **GOOD_WIDGET,
        "active": "0",
        "origin": origins[0] if origins else "https://x.example",
        "pay_link_days": "3",
        "csrf_token": token,
    }

    for method, path in _widget_requests(widget.id):
        response = client.open(path, method=method, data=data if method == "POST" else None)
        assert response.status_code == 404, (method, path)
        assert widget.key not in response.get_data(as_text=True)

    stored = _stored(db, widget.id)
    assert (stored.title, stored.is_active) == (widget.title, True)
    assert _partner(db, US_ADMIN).allowed_origins == origins
    assert _partner(db, US_ADMIN).pay_link_days == 30
    nav = client.get("/partner/").get_data(as_text=True)
    assert "/partner/settings" not in nav and "/partner/widgets" not in nav


def test_can_a_german_admin_open_a_us_widget_by_id(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    token = _admin(client, DE_ADMIN)
    widget = _widget_of(db, US_ADMIN)
    missing = client.get("/partner/widgets/999999")

    for method, path in _widget_requests(widget.id):
        if f"/{widget.id}" not in path:
            continue
        response = client.open(
            path, method=method, data={**GOOD_WIDGET, "active": "0", "csrf_token": token}
        )
        assert response.status_code == missing.status_code == 404, (method, path)
        body = response.get_data(as_text=True)
        assert widget.key not in body and widget.title not in body

    stored = _stored(db, widget.id)
    assert (stored.title, stored.is_active) == (widget.title, True)
    assert widget.title not in client.get("/partner/widgets").get_data(as_text=True)
    nav = client.get("/partner/").get_data(as_text=True)
    assert "/partner/settings" in nav and "/partner/widgets" in nav


@pytest.mark.parametrize(
    "path",
    [
        "/partner/widgets/new",
        "/partner/widgets/{id}",
        "/partner/widgets/{id}/preview",
        "/partner/widgets/{id}/active",
        "/partner/widgets/preview",
        "/partner/settings/origins",
        "/partner/settings/origins/remove",
        "/partner/settings/payments",
    ],
)
def test_is_a_post_without_a_csrf_token_refused(
    client: FlaskClient, demo: Flask, db: Session, path: str
) -> None:
    _admin(client)
    widget = _widget_of(db, US_ADMIN)
    partner = _partner(db, US_ADMIN)
    origins = list(partner.allowed_origins)
    widgets = _count(db, Widget)
    data = {
        **GOOD_WIDGET,
        "active": "0",
        "origin": origins[0] if "remove" in path else "https://new.example",
        "allow_partial_payments": "on",
        "pay_link_days": "3",
    }

    response = client.post(path.format(id=widget.id), data=data)

    assert response.status_code == 400
    assert _count(db, Widget) == widgets
    assert _stored(db, widget.id).is_active
    partner = _partner(db, US_ADMIN)
    assert partner.allowed_origins == origins
    assert (partner.allow_partial_payments, partner.pay_link_days) == (False, 30)


# -- settings: origins and payments --------------------------------------------------------


def test_can_an_admin_add_and_remove_an_allowed_origin(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    token = _admin(client)
    before = list(_partner(db, US_ADMIN).allowed_origins)

    added = client.post(
        "/partner/settings/origins",
        data={"origin": "https://Club.Example.org/", "csrf_token": token},
    )

    assert added.status_code == 303 and added.headers["Location"] == "/partner/settings"
    assert _partner(db, US_ADMIN).allowed_origins == [*before, "https://club.example.org"]
    page = client.get("/partner/settings").get_data(as_text=True)
    assert "<code>https://club.example.org</code>" in page
    assert "Pages on https://club.example.org may now embed your widgets." in page

    removed = client.post(
        "/partner/settings/origins/remove",
        data={"origin": "https://club.example.org", "csrf_token": token},
    )

    assert removed.status_code == 303
    assert _partner(db, US_ADMIN).allowed_origins == before
    assert _partner(db, DE_ADMIN).allowed_origins == []  # the other tenant is untouched


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("https://example.org/donate", "without a path"),
        ("https://*.example.org", "Wildcards are not allowed"),
        ("example.org", "Start the origin with https://"),
        ("HTTPS://Club.example.org", "already allowed"),
    ],
)
def test_is_a_bad_or_duplicate_origin_refused_next_to_the_field(
    client: FlaskClient, demo: Flask, db: Session, typed: str, message: str
) -> None:
    token = _admin(client)
    client.post(
        "/partner/settings/origins",
        data={"origin": "https://club.example.org", "csrf_token": token},
    )
    before = list(_partner(db, US_ADMIN).allowed_origins)

    response = client.post("/partner/settings/origins", data={"origin": typed, "csrf_token": token})

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in _field_error(page, "origin")
    assert f'value="{typed}"' in page
    assert _partner(db, US_ADMIN).allowed_origins == before


def test_are_payment_settings_saved_and_bad_days_refused(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    token = _admin(client)

    saved = client.post(
        "/partner/settings/payments",
        data={"allow_partial_payments": "on", "pay_link_days": "14", "csrf_token": token},
    )

    assert saved.status_code == 303
    partner = _partner(db, US_ADMIN)
    assert (partner.allow_partial_payments, partner.pay_link_days) == (True, 14)
    page = client.get("/partner/settings").get_data(as_text=True)
    assert re.search(r'id="allow_partial_payments"[^>]*checked', page)
    assert 'value="14"' in page

    for days, message in (("0", "from 1 to 365"), ("ten", "whole number"), ("", "whole number")):
        refused = client.post(
            "/partner/settings/payments", data={"pay_link_days": days, "csrf_token": token}
        )
        assert refused.status_code == 422, days
        assert message in _field_error(refused.get_data(as_text=True), "pay_link_days")
        partner = _partner(db, US_ADMIN)
        assert (partner.allow_partial_payments, partner.pay_link_days) == (True, 14)
