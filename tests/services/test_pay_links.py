"""Invoice pay links: their states, regeneration, paying in full or in part, exactly once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from app.domain.errors import InvalidInput, NotFound
from app.models import (
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    OutboxMessage,
    PayLink,
    Payment,
    PaymentStatus,
    User,
)
from app.services import pay_links
from app.services.card_testing import DeclineLimit
from app.services.form_tokens import FormToken
from app.services.receipts import PaymentOutcome
from tests.services.payer_helpers import (
    ADDRESS,
    NOW,
    card,
    charges_for,
    new_form,
    partner,
    sandbox,
    secret,
)

BILLING = "accounts@rivera-family.example"


@pytest.fixture
def ctx(demo: Flask) -> Iterator[Flask]:
    with demo.app_context():
        yield demo


@pytest.fixture
def db(ctx: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def invoice(db: Session) -> Invoice:
    """The demo's open $40.00 workshop invoice, billed to its own address."""
    found = db.exec(
        select(Invoice)
        .join(InvoiceLine, InvoiceLine.invoice_id == Invoice.id)
        .where(InvoiceLine.description == "Workshop series fee")
    ).one()
    found.billing_email = BILLING
    db.add(found)
    db.commit()
    assert found.status == InvoiceStatus.CREATED and found.total == 4000
    return found


def issue(db: Session, invoice: Invoice) -> PayLink:
    us = partner(db, "us-partner")
    return pay_links.issue_link(db, invoice=invoice, partner=us, now=NOW, user_id=None)


def user(db: Session, email: str) -> User:
    return db.exec(select(User).where(User.email == email)).one()


def view_of(app: Flask, db: Session, link: PayLink, *, now: datetime = NOW) -> pay_links.LinkView:
    db.rollback()
    db.expire_all()  # read the link as a new request would
    return pay_links.open_link(db, secret(app), pay_links.token_for(secret(app), link), now=now)


def pay(
    app: Flask, db: Session, view: pay_links.LinkView, amount: int, *, form: FormToken | None = None
) -> PaymentOutcome:
    return pay_links.pay_invoice(
        db, sandbox(app), view=view, form=form or new_form(app, f"paylink:{view.link.id}"),
        amount=amount, method=card(sandbox(app)), payer_email=BILLING, client_address=ADDRESS,
        now=NOW, limit=DeclineLimit(),
    )  # fmt: skip


# -- link states -----------------------------------------------------------------------


def test_does_a_fresh_link_open_as_payable(ctx: Flask, db: Session, invoice: Invoice) -> None:
    link = issue(db, invoice)

    view = view_of(ctx, db, link)

    assert view.state == "payable"
    assert view.invoice.id == invoice.id and view.account.email == "customer@example.com"
    assert link.expires_at == NOW + timedelta(days=30)


def test_does_a_link_past_its_expiry_say_expired(ctx: Flask, db: Session, invoice: Invoice) -> None:
    link = issue(db, invoice)

    just_before = view_of(ctx, db, link, now=link.expires_at - timedelta(seconds=1))
    after = view_of(ctx, db, link, now=link.expires_at + timedelta(seconds=1))

    assert (just_before.state, after.state) == ("payable", "expired")


def test_does_regenerating_a_link_revoke_the_old_one(
    ctx: Flask, db: Session, invoice: Invoice
) -> None:
    old = issue(db, invoice)

    new = pay_links.regenerate_link(
        db,
        user(db, "admin@us-partner.example"),
        invoice.id,
        now=NOW + timedelta(hours=1),
    )

    assert new.id != old.id
    assert view_of(ctx, db, old).state == "revoked"
    assert view_of(ctx, db, new).state == "payable"


def test_can_another_partners_user_regenerate_a_link(
    ctx: Flask, db: Session, invoice: Invoice
) -> None:
    link = issue(db, invoice)

    with pytest.raises(NotFound):
        pay_links.regenerate_link(db, user(db, "admin@de-partner.example"), invoice.id, now=NOW)

    assert view_of(ctx, db, link).state == "payable"
    assert db.exec(select(func.count()).select_from(PayLink)).one() == 1


