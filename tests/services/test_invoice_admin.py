"""Invoices issued by hand and canceled: numbers, tax, validation, cancellation invoices."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.domain.errors import Conflict, NotFound
from app.models import AuditEvent, Invoice, InvoiceLine, InvoiceStatus, OutboxMessage, PayLink
from app.services import invoice_admin
from app.services.directory import account_overview
from app.services.invoice_forms import InvoiceInvalid
from tests.services.invoice_helpers import (
    DAY,
    NOW,
    Shop,
    fresh,
    invoice_form,
    issue,
    links,
    make_shop,
    pay_by_card,
)


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    with app.app_context(), Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def shop(app: Flask, db: Session) -> Shop:
    return make_shop(app, db, tax_bp=1900)


def lines_of(db: Session, invoice: Invoice) -> list[InvoiceLine]:
    return list(
        db.exec(
            select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id).order_by(InvoiceLine.id)
        ).all()
    )


# -- issuing -------------------------------------------------------------------------------


def test_are_invoices_issued_by_hand_numbered_consecutively(
    app: Flask, db: Session, shop: Shop
) -> None:
    numbers = [issue(app, db, shop).number for _ in range(3)]
    pid = shop.partner.id
    assert numbers == [f"INV-{pid:03d}-{n:06d}" for n in (1, 2, 3)]


def test_is_tax_computed_per_line_from_the_partner_rate(
    app: Flask, db: Session, shop: Shop
) -> None:
    # 19 % of 3 × 3.33 = 9.99 is 1.8981 → 1.90; of 0.05 is 0.0095 → 0.01 (half-up per line).
    invoice = issue(app, db, shop, ("Hours", "3", "3.33"), ("Stamp", "1", "0.05"))
    assert [(line.amount, line.tax_amount) for line in lines_of(db, invoice)] == [
        (999, 190),
        (5, 1),
    ]
    assert (invoice.subtotal, invoice.tax, invoice.total) == (1004, 191, 1195)
    assert (invoice.status, invoice.issue_date) == (InvoiceStatus.CREATED, DAY)


def test_does_the_accounts_own_tax_rate_win(app: Flask, db: Session, shop: Shop) -> None:
    shop.account.tax_rate_bp = 0
    db.add(shop.account)
    db.commit()
    invoice = issue(app, db, shop, ("Exempt work", "2", "50.00"))
    assert (invoice.tax, invoice.total) == (0, 10000)


def test_is_the_invoice_emailed_with_a_pay_link_in_the_same_commit(
    app: Flask, db: Session, shop: Shop
) -> None:
    issued = invoice_admin.issue_invoice(
        db, shop.admin, shop.account.id, invoice_form(("Consulting", "1", "100.00")),
        as_of=DAY, now=NOW, links=links(app),
    )  # fmt: skip
    [message] = db.exec(select(OutboxMessage)).all()
    assert issued.email_ids == [message.id]
    assert message.to_address == shop.account.email
    assert message.subject == f"Invoice {issued.invoice.number} from {shop.partner.name}"
    assert "$119.00" in message.text_body and "$119.00" in message.html_body
    link = db.exec(select(PayLink).where(PayLink.invoice_id == issued.invoice.id)).one()
    assert "http://localhost/pay/" in message.text_body and link.revoked_at is None


@pytest.mark.parametrize(
    ("lines", "dates", "field"),
    [
        ((), (0, 30), "lines"),
        ((("", "1", "10.00"),), (0, 30), "line-0-description"),
        ((("Work", "0", "10.00"),), (0, 30), "line-0-quantity"),
        ((("Work", "1.5", "10.00"),), (0, 30), "line-0-quantity"),
        ((("Work", "1", "ten"),), (0, 30), "line-0-unit_price"),
        ((("Work", "1", "-5.00"),), (0, 30), "line-0-unit_price"),
        ((("Work", "1", "10.001"),), (0, 30), "line-0-unit_price"),
        ((("Work", "1", "0"),), (0, 30), "lines"),
        ((("Work", "1", "10.00"),), (1, 30), "issue_date"),
        ((("Work", "1", "10.00"),), (0, -1), "due_date"),
    ],
)
def test_is_a_bad_invoice_form_refused_with_the_field_named(
    app: Flask, db: Session, shop: Shop, lines: tuple, dates: tuple[int, int], field: str
) -> None:
    from datetime import timedelta

    form = invoice_form(*lines, issue=DAY + timedelta(days=dates[0]), due_in=dates[1])
    with pytest.raises(InvoiceInvalid) as refused:
        invoice_admin.issue_invoice(
            db, shop.admin, shop.account.id, form, as_of=DAY, now=NOW, links=links(app)
        )
    assert field in refused.value.errors
    db.rollback()
    assert db.exec(select(Invoice)).all() == []


def test_are_all_bad_fields_reported_at_once(app: Flask, db: Session, shop: Shop) -> None:
    form = invoice_form(("", "x", "1,0"), ("Fine", "1", "1.00"), ("Also bad", "1", "abc"))
    with pytest.raises(InvoiceInvalid) as refused:
        invoice_admin.issue_invoice(
            db, shop.admin, shop.account.id, form, as_of=DAY, now=NOW, links=links(app)
        )
    assert set(refused.value.errors) == {
        "line-0-description",
        "line-0-quantity",
        "line-0-unit_price",
        "line-2-unit_price",
    }


def test_can_a_partner_issue_an_invoice_to_another_partners_customer(
    app: Flask, db: Session, shop: Shop
) -> None:
    other = make_shop(app, db, "other")
    with pytest.raises(NotFound):
        invoice_admin.issue_invoice(
            db, other.admin, shop.account.id, invoice_form(("Work", "1", "1.00")),
            as_of=DAY, now=NOW, links=links(app),
        )  # fmt: skip


# -- canceling -------------------------------------------------------------------------------


def test_does_canceling_issue_a_cancellation_invoice_with_negated_lines(
    app: Flask, db: Session, shop: Shop
) -> None:
    invoice = issue(app, db, shop, ("Hours", "3", "3.33"), ("Stamp", "1", "0.05"))
    cancellation = invoice_admin.cancel_invoice(db, shop.admin, invoice.id, as_of=DAY)

    original = fresh(db, Invoice, invoice.id)
    assert (original.status, original.next_dunning_on) == (InvoiceStatus.CANCELED, None)
    assert cancellation.status == InvoiceStatus.CANCELLATION
    assert cancellation.cancels_invoice_id == invoice.id
    assert cancellation.number == f"CN-{shop.partner.id:03d}-000001"
    assert (cancellation.subtotal, cancellation.tax, cancellation.total) == (-1004, -191, -1195)
    assert cancellation.next_dunning_on is None
    assert [
        (line.description, line.quantity, line.unit_amount, line.amount, line.tax_amount)
        for line in lines_of(db, cancellation)
    ] == [("Hours", 3, -333, -999, -190), ("Stamp", 1, -5, -5, -1)]
    assert invoice_admin.cancellation_of(db, original).id == cancellation.id
    events = db.exec(select(AuditEvent.action, AuditEvent.actor_user_id)).all()
    assert sorted(events) == [
        ("invoice.canceled", shop.admin.id),
        ("invoice.issued", shop.admin.id),
    ]


def test_does_the_account_balance_stay_right_after_a_cancel(
    app: Flask, db: Session, shop: Shop
) -> None:
    kept = issue(app, db, shop, ("Kept", "1", "10.00"))
    dropped = issue(app, db, shop, ("Dropped", "1", "25.00"))
    assert account_overview(db, shop.admin, shop.account.id).balance_due == 1190 + 2975
    invoice_admin.cancel_invoice(db, shop.admin, dropped.id, as_of=DAY)
    overview = account_overview(db, shop.admin, shop.account.id)
    assert overview.balance_due == kept.total
    canceled_pair = [i for i in overview.invoices if i.id != kept.id]
    assert sum(i.total for i in canceled_pair) == 0  # canceled + cancellation net to zero


def test_is_numbering_of_the_cancellation_series_its_own_and_gapless(
    app: Flask, db: Session, shop: Shop
) -> None:
    invoices = [issue(app, db, shop) for _ in range(3)]
    cancellations = [
        invoice_admin.cancel_invoice(db, shop.admin, inv.id, as_of=DAY) for inv in invoices[:2]
    ]
    pid = shop.partner.id
    assert [c.number for c in cancellations] == [f"CN-{pid:03d}-000001", f"CN-{pid:03d}-000002"]
    assert issue(app, db, shop).number == f"INV-{pid:03d}-000004"


def test_is_canceling_twice_refused(app: Flask, db: Session, shop: Shop) -> None:
    invoice = issue(app, db, shop)
    cancellation = invoice_admin.cancel_invoice(db, shop.admin, invoice.id, as_of=DAY)
    with pytest.raises(Conflict, match="already canceled"):
        invoice_admin.cancel_invoice(db, shop.admin, invoice.id, as_of=DAY)
    with pytest.raises(Conflict, match="cancellation invoice cannot"):
        invoice_admin.cancel_invoice(db, shop.admin, cancellation.id, as_of=DAY)
    assert len(db.exec(select(Invoice).where(Invoice.series == "CN")).all()) == 1


@pytest.mark.parametrize("amount", [500, 11900], ids=["partly paid", "paid"])
def test_is_canceling_a_paid_invoice_refused_until_refunded(
    app: Flask, db: Session, shop: Shop, amount: int
) -> None:
    invoice = issue(app, db, shop)
    pay_by_card(app, db, shop, invoice, amount)
    with pytest.raises(Conflict, match="Refund the payments first."):
        invoice_admin.cancel_invoice(db, shop.admin, invoice.id, as_of=DAY)
    assert fresh(db, Invoice, invoice.id).status != InvoiceStatus.CANCELED
    assert db.exec(select(Invoice).where(Invoice.series == "CN")).all() == []


def test_can_another_partner_cancel_an_invoice(app: Flask, db: Session, shop: Shop) -> None:
    invoice = issue(app, db, shop)
    other = make_shop(app, db, "other")
    with pytest.raises(NotFound):
        invoice_admin.cancel_invoice(db, other.admin, invoice.id, as_of=DAY)


def _at_once(app: Flask, engine: Engine, calls: list) -> tuple[list, list[BaseException]]:
    barrier = threading.Barrier(len(calls))
    results: list = []
    errors: list[BaseException] = []

    def run(call) -> None:  # noqa: ANN001
        try:
            with app.app_context(), Session(engine, expire_on_commit=False) as session:
                barrier.wait(timeout=30)
                results.append(call(session))
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


def test_do_simultaneous_cancels_of_two_invoices_get_distinct_numbers(
    app: Flask, engine: Engine, db: Session, shop: Shop
) -> None:
    invoices = [issue(app, db, shop) for _ in range(4)]
    calls = [
        lambda s, i=inv.id: invoice_admin.cancel_invoice(s, shop.admin, i, as_of=DAY).number
        for inv in invoices
    ]
    numbers, errors = _at_once(app, engine, calls)
    assert errors == []
    pid = shop.partner.id
    assert sorted(numbers) == [f"CN-{pid:03d}-{n:06d}" for n in (1, 2, 3, 4)]


def test_do_simultaneous_cancels_of_one_invoice_issue_one_cancellation(
    app: Flask, engine: Engine, db: Session, shop: Shop
) -> None:
    invoice = issue(app, db, shop)
    calls = [lambda s: invoice_admin.cancel_invoice(s, shop.admin, invoice.id, as_of=DAY)] * 3
    results, errors = _at_once(app, engine, calls)
    assert len(results) == 1
    assert len(errors) == 2 and all(isinstance(e, Conflict) for e in errors), errors
    db.rollback()
    cn = db.exec(select(Invoice).where(col(Invoice.cancels_invoice_id) == invoice.id)).all()
    assert len(cn) == 1
