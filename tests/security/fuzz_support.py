"""Helpers for fuzzing Portico's forms: hostile values, a database fingerprint, the form
tokens of a rendered page, and the checks every answer must pass.

The checks, for one posted example:
- no 5xx;
- a refused submission (4xx, except 402: a processed decline) changed no row;
- a 422 names a field it was sent (``<p class="error" id="{field}-error">`` or
  ``aria-invalid`` on that field for pages; the keys of ``{"errors": …}`` for JSON);
- no hostile markup comes back unescaped.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser

from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlmodel import SQLModel

MISSING = object()  # the field is left out of the post

# Markup that would run or break out of an attribute if echoed unescaped.
MARKUP = (
    "<script>window.__fz=1</script>",
    '"><img src=x onerror="window.__fz=2">',
    "'><svg/onload=window.__fz=3>",
    "</textarea><b id=fz4>fz</b>",
    "<a href='javascript:window.__fz=5'>fz</a>",
)
LONG = ("A" * 10_000, "é" * 10_000, "9" * 10_000, "<b>" * 3_000)
NUMBERS = (
    "-0", "0", "0.00", "-1", "-0.01", "0.001", "1.005", "1e309", "-1e309", "1e-309", "NaN",
    "nan", "inf", "-Infinity", str(10**30), str(-(10**30)), "9" * 400, "0x10", "1_000",
    "1,000.00", "1.000,00", " 5 ", "+5", "٣", "²", "¹⁰", "Ⅻ", "1/2", "5%", "$5", "5 USD",
)  # fmt: skip
DATES = (
    "2026-02-30", "0000-00-00", "99999-01-01", "2026-13-01", "2026-00-10", "2026-1-1",
    "31/12/2026", "12/31/2026", "1970-01-01", "0001-01-01", "9999-12-31", "2026-12-01T00:00",
    "tomorrow",
)  # fmt: skip
CURRENCIES = ("XXX", "usd", "BHD", "JPY", "EUR", "US$", "€", "ZZZZ")
TEXT = (
    "", " ", "\x00", "a\x00b", "\x1b[31m", "\r\n", "\t", "\u202e", "\u200b", "😀", "Ω≈ç√",
    "ﷺ", "𝕳𝖊𝖑𝖑𝖔", "Ǆ", "İ", "ß", "\ufeff", "' OR '1'='1", "'; DROP TABLE invoice; --",
    '" OR 1=1 --', "%", "_", "\\", "../../etc/passwd", "{{7*7}}", "${7*7}", "null", "true",
    "[]", "{}", "on", "new", "card", "bank_account",
)  # fmt: skip
HOSTILE = (*TEXT, *NUMBERS, *DATES, *CURRENCIES, *MARKUP, *LONG)

FieldValue = str | list[str]


def hostile_value() -> st.SearchStrategy[object]:
    """One field's value: a known-hostile string, random text (control characters too),
    a huge integer, a repeated field (a list: the wrong type), or nothing at all."""
    text = st.text(
        alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30
    )  # surrogates cannot be sent in a form post
    return st.one_of(
        st.sampled_from(HOSTILE),
        text,
        st.integers(min_value=-(2**80), max_value=2**80).map(str),
        st.lists(st.sampled_from(HOSTILE), min_size=2, max_size=3),
        st.just(MISSING),
    )


def hostile_changes(fields: Sequence[str]) -> st.SearchStrategy[dict[str, object]]:
    """Which of ``fields`` to spoil, and how (at least one)."""
    return st.dictionaries(
        st.sampled_from(tuple(fields)), hostile_value(), min_size=1, max_size=len(fields)
    )


def apply_changes(
    base: Mapping[str, FieldValue], changes: Mapping[str, object]
) -> dict[str, FieldValue]:
    data: dict[str, FieldValue] = dict(base)
    for name, value in changes.items():
        if value is MISSING:
            data.pop(name, None)
        else:
            data[name] = value  # type: ignore[assignment]
    return data


# -- the database ----------------------------------------------------------------------------


# The sandbox processor keeps its state in tables of the same database, but it stands for
# the processor (Stripe in production): a card tokenized before another field is refused
# is the processor's record, not Portico's.
PROCESSOR_TABLES = "sandbox_"


def fingerprint(engine: Engine) -> dict[str, str]:
    """Every table's row count and a hash of its rows (the test database is small, so all
    of Portico's tables are hashed, not only those the form writes: a stray write shows)."""
    prints: dict[str, str] = {}
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            if table.name.startswith(PROCESSOR_TABLES):
                continue
            query = select(table).order_by(*table.primary_key.columns)
            rows = conn.execute(query).all()
            digest = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
            prints[table.name] = f"{len(rows)}:{digest[:16]}"
    return prints


def changed_tables(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    return sorted(name for name in after if before.get(name) != after[name])


# -- pages -----------------------------------------------------------------------------------


@dataclass
class Form:
    action: str
    hidden: dict[str, str]


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._open = Form(values.get("action", ""), {})
            self.forms.append(self._open)
        elif tag == "input" and self._open is not None and values.get("type") == "hidden":
            self._open.hidden.setdefault(values.get("name", ""), values.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def forms_of(page: str) -> list[Form]:
    parser = _Forms()
    parser.feed(page)
    return parser.forms


def hidden_value(page: str, name: str, action: str = "") -> str:
    """The hidden input ``name`` of the form posting to ``action`` (the first form that has
    it when ``action`` is empty or matches no form)."""
    forms = [f for f in forms_of(page) if name in f.hidden]
    assert forms, f"no hidden {name!r} on the page"
    for form in forms:
        if action and form.action.split("?")[0] in (action, ""):
            return form.hidden[name]
    return forms[0].hidden[name]


# -- the checks ------------------------------------------------------------------------------

_ERROR_ID = re.compile(
    r'class="error"[^>]*\bid="([^"]+)-error"|\bid="([^"]+)-error"[^>]*class="error"'
)
_INVALID = re.compile(r'<(?:input|select|textarea|fieldset)\b[^>]*aria-invalid="true"[^>]*>')
_NAME_OR_ID = re.compile(r'\b(?:name|id)="([^"]+)"')


def fields_named_in_errors(body: str, content_type: str) -> set[str]:
    """The field names an error answer points at."""
    if "json" in content_type:
        payload = json.loads(body)
        errors = payload.get("errors", {}) if isinstance(payload, dict) else {}
        return set(errors) | ({payload["field"]} if "field" in payload else set())
    named = {a or b for a, b in _ERROR_ID.findall(body)}
    for tag in _INVALID.findall(body):
        named.update(_NAME_OR_ID.findall(tag))
    return named


def names_a_field(named: set[str], fields: Sequence[str]) -> bool:
    """Whether an error points at one of ``fields`` (``line-0-description`` names
    ``description``; ``subscriptions``, the group's error, names ``subscription``)."""
    return any(n.startswith(f) or n.endswith(f"-{f}") for n in named for f in fields)


def unescaped_markup(body: str, sent: Mapping[str, FieldValue]) -> list[str]:
    """Hostile markup that was sent and comes back verbatim (it would run or break out)."""
    values: list[str] = []
    for value in sent.values():
        values.extend(value if isinstance(value, list) else [value])
    return [v for v in values if (v in MARKUP or v == LONG[3]) and v in body]
