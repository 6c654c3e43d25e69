"""Sending an order for customer approval and the customer's approval: the emailed link,
re-sending, tampered and expired links, signing with and without payment, declines,
single use, drawn signatures, who may send, and tenancy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.domain.errors import Forbidden, NotFound
from app.domain.orders import DECLINED_TAG, IllegalTransition
from app.models import Invoice, Order
from app.services import order_approval
from app.services.order_approval import ApprovalLinkGone, ApprovalLinkInvalid
from app.services.widget_payments import FieldErrors
from tests.services.account_helpers import DE_ADMIN, US_ADMIN, US_SALES
from tests.services.approval_helpers import (
    ADDRESS,
    PNG_MAGIC,
    SETUP,
    SUPPORT,
    approval_emails,
    approve,
    emailed_token,
    png_data_url,
    secret,
    send,
    set_partner,
)
from tests.services.order_helpers import (
    DECLINES,
    NOW,
    TODAY,
    find_user,
    history,
    make_order,
    new_card,
    new_customer,
    order_payments,
    processor_calls,
    reload,
)


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with demo.app_context(), Session(engine, expire_on_commit=False) as session:
        yield session


def _order(db: Session, *, by: str = US_ADMIN, billing_email: str = "") -> Order:
    """A $45.00 order of a new customer; salespeople may send it but not collect payment."""
    user = find_user(db, by)
    set_partner(db, user.partner_id, sales_send_for_approval=True, sales_collect_payment=False)  # type: ignore[arg-type]
    nora = new_customer(db, user.partner_id)  # type: ignore[arg-type]
    if billing_email:
        nora.billing_email = billing_email
        db.add(nora)
        db.commit()
    return make_order(db, nora, [SUPPORT, SETUP], by=user)


def _open(demo: Flask, db: Session, token: str, **kw) -> order_approval.ApprovalPage:  # noqa: ANN003
    db.rollback()
    return order_approval.approval_page(db, token, secret=secret(demo), now=kw.get("now", NOW))


# -- sending ----------------------------------------------------------------------------------


def test_does_sending_email_the_customer_a_working_link(demo: Flask, db: Session) -> None:
    order = _order(db, billing_email="accounts@quist.example")
    admin = find_user(db, US_ADMIN)

    (email_id,) = send(demo, db, admin, order)

    order = reload(db, order)
    assert order.status == "pending_approval" and order.approval_nonce
    assert order.sent_by_user_id == admin.id and order.approval_sent_at == NOW
    assert order.approval_expires_at == NOW + timedelta(days=14)
    (email,) = approval_emails(db)
    assert email.id == email_id and email.to_address == "accounts@quist.example"
    assert email.subject == f"Please approve order {order.number} from Harbor Community Network"
    for text in ("Support plan", "Setup", "$45.00", "Dec 5, 2026", "pay the total"):
        assert text in email.text_body and text in email.html_body
    page = _open(demo, db, emailed_token(db, email_id))
    assert page.state == "open" and page.order.id == order.id
    assert [line.description for line in page.lines] == ["Support plan", "Setup"]
    assert page.takes_payment and page.sequence == 1 and page.partner.name.startswith("Harbor")
    assert history(db, order) == ["order.sent_for_approval"]


def test_does_a_resend_make_a_new_link_and_stop_the_old_one(demo: Flask, db: Session) -> None:
    order = _order(db)
    admin = find_user(db, US_ADMIN)
    (first,) = send(demo, db, admin, order)
    later = NOW + timedelta(days=3)

    (second,) = send(demo, db, admin, order, now=later)

    old, new = emailed_token(db, first), emailed_token(db, second)
    assert old != new
    with pytest.raises(ApprovalLinkGone, match="newer approval link") as gone:
        _open(demo, db, old, now=later)
    assert gone.value.status_code == 410 and gone.value.reason == "replaced"
    assert _open(demo, db, new, now=later).state == "open"
    assert reload(db, order).approval_expires_at == later + timedelta(days=14)
    assert history(db, order) == ["order.sent_for_approval", "order.approval_resent"]
    with pytest.raises(ApprovalLinkGone):
        approve(demo, db, old, card=new_card(demo), sequence=1, now=later)
    assert processor_calls(demo, order) == []


def test_is_an_order_without_lines_or_already_active_not_sent(demo: Flask, db: Session) -> None:
    admin = find_user(db, US_ADMIN)
    order = _order(db)
    order.total = 0
    db.add(order)
    db.commit()
    with pytest.raises(Exception, match="Add at least one product line") as refused:
        send(demo, db, admin, order)
    assert refused.value.status_code == 409  # type: ignore[attr-defined]

    active = make_order(db, new_customer(db, admin.partner_id, "Ola Berg"), [SETUP], by=admin)  # type: ignore[arg-type]
    active.status = "activated"
    db.add(active)
    db.commit()
    with pytest.raises(IllegalTransition, match="already active"):
        send(demo, db, admin, active)
    assert approval_emails(db) == []


# -- the link ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: "x" + token,
        lambda token: "not-a-token",
    ],
    ids=["signature changed", "payload changed", "garbage"],
)
def test_is_a_tampered_link_refused_without_saying_anything(  # noqa: ANN001
    demo: Flask, db: Session, tamper
) -> None:
    order = _order(db)
    (email_id,) = send(demo, db, find_user(db, US_ADMIN), order)
    token = tamper(emailed_token(db, email_id))

    with pytest.raises(ApprovalLinkInvalid, match="This approval link is not valid") as bad:
        _open(demo, db, token)
    assert bad.value.status_code == 404
    with pytest.raises(ApprovalLinkInvalid):
        approve(demo, db, token, card=new_card(demo), sequence=1)
    assert reload(db, order).status == "pending_approval" and processor_calls(demo, order) == []


def test_is_a_link_signed_with_another_secret_refused(demo: Flask, db: Session) -> None:
    order = _order(db)
    send(demo, db, find_user(db, US_ADMIN), order)
    forged = order_approval.token_for("some-other-secret", reload(db, order))
    with pytest.raises(ApprovalLinkInvalid):
        _open(demo, db, forged)


def test_does_an_expired_link_say_when_it_expired(demo: Flask, db: Session) -> None:
    order = _order(db)
    (email_id,) = send(demo, db, find_user(db, US_ADMIN), order)
    token = emailed_token(db, email_id)
    assert _open(demo, db, token, now=NOW + timedelta(days=13, hours=23)).state == "open"

    after = NOW + timedelta(days=14)
    with pytest.raises(ApprovalLinkGone, match=r"expired on Dec 5, 2026\. Ask Harbor") as gone:
        _open(demo, db, token, now=after)
    assert gone.value.status_code == 410 and gone.value.reason == "expired"
    with pytest.raises(ApprovalLinkGone, match="expired"):
        approve(demo, db, token, sequence=1, card=new_card(demo), now=after)
    assert reload(db, order).status == "pending_approval" and not reload(db, order).signed_at


def test_does_the_partners_link_length_setting_decide_the_expiry(demo: Flask, db: Session) -> None:
    order = _order(db)
    set_partner(db, order.partner_id, approval_link_days=3)
    send(demo, db, find_user(db, US_ADMIN), order)
    assert reload(db, order).approval_expires_at == NOW + timedelta(days=3)


# -- approving --------------------------------------------------------------------------------


def test_is_an_approval_without_payment_kept_with_its_signature(demo: Flask, db: Session) -> None:
    order = _order(db, by=US_SALES)  # sales may send, not collect
    (email_id,) = send(demo, db, find_user(db, US_SALES), order)
    token = emailed_token(db, email_id)
    assert not _open(demo, db, token).takes_payment

    result = approve(demo, db, token, signer_name="  Nora   Quist ", signature="Nora Q.")

    assert result.page.state == "done" and result.page.outcome == "approved"
    assert result.payment is None and not result.replay
    order = reload(db, order)
    assert order.status == "approved" and order.approval_nonce == ""
    assert (order.signer_name, order.signature_kind, order.signature) == (
        "Nora Quist",
        "typed",
        "Nora Q.",
    )
    assert order.signed_at == NOW and order.signer_address == ADDRESS
    assert history(db, order) == ["order.sent_for_approval", "order.approved_by_customer"]
    assert order_payments(db, order) == [] and processor_calls(demo, order) == []
    assert _open(demo, db, token).outcome == "approved"  # the link now shows the outcome


def test_does_an_approval_with_payment_activate_the_order_with_a_paid_invoice(
    demo: Flask, db: Session
) -> None:
    order = _order(db)
    (email_id,) = send(demo, db, find_user(db, US_ADMIN), order)
    token = emailed_token(db, email_id)

    result = approve(demo, db, token, card=new_card(demo))

    assert result.payment is not None and result.payment.approved
    assert result.page.outcome == "paid" and result.email_ids  # the receipt
    order = reload(db, order)
    assert order.status == "activated" and order.activated_on == TODAY
    assert (order.signer_name, order.signature_kind, order.signer_address) == (
        "Nora Quist",
        "typed",
        ADDRESS,
    )
    assert order.approval_nonce == "" and order.signed_at == NOW
    invoice = db.get(Invoice, order.invoice_id)
    assert invoice is not None and invoice.status == "paid" and invoice.amount_paid == 4500
    (payment,) = order_payments(db, order)
    assert (payment.status, payment.amount, payment.last4) == ("approved", 4500, "4242")
    assert result.page.payment is not None and result.page.payment.id == payment.id
    assert history(db, order)[:2] == ["order.sent_for_approval", "order.submitted"]
    assert "order.paid" in history(db, order)
    assert len(processor_calls(demo, order)) == 1


def test_does_a_declined_card_leave_the_order_declined_and_tagged(demo: Flask, db: Session) -> None:
    order = _order(db)
    (email_id,) = send(demo, db, find_user(db, US_ADMIN), order)
    token = emailed_token(db, email_id)

    result = approve(demo, db, token, card=new_card(demo, DECLINES))

    assert result.payment is not None and result.payment.status == "declined"
    assert result.page.outcome == "declined"
    order = reload(db, order)
    assert order.status == "declined" and DECLINED_TAG in order.tags and order.decline_reason
    assert order.signer_name == "Nora Quist"  # the approval itself is kept
    (payment,) = order_payments(db, order)
    assert payment.status == "declined"
    assert "order.payment_declined" in history(db, order)
    # The customer sees the outcome again; the partner follows up (convert to draft).
    assert _open(demo, db, token).outcome == "declined"


def test_is_a_link_used_once_without_payment(demo: Flask, db: Session) -> None:
    order = _order(db, by=US_SALES)
    (email_id,) = send(demo, db, find_user(db, US_SALES), order)
    token = emailed_token(db, email_id)
    approve(demo, db, token)

    again = approve(demo, db, token, signer_name="Somebody Else", now=NOW + timedelta(hours=1))

    assert again.replay and again.page.outcome == "approved"
    order = reload(db, order)
    assert order.signer_name == "Nora Quist" and order.signed_at == NOW
    assert history(db, order).count("order.approved_by_customer") == 1


def test_is_a_link_used_once_with_payment_and_charged_once(demo: Flask, db: Session) -> None:
    order = _order(db)
    (email_id,) = send(demo, db, find_user(db, US_ADMIN), order)
    token = emailed_token(db, email_id)
    first = approve(demo, db, token, card=new_card(demo), sequence=1)

    double_click = approve(demo, db, token, card=new_card(demo), sequence=1)
    other_tab = approve(demo, db, token, card=new_card(demo), sequence=2)

    assert first.payment is not None and first.payment.approved
    assert double_click.replay and other_tab.replay
    assert double_click.page.outcome == other_tab.page.outcome == "paid"
    assert len(order_payments(db, order)) == 1 and len(processor_calls(demo, order)) == 1
    assert reload(db, order).status == "activated"


def test_are_missing_fields_reported_by_field(demo: Flask, db: Session) -> None:
    order = _order(db)
    (email_id,) = send(demo, db, find_user(db, US_ADMIN), order)
    token = emailed_token(db, email_id)

    with pytest.raises(FieldErrors) as missing:
        approve(demo, db, token, signer_name=" ", signature="", card=None, sequence=1)
    assert set(missing.value.errors) == {"signer_name", "signature", "card"}
    with pytest.raises(FieldErrors) as long_name:
        approve(demo, db, token, signer_name="N" * 201, card=new_card(demo), sequence=1)
    assert set(long_name.value.errors) == {"signer_name"}
    with pytest.raises(FieldErrors) as odd_kind:
        approve(demo, db, token, kind="stamped", card=new_card(demo), sequence=1)
    assert set(odd_kind.value.errors) == {"signature_kind"}
    order = reload(db, order)
    assert order.status == "pending_approval" and order.approval_nonce and not order.signed_at
    assert processor_calls(demo, order) == []


# -- drawn signatures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signature", "problem"),
    [
        ("", "Draw your signature"),
        ("data:image/jpeg;base64,/9j/4AAQSkZJRg==", "must be a PNG"),
        ("data:image/png;base64,R0lGODlhAQABAAAAACw=", "must be a PNG"),  # a GIF inside
        ("data:image/png;base64,not base64!", "could not be read"),
        (png_data_url(200 * 1024 + 1), "too large"),
    ],
    ids=["empty", "jpeg", "gif bytes", "not base64", "over 200 KB"],
)
def test_is_a_bad_drawn_signature_refused(
    demo: Flask, db: Session, signature: str, problem: str
) -> None:
    order = _order(db, by=US_SALES)
    (email_id,) = send(demo, db, find_user(db, US_SALES), order)
    with pytest.raises(FieldErrors, match=problem) as refused:
        approve(demo, db, emailed_token(db, email_id), kind="drawn", signature=signature)
    assert set(refused.value.errors) == {"signature"}
    assert reload(db, order).status == "pending_approval"


def test_is_a_drawn_signature_kept_and_shown_only_to_the_partner(demo: Flask, db: Session) -> None:
    order = _order(db, by=US_SALES)
    sales = find_user(db, US_SALES)
    (email_id,) = send(demo, db, sales, order)
    drawing = png_data_url(200 * 1024)  # exactly the limit

    approve(demo, db, emailed_token(db, email_id), kind="drawn", signature=drawing)

    order = reload(db, order)
    assert order.signature_kind == "drawn" and order.signature == drawing
    png = order_approval.signature_png(db, sales, order.id)  # type: ignore[arg-type]
    assert png.startswith(PNG_MAGIC) and len(png) == 200 * 1024
    with pytest.raises(NotFound):
        order_approval.signature_png(db, find_user(db, DE_ADMIN), order.id)  # type: ignore[arg-type]


def test_is_there_no_signature_image_for_a_typed_signature(demo: Flask, db: Session) -> None:
    order = _order(db, by=US_SALES)
    sales = find_user(db, US_SALES)
    (email_id,) = send(demo, db, sales, order)
    approve(demo, db, emailed_token(db, email_id))
    with pytest.raises(NotFound):
        order_approval.signature_png(db, sales, order.id)  # type: ignore[arg-type]


# -- who may send -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "may_send", "may_collect", "sent", "takes_payment"),
    [
        (US_ADMIN, False, False, True, True),  # admins always
        (US_SALES, True, False, True, False),
        (US_SALES, True, True, True, True),
        (US_SALES, False, True, False, None),
        (US_SALES, False, False, False, None),
    ],
)
def test_who_may_send_and_whether_the_page_takes_payment(  # noqa: PLR0913
    demo: Flask,
    db: Session,
    email: str,
    may_send: bool,
    may_collect: bool,
    sent: bool,
    takes_payment: bool | None,
) -> None:
    order = _order(db, by=email)
    set_partner(
        db, order.partner_id, sales_send_for_approval=may_send, sales_collect_payment=may_collect
    )
    user = find_user(db, email)
    if not sent:
        with pytest.raises(Forbidden, match="Allow salespeople to send an order"):
            send(demo, db, user, order)
        assert reload(db, order).status == "draft" and approval_emails(db) == []
        return
    send(demo, db, user, order)
    order = reload(db, order)
    assert order.status == "pending_approval" and order.approval_takes_payment is takes_payment


def test_is_another_partners_order_not_found(demo: Flask, db: Session) -> None:
    order = _order(db)
    with pytest.raises(NotFound):
        send(demo, db, find_user(db, DE_ADMIN), order)
    assert reload(db, order).status == "draft" and approval_emails(db) == []
