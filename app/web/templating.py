"""Template filters and globals: money and dates formatted in one place."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from flask import Flask

from app.domain.money import format_money, format_plain


def _money(amount: int | None, currency: str) -> str:
    return "—" if amount is None else format_money(amount, currency)


def _day(value: date | datetime | None) -> str:
    if value is None:
        return "—"
    return value.strftime("%b %-d, %Y")


def _label(value: object) -> str:
    return str(getattr(value, "value", value)).replace("_", " ")


def _hosted_entry() -> dict[str, str]:
    """The processor's hosted card-entry URL for payer forms ("" when there is none)."""
    from flask import current_app, has_request_context, url_for

    # Emails are rendered with only an app context (jobs, services): no URL to build there.
    if has_request_context() and current_app.config["PORTICO"].payment_gateway == "sandbox":
        return {"hosted_entry_url": url_for("sandbox.create_token")}
    return {"hosted_entry_url": ""}


def init_app(app: Flask) -> None:
    app.context_processor(_hosted_entry)
    app.add_template_filter(_money, "money")
    app.add_template_filter(_day, "day")
    app.add_template_filter(_label, "label")
    app.add_template_filter(format_plain, "plain")
    _template_loader(app)


def _template_loader(app: Flask) -> None:
    """Page templates live in app/templates; macros and widgets in app/components."""
    from jinja2 import ChoiceLoader, FileSystemLoader

    root = Path(app.root_path)
    app.jinja_loader = ChoiceLoader(
        [FileSystemLoader(str(root / "templates")), FileSystemLoader(str(root / "components"))]
    )
