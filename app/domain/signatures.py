"""Customer signatures on an order approval (pure code, ADR 0015).

A signature is typed (the signer's name as they typed it, shown in a script face) or
drawn (a PNG from the approval page's canvas, sent as a ``data:image/png;base64,`` URL).
:func:`check_signature` returns every problem at once, keyed by form field, so the page
can show each error next to its field.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

MAX_SIGNER_NAME: Final = 200
MAX_TYPED_SIGNATURE: Final = 200
MAX_DRAWN_BYTES: Final = 200 * 1024  # the decoded PNG
PNG_DATA_URL_PREFIX: Final = "data:image/png;base64,"
PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
# A base64 text longer than this cannot decode to MAX_DRAWN_BYTES or less: refuse it
# before decoding anything.
_MAX_DRAWN_TEXT: Final = len(PNG_DATA_URL_PREFIX) + 4 * ((MAX_DRAWN_BYTES + 2) // 3)


class SignatureKind(StrEnum):
    TYPED = "typed"
    DRAWN = "drawn"


@dataclass(frozen=True)
class Signature:
    """A checked signature: who signed, how, and the typed text or the PNG data URL."""

    signer_name: str
    kind: SignatureKind
    value: str


def _squash(text: str) -> str:
    return " ".join(text.split())


def check_signature(
    signer_name: str, kind: str, signature: str
) -> tuple[Signature | None, dict[str, str]]:
    """Check a posted signature; returns (the signature, {}) or (None, errors by field).

    Fields: ``signer_name`` (required, at most 200 characters), ``signature_kind``
    (typed or drawn), ``signature`` (typed: required, at most 200 characters; drawn: a
    PNG data URL of at most 200 KB that decodes to a PNG).
    """
    errors: dict[str, str] = {}
    name = _squash(signer_name)
    if not name:
        errors["signer_name"] = "Enter your name."
    elif len(name) > MAX_SIGNER_NAME:
        errors["signer_name"] = f"Your name can be at most {MAX_SIGNER_NAME} characters."
    value = ""
    try:
        chosen = SignatureKind(kind)
    except ValueError:
        chosen = None
        errors["signature_kind"] = "Choose to type or to draw your signature."
    if chosen == SignatureKind.TYPED:
        value = _squash(signature)
        if not value:
            errors["signature"] = "Type your name as your signature."
        elif len(value) > MAX_TYPED_SIGNATURE:
            errors["signature"] = (
                f"A typed signature can be at most {MAX_TYPED_SIGNATURE} characters."
            )
    elif chosen == SignatureKind.DRAWN:
        value = signature.strip()
        problem = drawn_problem(value)
        if problem:
            errors["signature"] = problem
    if errors or chosen is None:
        return None, errors
    return Signature(signer_name=name, kind=chosen, value=value), {}


def drawn_problem(data_url: str) -> str:
    """Why ``data_url`` is not an acceptable drawn signature ("" when it is)."""
    if not data_url:
        return "Draw your signature in the box, or choose to type it."
    if not data_url.startswith(PNG_DATA_URL_PREFIX):
        return "The drawn signature must be a PNG image. Clear it and draw it again."
    if len(data_url) > _MAX_DRAWN_TEXT:
        return "The drawn signature is too large (at most 200 KB). Clear it and draw it again."
    try:
        png = _decode(data_url)
    except ValueError:
        return "The drawn signature could not be read. Clear it and draw it again."
    if len(png) > MAX_DRAWN_BYTES:
        return "The drawn signature is too large (at most 200 KB). Clear it and draw it again."
    if not png.startswith(PNG_MAGIC):
        return "The drawn signature must be a PNG image. Clear it and draw it again."
    return ""


def png_bytes(data_url: str) -> bytes:
    """The PNG inside a drawn signature's data URL.

    Raises:
        ValueError: not a PNG data URL, or not valid base64.
    """
    if not data_url.startswith(PNG_DATA_URL_PREFIX):
        raise ValueError("not a PNG data URL")
    png = _decode(data_url)
    if not png.startswith(PNG_MAGIC):
        raise ValueError("not a PNG image")
    return png


def _decode(data_url: str) -> bytes:
    try:
        return base64.b64decode(data_url[len(PNG_DATA_URL_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
