"""Partner settings for embedding: take-payment widgets, allowed origins, pay-link options.

Only partner admins reach these functions; anyone else (sales users, customers,
operators) gets NotFound, exactly as for a record that does not exist. Every write
commits once; bad input raises before anything is added to the session.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Final

from sqlmodel import Session, col, select

from app.clock import utcnow
from app.domain.errors import InvalidInput, NotFound
from app.domain.money import exponent, format_plain, parse_amount
from app.domain.schedule import Frequency
from app.models import AmountMode, Partner, User, Widget
from app.services.admin_access import admin_partner_id as _admin_partner_id
from app.services.admin_access import audit as _audit
from app.services.tenancy import owned

__all__ = [
    "DEFAULT_SUCCESS_MESSAGE",
    "MAX_ORIGINS",
    "PAY_LINK_DAYS_RANGE",
    "WIDGET_FREQUENCIES",
    "EmbedSnippets",
    "WidgetDraft",
    "WidgetInput",
    "WidgetInvalid",
    "add_allowed_origin",
    "check_widget",
    "create_widget",
    "embed_snippets",
    "get_widget",
    "list_widgets",
    "normalize_origin",
    "partner_settings",
    "preview_widget",
    "remove_allowed_origin",
    "set_widget_active",
    "update_payment_settings",
    "update_widget",
]

# The recurring choices a widget may offer, in the order they are shown.
WIDGET_FREQUENCIES: Final = (
    Frequency.WEEKLY.value,
    Frequency.MONTHLY.value,
    Frequency.QUARTERLY.value,
    Frequency.ANNUAL.value,
)
DEFAULT_SUCCESS_MESSAGE: Final = "Thank you for your payment."
MAX_TITLE: Final = 120
MAX_PURPOSE: Final = 1000
MAX_SUCCESS_MESSAGE: Final = 500
# Bank-account (ACH) debits exist only in US dollars.
BANK_CURRENCIES: Final = frozenset({"USD"})


class WidgetInvalid(InvalidInput):
    """A widget form with one or more bad fields; ``errors`` maps each field to a message.

    ``message`` and ``field`` name the first problem, for callers that show only one.
    """

    def __init__(self, errors: dict[str, str]) -> None:
        first_field, first_message = next(iter(errors.items()))
        super().__init__(first_message, first_field)
        self.errors = dict(errors)


@dataclass(frozen=True)
class WidgetInput:
    """A widget form as typed: raw strings and checkbox states, nothing checked yet."""

    title: str = ""
    purpose: str = ""
    currency: str = ""
    amount_mode: str = AmountMode.FIXED
    fixed_amount: str = ""
    min_amount: str = ""
    max_amount: str = ""
    accept_card: bool = False
    accept_bank: bool = False
    allow_one_time: bool = False
    frequencies: tuple[str, ...] = ()
    success_message: str = ""

    @classmethod
    def blank(cls, currency: str) -> WidgetInput:
        """The form of a new widget: card, one-time, the partner's currency."""
        return cls(
            currency=currency,
            accept_card=True,
            allow_one_time=True,
            success_message=DEFAULT_SUCCESS_MESSAGE,
        )

    @classmethod
    def from_widget(cls, widget: Widget) -> WidgetInput:
        """The form showing a saved widget, amounts written as in the form ("25.00")."""

        def plain(amount: int | None) -> str:
            return "" if amount is None else format_plain(amount, widget.currency)

        return cls(
            title=widget.title,
            purpose=widget.purpose,
            currency=widget.currency,
            amount_mode=widget.amount_mode,
            fixed_amount=plain(widget.fixed_amount),
            min_amount=plain(widget.min_amount),
            max_amount=plain(widget.max_amount),
            accept_card=widget.accept_card,
            accept_bank=widget.accept_bank,
            allow_one_time=widget.allow_one_time,
            frequencies=tuple(widget.recurring_frequencies),
            success_message=widget.success_message,
        )


@dataclass(frozen=True)
class WidgetDraft:
    """Checked form values: each value as far as it is valid, and what is wrong.

    Amounts are minor units, ``None`` when missing or invalid (or not used by the amount
    mode); ``currency`` is "" when invalid. A draft without errors can be saved as is.
    """

    title: str
    purpose: str
    currency: str
    amount_mode: str
    fixed_amount: int | None
    min_amount: int | None
    max_amount: int | None
    accept_card: bool
    accept_bank: bool
    allow_one_time: bool
    frequencies: tuple[str, ...]
    success_message: str
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def is_valid(self) -> bool:
        return not self.errors


