"""Record ids and counters posted in forms: only plain ASCII digits that fit a BIGINT.

``str.isdigit`` is true for "²" and "٣", and ``int`` takes neither the first nor more than
4,300 digits, so a bare ``isdigit`` check before ``int`` turns hostile input into a 500.
"""

from __future__ import annotations

MAX_DIGITS = 18  # any 18-digit number fits a signed 64-bit column


def parse_id(text: str) -> int | None:
    """The whole number in ``text`` (surrounding spaces ignored), or None when it is not
    1–18 ASCII digits."""
    text = text.strip()
    if not text or len(text) > MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)
