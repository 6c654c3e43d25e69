"""The operator's outbox: list with filters, one message's parts, "Send again".

Operators only; during development anyone signed in may read (not send again).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import timedelta
from functools import cache
from html.parser import HTMLParser

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq.job import Job
from sqlalchemy import Engine
from sqlmodel import Session
from werkzeug.security import generate_password_hash

from app.clock import utcnow
from app.models import OutboxMessage, OutboxStatus, Partner, Role, User
from app.services.email import add_message
from tests.jobs.email_support import row, work
from tests.web.helpers import csrf_token, sign_in

PASSWORD = "a-long-test-password"
OPERATOR = "ops@platform.example"
PARTNER = "admin@tenant.example"


@cache
def _password_hash() -> str:
    return generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    """A session on the app's database; the ``app`` fixture empties it afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture(autouse=True)
def people(app: Flask, db: Session) -> None:
    partner = Partner(name="Tenant", slug="tenant", country="US")
    db.add(partner)
    db.flush()
    db.add(User(email=OPERATOR, password_hash=_password_hash(), role=Role.OPERATOR))
    db.add(
        User(
            email=PARTNER,
            password_hash=_password_hash(),
            role=Role.PARTNER_ADMIN,
            partner_id=partner.id,
        )
    )
    db.commit()


@pytest.fixture
def production(app: Flask) -> None:
    """Run this app as in production (the outbox is then for operators only)."""
    app.config["PORTICO"] = dataclasses.replace(app.config["PORTICO"], env="production")


def _message(
    db: Session,
    n: int,
    *,
    kind: str = "receipt",
    to: str = "",
    subject: str = "",
    html: str = "",
    status: str = OutboxStatus.PENDING,
    attempts: int = 0,
    error: str = "",
    minutes_old: int = 0,
) -> OutboxMessage:
    message = add_message(
        db,
        dedupe_key=f"test:{n}",
        kind=kind,
        to_address=to or f"payer{n}@example.com",
        subject=subject or f"Message {n}",
        text_body=f"Plain text of message {n}.\nSecond line.",
        html_body=html or f"<p>HTML of message {n}</p>",
    )
    message.status, message.attempts, message.last_error = status, attempts, error
    message.created_at = utcnow() - timedelta(minutes=minutes_old)
    db.add(message)
    db.commit()
    return message


def _operator(client: FlaskClient) -> FlaskClient:
    assert sign_in(client, OPERATOR, PASSWORD).status_code == 303
    return client


def _subjects(page: str) -> list[str]:
    return re.findall(r'href="/operator/outbox/\d+">([^<]*)</a>', page)


class _Frames(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "iframe":
            self.frames.append(dict(attrs))


def _frames(page: str) -> list[dict[str, str | None]]:
    parser = _Frames()
    parser.feed(page)
    return parser.frames


def test_does_an_operator_see_the_newest_emails_first_with_their_state(client, db) -> None:
    _message(db, 1, minutes_old=30, status="sent", attempts=1)
    _message(
        db, 2, minutes_old=20, status="failed", attempts=3, error="Recipient refused: 550 nope"
    )
    _message(db, 3, kind="pay_link", minutes_old=10)
    page = _operator(client).get("/operator/outbox").get_data(as_text=True)

    assert _subjects(page) == ["Message 3", "Message 2", "Message 1"]
    assert "No <code>SMTP_URL</code> is set" in page  # the test app has no mail server
    for text in ("Created (UTC)", "pay link", "payer2@example.com", "Recipient refused: 550 nope"):
        assert text in page
    assert re.search(r"status-failed\">failed</span></td>\s*<td class=\"num\">3</td>", page)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=failed", ["Message 2"]),
        ("kind=pay_link", ["Message 3"]),
        ("q=PAYER1", ["Message 1"]),
        ("q=billing_team", ["Message 4"]),  # "_" is a literal, not a wildcard
        ("status=sent&kind=pay_link", []),
        ("status=bogus", ["Message 4", "Message 3", "Message 2", "Message 1"]),
    ],
)
def test_do_the_filters_and_the_search_narrow_the_list(client, db, query, expected) -> None:
    _message(db, 1, status="sent")
    _message(db, 2, status="failed", attempts=1)
    _message(db, 3, kind="pay_link")
    _message(db, 4, to="billing_team@example.com")
    _message(db, 5, to="billingXteam@example.com", status="sent", kind="other")
    page = _operator(client).get(f"/operator/outbox?{query}").get_data(as_text=True)
    found = [s for s in _subjects(page) if s != "Message 5"]
    assert found == expected
    if not expected:
        assert "No emails match." in page