# -- access --------------------------------------------------------------------------------


def partner_settings(session: Session, user: User) -> Partner:
    """The partner whose settings a partner admin manages.

    Raises:
        NotFound: the user is not a partner admin.
    """
    partner = session.get(Partner, _admin_partner_id(user))
    if partner is None:
        raise NotFound("Not found.")
    return partner


# -- widgets -------------------------------------------------------------------------------


def list_widgets(session: Session, user: User) -> list[Widget]:
    """The admin's partner's widgets, by title.

    Raises:
        NotFound: the user is not a partner admin.
    """
    partner_id = _admin_partner_id(user)
    query = (
        select(Widget)
        .where(Widget.partner_id == partner_id)
        .order_by(col(Widget.title), col(Widget.id))
    )
    return list(session.exec(query).all())


def get_widget(session: Session, user: User, widget_id: int) -> Widget:
    """One widget of the admin's partner.

    Raises:
        NotFound: the user is not a partner admin, or the widget does not exist or
            belongs to another partner (the two are indistinguishable).
    """
    _admin_partner_id(user)
    return owned(session, user, Widget, widget_id)


def _text(value: str) -> str:
    """Trim and use one kind of line break (browsers send CRLF from textareas)."""
    return (value or "").replace("\r\n", "\n").replace("\r", "\n").strip()


def _amount(
    text: str, currency: str, field_name: str, missing: str, errors: dict[str, str]
) -> int | None:
    if not text.strip():
        errors[field_name] = missing
        return None
    if not currency:
        return None  # cannot read an amount without its currency; the currency error says why
    try:
        return parse_amount(text, currency, field=field_name)
    except InvalidInput as exc:
        errors[field_name] = exc.message
        return None


def check_widget(form: WidgetInput, *, default_currency: str) -> WidgetDraft:
    """Check every field of ``form`` and collect all problems at once. Never raises.

    A blank currency means ``default_currency``; a blank success message means the
    default message. Amounts are read in the widget's currency.
    """
    errors: dict[str, str] = {}

    title = _text(form.title)
    if not title:
        errors["title"] = "Enter a title."
    elif len(title) > MAX_TITLE:
        errors["title"] = f"Keep the title to {MAX_TITLE} characters or fewer."

    purpose = _text(form.purpose)
    if len(purpose) > MAX_PURPOSE:
        errors["purpose"] = f"Keep the purpose to {MAX_PURPOSE} characters or fewer."

    currency = (form.currency or "").strip().upper() or default_currency
    try:
        exponent(currency)
    except InvalidInput as exc:
        errors["currency"] = exc.message
        currency = ""

    mode = form.amount_mode
    fixed_amount = min_amount = max_amount = None
    if mode == AmountMode.FIXED:
        fixed_amount = _amount(
            form.fixed_amount, currency, "fixed_amount", "Enter the amount to pay.", errors
        )
    elif mode == AmountMode.PAYER:
        min_amount = _amount(
            form.min_amount, currency, "min_amount", "Enter the smallest amount allowed.", errors
        )
        max_amount = _amount(
            form.max_amount, currency, "max_amount", "Enter the largest amount allowed.", errors
        )
        if min_amount is not None and max_amount is not None and max_amount < min_amount:
            errors["max_amount"] = "Enter a maximum that is at least the minimum."
            max_amount = None
    else:
        errors["amount_mode"] = "Choose a fixed amount or an amount the payer chooses."

    if not (form.accept_card or form.accept_bank):
        errors["methods"] = "Choose at least one payment method."
    if form.accept_bank and currency and currency not in BANK_CURRENCIES:
        errors["accept_bank"] = "Bank account payments are available only in USD."

    chosen = set(form.frequencies)
    frequencies = tuple(f for f in WIDGET_FREQUENCIES if f in chosen)
    if chosen - set(WIDGET_FREQUENCIES):
        errors["recurrence"] = "Choose recurring payments from weekly, monthly, quarterly, annual."
    elif not (form.allow_one_time or frequencies):
        errors["recurrence"] = "Offer a one-time payment, a recurring one, or both."

    success_message = _text(form.success_message) or DEFAULT_SUCCESS_MESSAGE
    if len(success_message) > MAX_SUCCESS_MESSAGE:
        errors["success_message"] = (
            f"Keep the success message to {MAX_SUCCESS_MESSAGE} characters or fewer."
        )

    return WidgetDraft(
        title=title,
        purpose=purpose,
        currency=currency,
        amount_mode=mode,
        fixed_amount=fixed_amount,
        min_amount=min_amount,
        max_amount=max_amount,
        accept_card=form.accept_card,
        accept_bank=form.accept_bank,
        allow_one_time=form.allow_one_time,
        frequencies=frequencies,
        success_message=success_message,
        errors=errors,
    )


