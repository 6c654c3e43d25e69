"""Billing on behalf: the wizard's draft, every validation rule, and the atomic confirm."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.domain.errors import Conflict, NotFound
from app.models import AuditEvent, CustomerAccount, OnBehalfDraft, Partner, Subscription, User
from app.services import on_behalf as service
from app.services.invoices import LineInput, add_invoice

US = ("US",)
TODAY = date(2026, 11, 21)
NEXT_MONTH = date(2026, 12, 1)
NOW = datetime(2026, 11, 21, 15, tzinfo=UTC)


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def user(db: Session, email: str) -> User:
    return db.exec(select(User).where(User.email == email)).one()


def jordan(db: Session) -> CustomerAccount:
    db.rollback()
    return db.exec(
        select(CustomerAccount).where(CustomerAccount.email == "customer@example.com")
    ).one()


def subs(db: Session, account: CustomerAccount) -> list[Subscription]:
    return service.changeable_subscriptions(db, account.id)  # type: ignore[arg-type]


def wizard(db: Session, email: str = "admin@us-partner.example") -> tuple[User, OnBehalfDraft]:
    admin = user(db, email)
    _account, draft = service.open_wizard(db, admin, jordan(db).id, countries=US)  # type: ignore[arg-type]
    return admin, draft


def test_is_the_earliest_start_the_first_day_of_next_month() -> None:
    assert service.earliest_start(date(2026, 11, 21)) == date(2026, 12, 1)
    assert service.earliest_start(date(2026, 12, 1)) == date(2027, 1, 1)
    assert service.earliest_start(date(2027, 1, 31)) == date(2027, 2, 1)


def test_does_each_step_refuse_bad_input_naming_the_field(db: Session) -> None:
    _admin, draft = wizard(db)
    with pytest.raises(service.StepInvalid) as bad:
        service.save_start(db, draft, start_text="2026-11-30", email_text="nope", as_of=TODAY)
    assert bad.value.errors == {
        "start_date": "Choose December 1, 2026 or later.",
        "billing_email": "Enter a billing email such as billing@example.com.",
    }
    with pytest.raises(service.StepInvalid) as malformed:
        service.save_start(db, draft, start_text="1/12/2026", email_text="a@b.example", as_of=TODAY)
    assert set(malformed.value.errors) == {"start_date"}
    assert draft.version == 0  # nothing saved

    service.save_start(db, draft, start_text="2026-12-01", email_text=" ap@x.example ", as_of=TODAY)
    with pytest.raises(service.StepInvalid) as none_chosen:
        service.save_choice(db, draft, wants_changes=True, chosen=[])
    assert none_chosen.value.errors == {
        "subscriptions": "Choose at least one subscription to change."
    }

    first = subs(db, jordan(db))[0]
    service.save_choice(db, draft, wants_changes=True, chosen=[first.id])  # type: ignore[list-item]
    for price, message in (("-5", "negative"), ("abc", ""), ("0", "")):
        with pytest.raises(service.StepInvalid) as bad_price:
            service.save_step(db, draft, 1, start_text="2027-01-01", price_text=price, as_of=TODAY)
        assert set(bad_price.value.errors) == {"price"}
        assert message in bad_price.value.errors["price"].lower()
    with pytest.raises(service.StepInvalid) as early:
        service.save_step(db, draft, 1, start_text="2026-11-25", price_text="30", as_of=TODAY)
    assert set(early.value.errors) == {"start_date"}
    with pytest.raises(NotFound):
        service.save_step(db, draft, 2, start_text="2027-01-01", price_text="30", as_of=TODAY)


def test_does_confirm_apply_start_dates_and_prices_and_move_the_next_charges(db: Session) -> None:
    admin, draft = wizard(db)
    first, second, third = subs(db, jordan(db))[:3]
    service.save_start(db, draft, start_text="2026-12-01", email_text="ap@x.example", as_of=TODAY)
    service.save_choice(db, draft, wants_changes=True, chosen=[third.id, first.id])  # type: ignore[list-item]
    assert draft.chosen == [first.id, third.id]  # in the account's order
    service.save_step(db, draft, 1, start_text="2027-01-15", price_text="31.50", as_of=TODAY)
    service.save_step(db, draft, 2, start_text="2026-12-01", price_text="9", as_of=TODAY)
    rows = service.review(db, draft)
    assert [(r.subscription.id, r.changed) for r in rows][:3] == [
        (first.id, True),
        (second.id, False),
        (third.id, True),
    ]

    account = service.confirm(db, admin, draft, version=draft.version, as_of=TODAY, now=NOW)

    assert (account.on_behalf_start, account.on_behalf_email) == (NEXT_MONTH, "ap@x.example")
    db.rollback()
    moved = db.get(Subscription, first.id, populate_existing=True)
    assert moved is not None
    assert (moved.start_date, moved.manual_amount, moved.next_charge_date) == (
        date(2027, 1, 15),
        3150,
        date(2027, 1, 15),
    )
    cheaper = db.get(Subscription, third.id, populate_existing=True)
    # It charges on the 15th: the first charge day on or after its new start.
    assert cheaper is not None and cheaper.next_charge_date == date(2026, 12, 15)
    assert cheaper.manual_amount == 900
    kept = db.get(Subscription, second.id, populate_existing=True)
    assert kept is not None and kept.start_date == second.start_date
    assert db.exec(select(OnBehalfDraft)).all() == []
    actions = db.exec(
        select(AuditEvent.action).where(AuditEvent.customer_account_id == account.id)
    ).all()
    assert "billing_on_behalf.activated" in actions
    assert actions.count("subscription.rescheduled_on_behalf") == 2


def test_does_a_stale_tab_or_a_second_confirm_change_nothing(db: Session) -> None:
    admin, draft = wizard(db)
    service.save_start(db, draft, start_text="2026-12-01", email_text="ap@x.example", as_of=TODAY)
    service.save_choice(db, draft, wants_changes=False, chosen=[])
    with pytest.raises(Conflict, match="another tab"):
        service.confirm(db, admin, draft, version=draft.version - 1, as_of=TODAY, now=NOW)
    service.confirm(db, admin, draft, version=draft.version, as_of=TODAY, now=NOW)
    with pytest.raises(Conflict, match="already active"):
        wizard(db)


def test_do_two_confirmations_at_once_activate_once(demo: Flask, engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as db:
        admin, draft = wizard(db)
        _sales, other = wizard(db, "sales@us-partner.example")
        for d in (draft, other):
            service.save_start(
                db, d, start_text="2026-12-01", email_text="ap@x.example", as_of=TODAY
            )
            service.save_choice(db, d, wants_changes=False, chosen=[])
        drafts = {"admin@us-partner.example": draft.id, "sales@us-partner.example": other.id}
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def confirm(email: str) -> None:
        with Session(engine, expire_on_commit=False) as session:
            who = user(session, email)
            mine = session.get(OnBehalfDraft, drafts[email])
            assert mine is not None
            barrier.wait()
            try:
                service.confirm(session, who, mine, version=mine.version, as_of=TODAY, now=NOW)
                outcomes.append("activated")
            except Conflict:
                outcomes.append("refused")

    threads = [threading.Thread(target=confirm, args=(e,)) for e in drafts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["activated", "refused"]
    with Session(engine) as db:
        events = db.exec(
            select(AuditEvent).where(AuditEvent.action == "billing_on_behalf.activated")
        ).all()
        assert len(events) == 1


def test_is_billing_on_behalf_refused_outside_eligible_countries(db: Session) -> None:
    de_admin = user(db, "admin@de-partner.example")
    de_account = db.exec(
        select(CustomerAccount).where(CustomerAccount.partner_id == de_admin.partner_id)
    ).first()
    assert de_account is not None
    with pytest.raises(Conflict, match="available to partners in US only"):
        service.open_wizard(db, de_admin, de_account.id, countries=US)  # type: ignore[arg-type]
    service.open_wizard(db, de_admin, de_account.id, countries=("US", "DE"))  # type: ignore[arg-type]


def test_is_another_partners_account_not_found(db: Session) -> None:
    de_admin = user(db, "admin@de-partner.example")
    with pytest.raises(NotFound):
        service.open_wizard(db, de_admin, jordan(db).id, countries=("US", "DE"))  # type: ignore[arg-type]


def test_are_invoices_from_the_start_date_addressed_to_the_billing_email(db: Session) -> None:
    admin, draft = wizard(db)
    service.save_start(db, draft, start_text="2026-12-01", email_text="ap@x.example", as_of=TODAY)
    service.save_choice(db, draft, wants_changes=False, chosen=[])
    account = service.confirm(db, admin, draft, version=draft.version, as_of=TODAY, now=NOW)
    partner = db.get(Partner, account.partner_id)
    assert partner is not None
    before = add_invoice(db, partner=partner, account=account, lines=[LineInput("Setup", 1, 500)],
                         issue_date=date(2026, 11, 30), due_date=date(2026, 12, 10))  # fmt: skip
    after = add_invoice(db, partner=partner, account=account, lines=[LineInput("Setup", 1, 500)],
                        issue_date=date(2026, 12, 1), due_date=date(2026, 12, 10))  # fmt: skip
    assert before.billing_email == account.billing_email or account.email
    assert after.billing_email == "ap@x.example"


def test_does_editing_the_billing_email_check_it_and_change_nothing_when_bad(db: Session) -> None:
    admin, draft = wizard(db)
    service.save_start(db, draft, start_text="2026-12-01", email_text="ap@x.example", as_of=TODAY)
    service.save_choice(db, draft, wants_changes=False, chosen=[])
    account = service.confirm(db, admin, draft, version=draft.version, as_of=TODAY, now=NOW)
    with pytest.raises(service.StepInvalid):
        service.update_billing_email(db, admin, account.id, "not an email")  # type: ignore[arg-type]
    assert jordan(db).on_behalf_email == "ap@x.example"
    service.update_billing_email(db, admin, account.id, "new@x.example")  # type: ignore[arg-type]
    assert jordan(db).on_behalf_email == "new@x.example"
