"""Partner admins configure take-payment widgets, allowed origins and pay-link options."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from app.domain.errors import InvalidInput, NotFound
from app.models import (
    AmountMode,
    AuditEvent,
    CustomerAccount,
    Partner,
    Role,
    User,
    Widget,
)
from app.services.widget_admin import (
    MAX_ORIGINS,
    WidgetInput,
    WidgetInvalid,
    add_allowed_origin,
    create_widget,
    embed_snippets,
    get_widget,
    list_widgets,
    normalize_origin,
    partner_settings,
    preview_widget,
    remove_allowed_origin,
    set_widget_active,
    update_payment_settings,
    update_widget,
)

DUES = WidgetInput(
    title="  Membership dues ",
    purpose="Yearly dues for the club.\r\nThank you!",
    amount_mode=AmountMode.FIXED,
    fixed_amount="25",
    accept_card=True,
    allow_one_time=True,
    frequencies=("annual", "monthly"),
)
DONATION = WidgetInput(
    title="Donate",
    amount_mode=AmountMode.PAYER,
    min_amount="5",
    max_amount="1,000.00",
    accept_card=True,
    accept_bank=True,
    frequencies=("monthly",),
    success_message="Thanks for giving!",
)


@pytest.fixture
def people(db_session: Session) -> dict[str, User]:
    """A US partner (admin, sales, customer), a German partner (admin), an operator."""
    us = Partner(name="Harbor", slug="harbor", country="US", currency="USD")
    de = Partner(name="Rhein", slug="rhein", country="DE", currency="EUR")
    db_session.add_all([us, de])
    db_session.flush()
    account = CustomerAccount(partner_id=us.id, name="Casey", email="c@x.example", currency="USD")
    db_session.add(account)
    db_session.flush()

    def user(email: str, role: Role, partner: Partner | None = None, **extra: object) -> User:
        person = User(
            email=email,
            password_hash="x",
            role=role,
            partner_id=partner.id if partner else None,
            **extra,
        )
        db_session.add(person)
        return person

    users = {
        "us_admin": user("admin@us.example", Role.PARTNER_ADMIN, us),
        "us_sales": user("sales@us.example", Role.PARTNER_SALES, us),
        "de_admin": user("admin@de.example", Role.PARTNER_ADMIN, de),
        "operator": user("op@example.com", Role.OPERATOR),
        "customer": user("c@x.example", Role.CUSTOMER, us, customer_account_id=account.id),
    }
    db_session.commit()
    return users


def _count(session: Session, model: type) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


def _fresh(session: Session, widget_id: int) -> Widget:
    """The widget as stored, not as this session remembers it."""
    session.expire_all()
    widget = session.get(Widget, widget_id)
    assert widget is not None
    return widget


# -- creating and editing --------------------------------------------------------------------


def test_does_creating_a_widget_store_clean_values_and_a_new_key(
    db_session: Session, people: dict[str, User]
) -> None:
    admin = people["us_admin"]

    dues = create_widget(db_session, admin, DUES)
    donation = create_widget(db_session, admin, DONATION)

    stored = _fresh(db_session, dues.id)
    assert stored.partner_id == admin.partner_id
    assert stored.title == "Membership dues"
    assert stored.purpose == "Yearly dues for the club.\nThank you!"
    assert stored.currency == "USD"  # blank currency: the partner's
    assert (stored.fixed_amount, stored.min_amount, stored.max_amount) == (2500, None, None)
    assert stored.recurring_frequencies == ["monthly", "annual"]  # offered in a fixed order
    assert stored.success_message == "Thank you for your payment."
    assert stored.is_active
    assert len(stored.key) == 16 and stored.key != donation.key
    assert (donation.min_amount, donation.max_amount) == (500, 100_000)
    assert donation.accept_bank and not donation.allow_one_time
    assert [w.title for w in list_widgets(db_session, admin)] == ["Donate", "Membership dues"]
    actions = db_session.exec(select(AuditEvent.action)).all()
    assert actions.count("widget.created") == 2


def test_are_all_field_errors_reported_together_and_nothing_written(
    db_session: Session, people: dict[str, User]
) -> None:
    bad = WidgetInput(
        title="",
        purpose="p" * 1001,
        currency="EUR",
        amount_mode=AmountMode.FIXED,
        fixed_amount="",
        accept_card=False,
        accept_bank=False,
        allow_one_time=False,
        frequencies=(),
        success_message="s" * 501,
    )

    with pytest.raises(WidgetInvalid) as caught:
        create_widget(db_session, people["us_admin"], bad)

    assert set(caught.value.errors) == {
        "title",
        "purpose",
        "fixed_amount",
        "methods",
        "recurrence",
        "success_message",
    }
    assert caught.value.field == "title"  # the first problem, for one-message callers
    assert isinstance(caught.value, InvalidInput)
    assert _count(db_session, Widget) == 0
    assert _count(db_session, AuditEvent) == 0


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"min_amount": "", "max_amount": ""}, {"min_amount", "max_amount"}),
        ({"min_amount": "50", "max_amount": "10"}, {"max_amount"}),
        ({"min_amount": "0", "max_amount": "10"}, {"min_amount"}),
        ({"min_amount": "-5", "max_amount": "abc"}, {"min_amount", "max_amount"}),
        ({"amount_mode": "free"}, {"amount_mode"}),
        ({"currency": "EUR"}, {"accept_bank"}),  # bank accounts are USD only
        ({"currency": "XYZ", "min_amount": ""}, {"currency", "min_amount"}),
        ({"frequencies": ("daily",)}, {"recurrence"}),
        ({"accept_card": False, "accept_bank": False}, {"methods"}),
        ({"title": "t" * 121}, {"title"}),
    ],
)
def test_which_payer_chosen_amounts_and_choices_are_refused(
    db_session: Session, people: dict[str, User], changes: dict, errors: set[str]
) -> None:
    with pytest.raises(WidgetInvalid) as caught:
        create_widget(db_session, people["us_admin"], replace(DONATION, **changes))

    assert set(caught.value.errors) == errors
    assert _count(db_session, Widget) == 0


@pytest.mark.parametrize(
    ("currency", "text", "minor"),
    [("JPY", "1500", 1500), ("eur", "12.50", 1250), ("BHD", "1.250", 1250), ("USD", "$7", 700)],
)
def test_are_amounts_read_in_the_widgets_currency(
    db_session: Session, people: dict[str, User], currency: str, text: str, minor: int
) -> None:
    form = replace(DUES, currency=currency, fixed_amount=text)

    widget = create_widget(db_session, people["us_admin"], form)

    assert (widget.currency, widget.fixed_amount) == (currency.upper(), minor)


def test_is_a_fraction_of_a_yen_refused(db_session: Session, people: dict[str, User]) -> None:
    with pytest.raises(WidgetInvalid) as caught:
        create_widget(
            db_session, people["us_admin"], replace(DUES, currency="JPY", fixed_amount="15.5")
        )

    assert "whole amount" in caught.value.errors["fixed_amount"]


def test_does_an_edit_keep_the_key_and_drop_the_other_modes_amounts(
    db_session: Session, people: dict[str, User]
) -> None:
    admin = people["us_admin"]
    widget = create_widget(db_session, admin, DONATION)
    key = widget.key

    update_widget(db_session, admin, widget.id, replace(DUES, title="Dues 2026"))

    stored = _fresh(db_session, widget.id)
    assert stored.key == key
    assert stored.title == "Dues 2026"
    assert (stored.amount_mode, stored.fixed_amount) == (AmountMode.FIXED, 2500)
    assert (stored.min_amount, stored.max_amount) == (None, None)
    assert not stored.accept_bank
    assert stored.updated_at is not None


def test_does_a_failed_edit_leave_the_widget_as_it_was(
    db_session: Session, people: dict[str, User]
) -> None:
    admin = people["us_admin"]
    widget = create_widget(db_session, admin, DUES)

    with pytest.raises(WidgetInvalid):
        update_widget(db_session, admin, widget.id, replace(DUES, title="New", fixed_amount="x"))

    stored = _fresh(db_session, widget.id)
    assert (stored.title, stored.fixed_amount) == ("Membership dues", 2500)
    assert stored.updated_at is None


def test_does_the_preview_check_values_without_writing(
    db_session: Session, people: dict[str, User]
) -> None:
    admin = people["us_admin"]
    widget = create_widget(db_session, admin, DUES)
    audits = _count(db_session, AuditEvent)

    good = preview_widget(db_session, admin, replace(DUES, fixed_amount="42"), widget.id)
    bad = preview_widget(db_session, admin, replace(DUES, title="", fixed_amount="0"))

    assert good.is_valid and good.fixed_amount == 4200
    assert set(bad.errors) == {"title", "fixed_amount"} and bad.fixed_amount is None
    assert _fresh(db_session, widget.id).fixed_amount == 2500
    assert _count(db_session, Widget) == 1
    assert _count(db_session, AuditEvent) == audits


def test_does_switching_a_widget_off_and_on_stick(
    db_session: Session, people: dict[str, User]
) -> None:
    admin = people["us_admin"]
    widget = create_widget(db_session, admin, DUES)

    set_widget_active(db_session, admin, widget.id, False)
    assert not _fresh(db_session, widget.id).is_active
    set_widget_active(db_session, admin, widget.id, True)
    assert _fresh(db_session, widget.id).is_active


def test_is_the_title_escaped_in_the_iframe_snippet(
    db_session: Session, people: dict[str, User]
) -> None:
    widget = create_widget(db_session, people["us_admin"], replace(DUES, title='Say "hi" <b>'))

    snippets = embed_snippets("https://portico.example/", widget)

    assert snippets.script == (
        f'<script src="https://portico.example/embed.js" data-widget="{widget.key}" async></script>'
    )
    assert f'src="https://portico.example/embed/take-payment/{widget.key}"' in snippets.iframe
    assert 'title="Say &quot;hi&quot; &lt;b&gt;"' in snippets.iframe


# -- who may do it -------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["us_sales", "de_admin", "operator", "customer"])
def test_can_anyone_but_the_partners_admin_reach_its_widget(
    db_session: Session, people: dict[str, User], who: str
) -> None:
    widget = create_widget(db_session, people["us_admin"], DUES)
    other = people[who]

    with pytest.raises(NotFound):
        get_widget(db_session, other, widget.id)
    with pytest.raises(NotFound):
        update_widget(db_session, other, widget.id, replace(DUES, title="Mine now"))
    with pytest.raises(NotFound):
        set_widget_active(db_session, other, widget.id, False)
    with pytest.raises(NotFound):
        preview_widget(db_session, other, DUES, widget.id)

    stored = _fresh(db_session, widget.id)
    assert (stored.title, stored.is_active) == ("Membership dues", True)


@pytest.mark.parametrize("who", ["us_sales", "operator", "customer"])
def test_can_a_user_who_is_not_a_partner_admin_use_the_settings(
    db_session: Session, people: dict[str, User], who: str
) -> None:
    user = people[who]

    for attempt in (
        lambda: list_widgets(db_session, user),
        lambda: partner_settings(db_session, user),
        lambda: create_widget(db_session, user, DUES),
        lambda: add_allowed_origin(db_session, user, "https://evil.example"),
        lambda: remove_allowed_origin(db_session, user, "https://evil.example"),
        lambda: update_payment_settings(
            db_session, user, allow_partial_payments=True, pay_link_days=9
        ),
    ):
        with pytest.raises(NotFound):
            attempt()

    assert _count(db_session, Widget) == 0
    assert _count(db_session, AuditEvent) == 0


def test_does_a_partner_admin_see_only_its_own_widgets(
    db_session: Session, people: dict[str, User]
) -> None:
    create_widget(db_session, people["us_admin"], DUES)
    create_widget(db_session, people["de_admin"], replace(DUES, title="Beitrag"))

    assert [w.title for w in list_widgets(db_session, people["de_admin"])] == ["Beitrag"]
    assert [w.currency for w in list_widgets(db_session, people["de_admin"])] == ["EUR"]


# -- allowed origins -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("https://Example.org/", "https://example.org"),
        ("  HTTPS://COMMUNITY.Example.org  ", "https://community.example.org"),
        ("https://example.org:443", "https://example.org"),
        ("http://example.org:80/", "http://example.org"),
        ("https://example.org:8443", "https://example.org:8443"),
        ("http://localhost:5001", "http://localhost:5001"),
        ("http://127.0.0.1:5001", "http://127.0.0.1:5001"),
        ("https://[::1]:8443", "https://[::1]:8443"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
    ],
)
def test_how_is_an_origin_written_down(typed: str, stored: str) -> None:
    assert normalize_origin(typed) == stored


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "example.org",
        "ftp://example.org",
        "javascript://example.org",
        "https:example.org",
        "https://",
        "https://*.example.org",
        "*",
        "https://example.org/donate",
        "https://example.org/?q=1",
        "https://example.org#top",
        "https://user:pw@example.org",
        "https://user@example.org",
        "https://exa mple.org",
        "https://example.org; frame-ancestors *",
        "https://example.org:0",
        "https://example.org:99999",
        "https://example.org:port",
        "https://-bad.example",
        "https://under_score.example",
        "https://example.org.",
        "https://1.2.3",
        "https://ex%41mple.org",
        "https://example.org\\@evil.example",
        "https://" + "a" * 300 + ".example",
    ],
)
def test_which_origins_are_refused(
    db_session: Session, people: dict[str, User], typed: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        add_allowed_origin(db_session, people["us_admin"], typed)

    assert caught.value.field == "origin"
    db_session.expire_all()
    assert partner_settings(db_session, people["us_admin"]).allowed_origins == []


def test_is_an_origin_allowed_only_once(db_session: Session, people: dict[str, User]) -> None:
    admin = people["us_admin"]
    assert add_allowed_origin(db_session, admin, "https://club.example") == ["https://club.example"]

    with pytest.raises(InvalidInput, match="already allowed"):
        add_allowed_origin(db_session, admin, "HTTPS://Club.Example:443/")

    db_session.expire_all()
    assert partner_settings(db_session, admin).allowed_origins == ["https://club.example"]


def test_is_the_number_of_origins_limited(db_session: Session, people: dict[str, User]) -> None:
    admin = people["us_admin"]
    for n in range(MAX_ORIGINS):
        add_allowed_origin(db_session, admin, f"https://site{n}.example")

    with pytest.raises(InvalidInput, match=f"at most {MAX_ORIGINS}"):
        add_allowed_origin(db_session, admin, "https://one-too-many.example")

    db_session.expire_all()
    assert len(partner_settings(db_session, admin).allowed_origins) == MAX_ORIGINS


def test_does_removing_an_origin_stop_only_that_one(
    db_session: Session, people: dict[str, User]
) -> None:
    admin = people["us_admin"]
    add_allowed_origin(db_session, admin, "https://a.example")
    add_allowed_origin(db_session, admin, "https://b.example")

    assert remove_allowed_origin(db_session, admin, "https://A.example/") == ["https://b.example"]
    assert remove_allowed_origin(db_session, admin, "https://a.example") == ["https://b.example"]

    db_session.expire_all()
    assert partner_settings(db_session, admin).allowed_origins == ["https://b.example"]
    other = partner_settings(db_session, people["de_admin"])
    assert other.allowed_origins == []
    actions = db_session.exec(select(AuditEvent.action)).all()
    assert actions.count("partner.origin_removed") == 1  # the second removal changed nothing


# -- pay links -----------------------------------------------------------------------------


def test_are_payment_settings_saved(db_session: Session, people: dict[str, User]) -> None:
    admin = people["us_admin"]

    update_payment_settings(db_session, admin, allow_partial_payments=True, pay_link_days=14)

    db_session.expire_all()
    partner = partner_settings(db_session, admin)
    assert (partner.allow_partial_payments, partner.pay_link_days) == (True, 14)
    assert partner_settings(db_session, people["de_admin"]).pay_link_days == 30


@pytest.mark.parametrize("days", [0, -1, 366, 10_000])
def test_are_pay_link_days_out_of_range_refused(
    db_session: Session, people: dict[str, User], days: int
) -> None:
    admin = people["us_admin"]

    with pytest.raises(InvalidInput) as caught:
        update_payment_settings(db_session, admin, allow_partial_payments=True, pay_link_days=days)

    assert caught.value.field == "pay_link_days"
    db_session.expire_all()
    partner = partner_settings(db_session, admin)
    assert (partner.allow_partial_payments, partner.pay_link_days) == (False, 30)