def _valid(form: WidgetInput, default_currency: str) -> WidgetDraft:
    draft = check_widget(form, default_currency=default_currency)
    if draft.errors:
        raise WidgetInvalid(draft.errors)
    return draft


def _apply(widget: Widget, draft: WidgetDraft) -> None:
    widget.title = draft.title
    widget.purpose = draft.purpose
    widget.currency = draft.currency
    widget.amount_mode = draft.amount_mode
    widget.fixed_amount = draft.fixed_amount
    widget.min_amount = draft.min_amount
    widget.max_amount = draft.max_amount
    widget.accept_card = draft.accept_card
    widget.accept_bank = draft.accept_bank
    widget.allow_one_time = draft.allow_one_time
    widget.recurring_frequencies = list(draft.frequencies)
    widget.success_message = draft.success_message


def _new_key(session: Session) -> str:
    """A fresh public widget key (the unique constraint stays the last line)."""
    while True:
        key = secrets.token_urlsafe(12)
        if session.exec(select(Widget.id).where(Widget.key == key)).first() is None:
            return key


def preview_widget(
    session: Session, user: User, form: WidgetInput, widget_id: int | None = None
) -> WidgetDraft:
    """Check unsaved form values for the live preview. Writes nothing.

    Raises:
        NotFound: the user is not a partner admin, or ``widget_id`` is not one of the
            partner's widgets.
    """
    partner = partner_settings(session, user)
    if widget_id is not None:
        get_widget(session, user, widget_id)
    return check_widget(form, default_currency=partner.currency)


def create_widget(session: Session, user: User, form: WidgetInput) -> Widget:
    """Create a widget for the admin's partner with a new public key. Commits.

    Raises:
        NotFound: the user is not a partner admin.
        WidgetInvalid: one or more fields are invalid (all of them are reported).
    """
    partner = partner_settings(session, user)
    draft = _valid(form, partner.currency)
    widget = Widget(
        partner_id=partner.id,
        key=_new_key(session),
        title=draft.title,
        currency=draft.currency,
    )
    _apply(widget, draft)
    session.add(widget)
    session.flush()
    _audit(session, user, "widget.created", "widget", widget.id, {"title": widget.title})
    session.commit()
    return widget


def update_widget(session: Session, user: User, widget_id: int, form: WidgetInput) -> Widget:
    """Replace a widget's settings with ``form``; its key never changes. Commits.

    Raises:
        NotFound: the user is not a partner admin, or the widget is not the partner's.
        WidgetInvalid: one or more fields are invalid (all of them are reported).
    """
    partner = partner_settings(session, user)
    widget = get_widget(session, user, widget_id)
    draft = _valid(form, partner.currency)
    _apply(widget, draft)
    widget.updated_at = utcnow()
    session.add(widget)
    _audit(session, user, "widget.updated", "widget", widget.id, {"title": widget.title})
    session.commit()
    return widget


def set_widget_active(session: Session, user: User, widget_id: int, active: bool) -> Widget:
    """Switch a widget on or off (an inactive widget takes no payments). Commits.

    Raises:
        NotFound: the user is not a partner admin, or the widget is not the partner's.
    """
    widget = get_widget(session, user, widget_id)
    if widget.is_active == active:
        return widget
    widget.is_active = active
    widget.updated_at = utcnow()
    session.add(widget)
    action = "widget.activated" if active else "widget.deactivated"
    _audit(session, user, action, "widget", widget.id, {})
    session.commit()
    return widget


from app.services.partner_settings import (  # noqa: E402  (re-exported: callers import them from here)
    MAX_ORIGINS,
    PAY_LINK_DAYS_RANGE,
    EmbedSnippets,
    add_allowed_origin,
    embed_snippets,
    normalize_origin,
    remove_allowed_origin,
    update_payment_settings,
)
