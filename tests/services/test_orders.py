"""The order builder's services: drafts, lines and their checks, totals with per-line
half-up tax, only drafts editable, the order list, tenant isolation, the order page's
actions, and the admins' order settings. Real database, sandbox processor."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.domain.errors import Conflict, NotFound
from app.domain.orders import OrderStatus
from app.models import AuditEvent, CustomerAccount, Order, OrderLine, Partner, Product, Role, User
from app.services import order_settings as settings_service
from app.services.order_access import PAYMENT_SETTING, SEND_SETTING
from app.services.order_detail import NO_LINES, order_detail
from app.services.order_forms import LineRow, LinesForm, LinesInvalid
from app.services.order_settings import OrderSettingsForm, OrderSettingsInvalid
from app.services.orders import (
    create_order,
    lines_preview,
    list_orders,
    products_for_sale,
    save_lines,
)
from tests.services.billing_helpers import make_customer, make_partner, partner_admin, sandbox

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TODAY = date(2026, 3, 2)


@dataclass
class Shop:
    partner: Partner
    admin: User
    sales: User
    account: CustomerAccount


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _shop(app: Flask, db: Session, slug: str, *, tax_bp: int = 0, currency: str = "USD") -> Shop:
    partner = make_partner(db, slug)
    partner.tax_rate_bp, partner.currency = tax_bp, currency
    sales = User(
        email=f"sales@{slug}.example",
        name="Sam Sales",
        password_hash="not-a-real-hash",
        role=Role.PARTNER_SALES,
        partner_id=partner.id,
    )
    db.add_all([partner, sales])
    db.commit()
    account, _ = make_customer(db, sandbox(app), partner, f"Casey {slug.title()}")
    return Shop(partner, partner_admin(db, partner), sales, account)


@pytest.fixture
def shop(app: Flask, db: Session) -> Shop:
    return _shop(app, db, "harbor")


def _product(db: Session, shop: Shop, name: str, amount: int, frequency: str | None) -> Product:
    product = Product(
        partner_id=shop.partner.id,  # type: ignore[arg-type]
        name=name,
        unit_amount=amount,
        currency=shop.account.currency,
        frequency=frequency,
    )
    db.add(product)
    db.commit()
    return product


def _form(*rows: LineRow) -> LinesForm:
    return LinesForm(tuple(rows))


def _row(
    description: str = "Setup", quantity: str = "1", price: str = "10.00", **kw: str
) -> LineRow:
    return LineRow(
        description=description,
        quantity=quantity,
        unit_price=price,
        activation_date=kw.pop("activation_date", TODAY.isoformat()),
        **kw,
    )


def _lines(db: Session, order: Order) -> list[OrderLine]:
    db.rollback()
    return list(db.exec(select(OrderLine).where(OrderLine.order_id == order.id)).all())


def test_does_a_new_order_start_as_a_numbered_draft_in_the_accounts_currency(
    db: Session, shop: Shop
) -> None:
    first = create_order(db, shop.sales, shop.account.id, now=NOW)  # type: ignore[arg-type]
    second = create_order(db, shop.admin, shop.account.id, now=NOW)  # type: ignore[arg-type]

    assert first.status == OrderStatus.DRAFT
    assert (first.sequence, second.sequence) == (1, 2)
    assert first.number.startswith("SO-") and first.number != second.number
    assert first.currency == shop.account.currency
    event = db.exec(
        select(AuditEvent).where(
            AuditEvent.subject_type == "order", AuditEvent.subject_id == first.id
        )
    ).one()
    assert (event.action, event.actor_user_id) == ("order.created", shop.sales.id)


def test_can_a_partner_open_an_order_for_another_partners_customer(
    app: Flask, db: Session, shop: Shop
) -> None:
    other = _shop(app, db, "rival")

    with pytest.raises(NotFound):
        create_order(db, shop.admin, other.account.id, now=NOW)  # type: ignore[arg-type]
    assert db.exec(select(Order)).all() == []


def test_does_saving_lines_report_every_bad_field_and_write_nothing(
    db: Session, shop: Shop
) -> None:
    order = create_order(db, shop.admin, shop.account.id, now=NOW)  # type: ignore[arg-type]
    save_lines(db, shop.admin, order.id, _form(_row()), now=NOW, as_of=TODAY)  # type: ignore[arg-type]
    bad = _form(
        LineRow(
            product="999999",
            description="x" * 301,
            quantity="0",
            unit_price="12.345",
            activation_date=(TODAY - timedelta(days=1)).isoformat(),
        ),
        LineRow(
            description="",
            quantity="two",
            unit_price="-5",
            activation_date="someday",
            frequency="hourly",
        ),  # fmt: skip
    )

    with pytest.raises(LinesInvalid) as caught:
        save_lines(db, shop.admin, order.id, bad, now=NOW, as_of=TODAY)  # type: ignore[arg-type]

    assert set(caught.value.errors) == {
        "line-0-product",
        "line-0-description",
        "line-0-quantity",
        "line-0-unit_price",
        "line-0-activation_date",
        "line-1-description",
        "line-1-quantity",
        "line-1-unit_price",
        "line-1-activation_date",
        "line-1-frequency",
    }
    assert "March 2, 2026 or later" in caught.value.errors["line-0-activation_date"]
    lines = _lines(db, order)
    assert [(line.description, line.unit_amount) for line in lines] == [("Setup", 1000)]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (_form(LineRow(activation_date=TODAY.isoformat())), "Add at least one line."),
        (_form(_row(price="0")), "The order total must be above zero."),
    ],
)
def test_is_an_order_without_a_priced_line_refused(
    db: Session, shop: Shop, form: LinesForm, message: str
) -> None:
    order = create_order(db, shop.admin, shop.account.id, now=NOW)  # type: ignore[arg-type]

    with pytest.raises(LinesInvalid) as caught:
        save_lines(db, shop.admin, order.id, form, now=NOW, as_of=TODAY)  # type: ignore[arg-type]

    assert caught.value.errors == {"lines": message}


def test_is_tax_computed_per_line_half_up_and_the_earliest_date_the_activation_date(
    app: Flask, db: Session
) -> None:
    shop = _shop(app, db, "rhein", tax_bp=1900, currency="EUR")
    order = create_order(db, shop.admin, shop.account.id, now=NOW)  # type: ignore[arg-type]
    later = (TODAY + timedelta(days=10)).isoformat()
    form = _form(
        _row("Workshop", "1", "1.50", activation_date=later),  # tax 0.285 → 0.29
        _row("Room", "1", "2.50", frequency="monthly"),  # tax 0.475 → 0.48
    )

    preview = lines_preview(db, shop.admin, order.id, form, as_of=TODAY)  # type: ignore[arg-type]
    saved = save_lines(db, shop.admin, order.id, form, now=NOW, as_of=TODAY)  # type: ignore[arg-type]

    assert (preview.subtotal, preview.tax, preview.total) == (400, 77, 477)  # not 76 on 400
    assert (saved.subtotal, saved.tax, saved.total) == (400, 77, 477)
    assert saved.activation_date == TODAY
    lines = sorted(_lines(db, order), key=lambda line: line.position)
    assert [(line.amount, line.tax_amount, line.tax_rate_bp) for line in lines] == [
        (150, 29, 1900),
        (250, 48, 1900),
    ]
    assert [line.frequency for line in lines] == ["once", "monthly"]


def test_does_a_product_line_take_the_products_name_price_and_frequency(
    db: Session, shop: Shop
) -> None:
    monthly = _product(db, shop, "Studio membership", 2500, "monthly")
    retired = _product(db, shop, "Retired plan", 100, None)
    retired.active = False
    db.add(retired)
    db.commit()
    order = create_order(db, shop.admin, shop.account.id, now=NOW)  # type: ignore[arg-type]
    row = LineRow(product=str(monthly.id), quantity="2", activation_date=TODAY.isoformat(),
                  frequency="once")  # fmt: skip

    saved = save_lines(db, shop.admin, order.id, _form(row), now=NOW, as_of=TODAY)  # type: ignore[arg-type]

    line = _lines(db, order)[0]
    assert (line.description, line.unit_amount, line.frequency) == (
        "Studio membership",
        2500,
        "monthly",
    )
    assert (line.product_id, saved.total) == (monthly.id, 5000)
    assert [p.name for p in products_for_sale(db, shop.sales)] == ["Studio membership"]
    retired_row = LineRow(product=str(retired.id), activation_date=TODAY.isoformat())
    with pytest.raises(LinesInvalid) as caught:
        save_lines(db, shop.admin, order.id, _form(retired_row), now=NOW, as_of=TODAY)  # type: ignore[arg-type]
    assert set(caught.value.errors) == {"line-0-product", "line-0-description", "line-0-unit_price"}


def test_does_the_preview_save_nothing(db: Session, shop: Shop) -> None:
    order = create_order(db, shop.admin, shop.account.id, now=NOW)  # type: ignore[arg-type]
    form = _form(_row("A", "3", "2.00"), _row("", "1", "oops"))

    totals = lines_preview(db, shop.admin, order.id, form, as_of=TODAY)  # type: ignore[arg-type]

    assert totals.line_amounts == (600, None)
    assert (totals.subtotal, totals.total) == (600, 600)
    assert _lines(db, order) == []


@pytest.mark.parametrize("status", [s for s in OrderStatus if s != OrderStatus.DRAFT])
def test_can_only_a_draft_orders_lines_change(db: Session, shop: Shop, status: OrderStatus) -> None:
    order = create_order(db, shop.admin, shop.account.id, now=NOW)  # type: ignore[arg-type]
    save_lines(db, shop.admin, order.id, _form(_row()), now=NOW, as_of=TODAY)  # type: ignore[arg-type]
    order.status = status
    db.add(order)
    db.commit()

    with pytest.raises(Conflict) as caught:
        save_lines(db, shop.admin, order.id, _form(_row("New", "5")), now=NOW, as_of=TODAY)  # type: ignore[arg-type]

    assert "Only a draft order can be changed" in caught.value.message
    assert [line.description for line in _lines(db, order)] == ["Setup"]
    assert db.get(Order, order.id, populate_existing=True).total == 1000  # type: ignore[union-attr]


def test_does_another_partners_order_answer_not_found_everywhere(
    app: Flask, db: Session, shop: Shop
) -> None:
    other = _shop(app, db, "rival")
    theirs = create_order(db, other.admin, other.account.id, now=NOW)  # type: ignore[arg-type]
    oid: int = theirs.id  # type: ignore[assignment]

    for call in (
        lambda: save_lines(db, shop.admin, oid, _form(_row()), now=NOW, as_of=TODAY),
        lambda: lines_preview(db, shop.sales, oid, _form(_row()), as_of=TODAY),
        lambda: order_detail(db, shop.sales, oid, as_of=TODAY),
    ):
        with pytest.raises(NotFound):
            call()
    assert list_orders(db, shop.admin).total == 0
    assert _lines(db, theirs) == []


def test_does_the_order_list_filter_by_status_page_and_stay_in_its_tenant(
    app: Flask, db: Session, shop: Shop
) -> None:
    other = _shop(app, db, "rival")
    create_order(db, other.admin, other.account.id, now=NOW)  # type: ignore[arg-type]
    made = [create_order(db, shop.admin, shop.account.id, now=NOW) for _ in range(3)]  # type: ignore[arg-type]
    made[0].status = OrderStatus.CANCELED
    db.add(made[0])
    db.commit()

    everything = list_orders(db, shop.sales, per_page=2)
    second = list_orders(db, shop.sales, per_page=2, page=2)
    canceled = list_orders(db, shop.sales, status="canceled")
    unknown = list_orders(db, shop.sales, status="bogus")

    assert (everything.total, everything.pages, len(everything.rows)) == (3, 2, 2)
    assert [r.order.id for r in everything.rows + second.rows] == [o.id for o in reversed(made)]
    assert [r.order.id for r in canceled.rows] == [made[0].id]
    assert unknown.total == 3
    assert {r.customer_name for r in everything.rows} == {shop.account.name}


def test_does_the_order_page_say_why_a_salesperson_may_not_collect_or_send(
    db: Session, shop: Shop
) -> None:
    order = create_order(db, shop.sales, shop.account.id, now=NOW)  # type: ignore[arg-type]
    shop.partner.sales_collect_payment = False
    shop.partner.sales_send_for_approval = False
    db.add(shop.partner)
    db.commit()

    empty = order_detail(db, shop.admin, order.id, as_of=TODAY)  # type: ignore[arg-type]
    save_lines(db, shop.sales, order.id, _form(_row()), now=NOW, as_of=TODAY)  # type: ignore[arg-type]
    sales = order_detail(db, shop.sales, order.id, as_of=TODAY)  # type: ignore[arg-type]
    admin = order_detail(db, shop.admin, order.id, as_of=TODAY)  # type: ignore[arg-type]

    assert empty.actions["submit"].reason == NO_LINES
    assert PAYMENT_SETTING in sales.actions["submit"].reason
    assert SEND_SETTING in sales.actions["send"].reason
    assert admin.actions["submit"].allowed and admin.actions["send"].allowed
    assert not admin.actions["capture"].shown and admin.actions["cancel"].shown
    assert [row.method.last4 for row in admin.cards] == ["4242"]
    assert admin.default_card_id == admin.cards[0].method.id
    assert [entry.text for entry in admin.history] == [
        "Created the order",
        "Changed the order's lines",
    ]
    assert admin.history[1].details == ["1 line", "Total: $10.00"]


def test_may_only_an_admin_change_the_order_settings(db: Session, shop: Shop) -> None:
    form = OrderSettingsForm(False, True, "30", "10")

    with pytest.raises(NotFound):
        settings_service.update_order_settings(db, shop.sales, form)
    with pytest.raises(NotFound):
        settings_service.order_settings(db, shop.sales)
    saved = settings_service.update_order_settings(db, shop.admin, form)

    assert (saved.sales_send_for_approval, saved.sales_collect_payment) == (False, True)
    assert (saved.approval_link_days, saved.authorization_days) == (30, 10)
    assert settings_service.order_settings(db, shop.admin) == form
    audit = db.exec(
        select(AuditEvent).where(AuditEvent.action == "partner.order_settings_updated")
    ).one()
    assert audit.actor_user_id == shop.admin.id


@pytest.mark.parametrize(
    ("link_days", "hold_days", "bad"),
    [
        ("0", "7", {"approval_link_days"}),
        ("61", "31", {"approval_link_days", "authorization_days"}),
        ("14", "0", {"authorization_days"}),
        ("two", "", {"approval_link_days", "authorization_days"}),
        ("1.5", "-1", {"approval_link_days", "authorization_days"}),
    ],
)
def test_are_order_settings_days_checked_field_by_field(
    db: Session, shop: Shop, link_days: str, hold_days: str, bad: set[str]
) -> None:
    with pytest.raises(OrderSettingsInvalid) as caught:
        settings_service.update_order_settings(
            db, shop.admin, OrderSettingsForm(False, True, link_days, hold_days)
        )

    assert set(caught.value.errors) == bad
    db.rollback()
    partner = db.get(Partner, shop.partner.id, populate_existing=True)
    assert partner is not None
    assert (partner.sales_send_for_approval, partner.approval_link_days) == (True, 14)
    assert db.exec(select(AuditEvent).where(col(AuditEvent.subject_type) == "partner")).all() == []