def test_is_a_filter_answered_with_the_results_block_alone_for_htmx(client, db) -> None:
    _message(db, 1, status="failed", attempts=1)
    _message(db, 2)
    response = _operator(client).get(
        "/operator/outbox?status=failed", headers={"HX-Request": "true"}
    )
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="outbox-results">')
    assert "<html" not in body
    assert _subjects(body) == ["Message 1"]
    assert "HX-Request" in response.headers["Vary"]


def test_is_the_list_paginated_fifty_at_a_time(client, db) -> None:
    for n in range(55):
        _message(db, n, minutes_old=100 - n)
    first = _operator(client).get("/operator/outbox?kind=receipt").get_data(as_text=True)
    assert len(_subjects(first)) == 50
    assert _subjects(first)[0] == "Message 54"
    assert 'href="/operator/outbox?kind=receipt&amp;page=2">Older</a>' in first
    second = client.get("/operator/outbox?kind=receipt&page=2").get_data(as_text=True)
    assert _subjects(second) == ["Message 4", "Message 3", "Message 2", "Message 1", "Message 0"]
    assert ">Newer</a>" in second and ">Older</a>" not in second


def test_does_the_detail_show_headers_text_and_html_in_a_sandboxed_frame(client, db) -> None:
    message = _message(db, 7, status="failed", attempts=2, error="451 try later")
    response = _operator(client).get(f"/operator/outbox/{message.id}")
    page = response.get_data(as_text=True)

    assert response.status_code == 200
    for header in (
        '<th scope="row">From</th><td>Portico &lt;billing@portico.example&gt;</td>',
        '<th scope="row">To</th><td>payer7@example.com</td>',
        '<th scope="row">Subject</th><td>Message 7</td>',
        f'<th scope="row">Message-ID</th><td>&lt;outbox-{message.id}@portico.example&gt;</td>',
    ):
        assert header in page
    assert "<pre>Plain text of message 7.\nSecond line.</pre>" in page
    assert "451 try later" in page
    [frame] = _frames(page)
    assert frame["sandbox"] == ""  # every restriction on: no scripts, no same origin
    assert frame["src"] == f"/operator/outbox/{message.id}/html"
    assert "Send again" in page
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    html = client.get(frame["src"])
    assert html.status_code == 200 and html.mimetype == "text/html"
    assert html.get_data(as_text=True) == "<p>HTML of message 7</p>"