def test_is_a_tampered_link_token_refused(ctx: Flask, db: Session, invoice: Invoice) -> None:
    token = pay_links.token_for(secret(ctx), issue(db, invoice))
    forged = pay_links.token_for("someone-elses-secret", issue(db, invoice))
    body, signature = token.rsplit(".", 1)
    altered = body + "." + ("A" if signature[0] != "A" else "B") + signature[1:]

    for bad in (altered, forged, token[:-4], "not-a-token"):
        with pytest.raises(pay_links.LinkInvalid) as caught:
            pay_links.open_link(db, secret(ctx), bad, now=NOW)
        assert caught.value.status_code == 404


# -- paying ----------------------------------------------------------------------------


def test_does_paying_in_full_mark_the_invoice_paid(
    ctx: Flask, db: Session, invoice: Invoice
) -> None:
    link = issue(db, invoice)
    form = new_form(ctx, f"paylink:{link.id}")

    outcome = pay(ctx, db, view_of(ctx, db, link), 4000, form=form)

    assert outcome.approved
    db.refresh(invoice)
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.amount_paid == invoice.total == 4000
    assert outcome.receipt is not None
    assert (outcome.receipt.invoice_number, outcome.receipt.balance_after) == (invoice.number, 0)
    receipt = db.exec(
        select(OutboxMessage).where(col(OutboxMessage.id).in_(outcome.email_ids))
    ).one()
    assert (receipt.kind, receipt.to_address) == ("receipt", BILLING)
    assert len(charges_for(sandbox(ctx), form)) == 1
    paid = view_of(ctx, db, link)
    assert paid.state == "paid"
    assert paid.last_payment is not None and paid.last_payment.id == outcome.attempt_id


def test_is_a_partial_payment_refused_when_the_partner_does_not_allow_it(
    ctx: Flask, db: Session, invoice: Invoice
) -> None:
    view = view_of(ctx, db, issue(db, invoice))

    with pytest.raises(InvalidInput) as caught:
        pay_links.parse_invoice_amount(view, "10.00")

    assert caught.value.field == "amount"
    assert caught.value.message == "This invoice must be paid in full ($40.00)."
    assert pay_links.parse_invoice_amount(view, "") == 4000
    assert pay_links.parse_invoice_amount(view, "40.00") == 4000


def test_does_a_partial_payment_leave_the_rest_due(
    ctx: Flask, db: Session, invoice: Invoice
) -> None:
    us = partner(db, "us-partner")
    us.allow_partial_payments = True
    db.add(us)
    db.commit()
    link = issue(db, invoice)
    view = view_of(ctx, db, link)

    outcome = pay(ctx, db, view, pay_links.parse_invoice_amount(view, "10.00"))

    assert outcome.approved
    db.refresh(invoice)
    assert invoice.status == InvoiceStatus.CREATED
    assert (invoice.amount_paid, invoice.balance) == (1000, 3000)
    assert outcome.receipt is not None and outcome.receipt.balance_after == 3000
    assert view_of(ctx, db, link).state == "payable"


def test_is_an_overpayment_refused_without_a_charge(
    ctx: Flask, db: Session, invoice: Invoice
) -> None:
    view = view_of(ctx, db, issue(db, invoice))
    charges = len(sandbox(ctx).list_charges())

    with pytest.raises(InvalidInput) as parsed:
        pay_links.parse_invoice_amount(view, "40.01")
    with pytest.raises(InvalidInput) as charged:
        pay(ctx, db, view, 4001)

    assert parsed.value.message == "That is more than the $40.00 due. Enter the amount due or less."
    assert "more than is still due" in charged.value.message
    assert len(sandbox(ctx).list_charges()) == charges
    assert db.exec(select(Payment).where(Payment.invoice_id == invoice.id)).all() == []
    db.refresh(invoice)
    assert (invoice.status, invoice.amount_paid) == (InvoiceStatus.CREATED, 0)