def test_does_the_html_part_keep_its_styles_and_nothing_else(client, db) -> None:
    """The email's own inline styles apply in the preview (the detail page's policy would
    refuse them); scripts, remote content, forms and framing by others stay refused."""
    message = _message(db, 2, html='<p style="color: #0a7">Styled</p>')
    response = _operator(client).get(f"/operator/outbox/{message.id}/html")

    policy = {
        words[0]: words[1:]
        for words in (p.split() for p in response.headers["Content-Security-Policy"].split(";"))
    }
    assert policy["default-src"] == ["'none'"] and "script-src" not in policy
    assert policy["style-src"] == ["'unsafe-inline'"]
    assert policy["img-src"] == ["data:"] and policy["form-action"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'self'"] and policy["sandbox"] == []
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_does_escaping_hold_for_a_hostile_subject_and_html_part(client, db) -> None:
    hostile_html = '"><script>alert("html")</script><img src=x onerror="alert(2)">'
    message = _message(db, 1, subject="<script>alert('subject')</script>", html=hostile_html)
    _operator(client)
    listing = client.get("/operator/outbox").get_data(as_text=True)
    detail = client.get(f"/operator/outbox/{message.id}").get_data(as_text=True)

    for page in (listing, detail):
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt;" in page
    assert 'onerror="alert' not in detail
    [frame] = _frames(detail)
    assert frame["sandbox"] == ""
    html = client.get(frame["src"])  # whole, as the frame's own document, under a policy
    assert html.get_data(as_text=True) == hostile_html  # that runs no script at all
    assert "default-src 'none'" in html.headers["Content-Security-Policy"]


def test_can_an_operator_send_a_failed_email_again(app, client, db, engine) -> None:
    message = _message(db, 1, status="failed", attempts=6, error="Connection refused")
    _operator(client)
    token = csrf_token(client, f"/operator/outbox/{message.id}")
    response = client.post(f"/operator/outbox/{message.id}/send-again", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"] == f"/operator/outbox/{message.id}"
    again = row(engine, message.id)
    assert (again.status, again.attempts, again.last_error) == ("pending", 6, "")
    redis = app.extensions["portico"].redis
    assert Job.fetch(f"email-{message.id}", connection=redis).retries_left == 5
    assert "Queued for sending again." in client.get(response.headers["Location"]).get_data(
        as_text=True
    )
    work(app)
    assert (row(engine, message.id).status, row(engine, message.id).attempts) == ("sent", 7)


def test_does_send_again_need_the_csrf_token(client, db, engine) -> None:
    message = _message(db, 1, status="failed", attempts=1, error="x")
    _operator(client)
    assert client.post(f"/operator/outbox/{message.id}/send-again").status_code == 400
    assert row(engine, message.id).status == "failed"


def test_is_send_again_refused_for_a_message_that_did_not_fail(client, db, engine) -> None:
    message = _message(db, 1, status="sent", attempts=1)
    _operator(client)
    page = client.get(f"/operator/outbox/{message.id}").get_data(as_text=True)
    assert "Send again" not in page
    token = csrf_token(client, "/operator/outbox")
    response = client.post(f"/operator/outbox/{message.id}/send-again", data={"csrf_token": token})
    assert response.status_code == 409
    assert row(engine, message.id).status == "sent"


def test_is_an_unknown_message_not_found(client, db) -> None:
    assert _operator(client).get("/operator/outbox/999999").status_code == 404


@pytest.mark.usefixtures("production")
def test_is_a_partner_user_refused_the_outbox_in_production(client, db, engine) -> None:
    message = _message(db, 1, status="failed", attempts=1, error="x")
    assert sign_in(client, PARTNER, PASSWORD).status_code == 303
    token = csrf_token(client, "/partner/")
    assert client.get("/operator/outbox").status_code == 403
    assert client.get(f"/operator/outbox/{message.id}").status_code == 403
    assert client.get(f"/operator/outbox/{message.id}/html").status_code == 403
    response = client.post(f"/operator/outbox/{message.id}/send-again", data={"csrf_token": token})
    assert response.status_code == 403
    assert row(engine, message.id).status == "failed"


@pytest.mark.usefixtures("production")
def test_does_an_operator_still_read_the_outbox_in_production(client, db) -> None:
    _message(db, 1)
    assert _operator(client).get("/operator/outbox").status_code == 200


def test_may_anyone_signed_in_read_but_not_send_again_in_development(
    app, client, db, engine
) -> None:
    assert app.config["PORTICO"].is_development
    message = _message(db, 1, status="failed", attempts=1, error="x")
    assert sign_in(client, PARTNER, PASSWORD).status_code == 303
    listing = client.get("/operator/outbox")
    assert listing.status_code == 200
    assert "Partners</a>" not in listing.get_data(as_text=True)  # not the operator's nav
    detail = client.get(f"/operator/outbox/{message.id}").get_data(as_text=True)
    assert "Send again" not in detail
    token = csrf_token(client, "/partner/")
    response = client.post(f"/operator/outbox/{message.id}/send-again", data={"csrf_token": token})
    assert response.status_code == 403
    assert row(engine, message.id).status == "failed"


@pytest.mark.parametrize(
    "path", ["/operator/outbox", "/operator/outbox/1", "/operator/outbox/1/html"]
)
def test_is_an_anonymous_visitor_sent_to_sign_in(client, path) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_is_the_outbox_linked_from_the_operator_nav(client) -> None:
    page = _operator(client).get("/operator/").get_data(as_text=True)
    assert '<a href="/operator/outbox">Outbox</a>' in page
    assert '<a href="/operator/runs">Billing runs</a>' in page