def test_do_two_forms_paying_one_invoice_at_once_charge_once(
    ctx: Flask, engine: Engine, db: Session, invoice: Invoice
) -> None:
    link = issue(db, invoice)
    forms = [new_form(ctx, f"paylink:{link.id}") for _ in range(2)]
    barrier = threading.Barrier(len(forms))
    outcomes: list[PaymentOutcome] = []
    refusals: list[InvalidInput] = []
    failures: list[BaseException] = []

    def submit(form: FormToken) -> None:
        try:
            with ctx.app_context(), Session(engine, expire_on_commit=False) as session:
                view = view_of(ctx, session, link)
                barrier.wait(timeout=30)
                outcomes.append(pay(ctx, session, view, 4000, form=form))
        except InvalidInput as exc:
            refusals.append(exc)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=submit, args=(form,)) for form in forms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    assert [o.status for o in outcomes] == [PaymentStatus.APPROVED]
    assert len(refusals) == 1
    assert sum(len(charges_for(sandbox(ctx), form)) for form in forms) == 1
    db.refresh(invoice)
    assert (invoice.status, invoice.amount_paid) == (InvoiceStatus.PAID, 4000)


# -- a new link by email ---------------------------------------------------------------


def test_does_an_expired_link_email_a_new_one_once_an_hour(
    ctx: Flask, db: Session, invoice: Invoice
) -> None:
    old = issue(db, invoice)
    later = old.expires_at + timedelta(days=1)
    expired = view_of(ctx, db, old, now=later)
    assert expired.state == "expired"

    sent = pay_links.send_new_link(
        db, expired, secret=secret(ctx), base_url="https://portico.example", now=later
    )
    again = pay_links.send_new_link(
        db, expired, secret=secret(ctx), base_url="https://portico.example", now=later
    )

    assert sent is not None and again is None
    message = db.get(OutboxMessage, sent)
    assert message is not None and message.to_address == BILLING
    new = db.exec(select(PayLink).where(col(PayLink.revoked_at).is_(None))).one()
    assert (
        f"https://portico.example/pay/{pay_links.token_for(secret(ctx), new)}" in message.text_body
    )
    assert view_of(ctx, db, new, now=later).state == "payable"
    assert view_of(ctx, db, old, now=later).state == "revoked"
    assert db.exec(select(func.count()).select_from(PayLink)).one() == 2
    next_hour = later + timedelta(hours=1)
    assert pay_links.send_new_link(
        db, expired, secret=secret(ctx), base_url="https://portico.example", now=next_hour
    )


def test_does_paying_the_last_overdue_invoice_by_link_restore_service(
    ctx: Flask, db: Session, invoice: Invoice
) -> None:
    from app.models import CustomerAccount
    from app.services.service_stop import stop_service

    others = db.exec(
        select(Invoice).where(
            Invoice.customer_account_id == invoice.customer_account_id, Invoice.id != invoice.id
        )
    ).all()
    for other in others:  # leave this invoice as the account's only unpaid one
        other.amount_paid = other.total
        other.status = InvoiceStatus.PAID
        db.add(other)
    stop_service(db, invoice.customer_account_id, invoice=invoice, days=35, as_of=NOW.date())
    db.commit()

    outcome = pay(ctx, db, view_of(ctx, db, issue(db, invoice)), 4000)

    assert outcome.approved
    account = db.get(CustomerAccount, invoice.customer_account_id)
    assert account is not None
    db.refresh(account)
    assert account.status == "active" and account.service_stopped_on is None
    restored = db.exec(select(OutboxMessage).where(OutboxMessage.kind == "service_restored")).all()
    assert {m.id for m in restored} <= set(outcome.email_ids) and restored
