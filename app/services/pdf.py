"""A compact PDF writer for invoices and receipts: text and rules on A4 pages.

Why not a library: our documents are a few lines of text in one typeface, and the PDF
standard's built-in Helvetica (no font file to ship) with WinAnsi encoding covers what
they print ("€", "•", "–", accented Latin letters). The one thing a writer must know to
align columns is each glyph's width, kept below from Adobe's Helvetica metrics.

Coordinates are whole points from the top-left corner (y grows downwards); widths are
computed in thousandths of a point, so no float is involved anywhere.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Final, Literal

PAGE_WIDTH: Final = 595  # A4 in points
PAGE_HEIGHT: Final = 842

# Adobe Helvetica and Helvetica-Bold advance widths (1/1000 em): code points 32–126,
# then 160–255; the WinAnsi extras used by formatted money and labels follow.
_REGULAR_ASCII = (
    "278 278 355 556 556 889 667 222 333 333 389 584 278 584 278 278 556 556 556 556 556 556 "
    "556 556 556 556 278 278 584 584 584 556 1010 667 667 722 722 667 611 778 722 278 500 667 "
    "556 833 722 778 667 778 722 667 611 722 667 944 667 667 611 278 278 278 469 556 222 556 "
    "556 500 556 556 278 556 556 222 222 500 222 833 556 556 556 556 333 500 278 556 500 722 "
    "500 500 500 334 260 334 584"
)
_REGULAR_LATIN = (
    "278 333 556 556 556 556 260 556 333 737 370 556 584 333 737 333 400 584 333 333 333 556 "
    "537 278 333 333 365 556 834 834 834 611 667 667 667 667 667 667 1000 722 667 667 667 667 "
    "278 278 278 278 722 722 778 778 778 778 778 584 778 722 722 722 722 667 667 611 556 556 "
    "556 556 556 556 889 500 556 556 556 556 278 278 278 278 556 556 556 556 556 556 556 584 "
    "611 556 556 556 556 500 556 500"
)
_BOLD_ASCII = (
    "278 333 474 556 556 889 722 278 333 333 389 584 278 584 278 278 556 556 556 556 556 556 "
    "556 556 556 556 333 333 584 584 584 611 975 722 722 722 722 667 611 778 722 278 556 722 "
    "611 833 722 778 667 778 722 667 611 722 667 944 667 667 611 333 278 333 584 556 278 556 "
    "611 556 611 556 333 611 611 278 278 556 278 889 611 611 611 611 389 556 333 611 556 778 "
    "556 556 500 389 280 389 584"
)
_BOLD_LATIN = (
    "278 333 556 556 556 556 280 556 333 737 370 556 584 333 737 333 400 584 333 333 333 611 "
    "556 278 333 333 365 556 834 834 834 611 722 722 722 722 722 722 1000 722 667 667 667 667 "
    "278 278 278 278 722 722 778 778 778 778 778 584 778 722 722 722 722 667 667 611 556 556 "
    "556 556 556 556 889 556 556 556 556 556 278 278 278 278 611 611 611 611 611 611 611 584 "
    "611 611 611 611 611 556 611 556"
)
_EXTRAS = {"€": 556, "•": 350, "–": 556, "—": 1000, "‘": 222, "’": 222, "“": 333, "”": 333}
_EXTRAS_BOLD = {**_EXTRAS, "‘": 278, "’": 278, "“": 500, "”": 500}
# Spaces Babel may put into formatted amounts that WinAnsi lacks.
_SPACES = str.maketrans({"\u202f": "\u00a0", "\u2009": " ", "\u2007": " "})


def _table(ascii_widths: str, latin_widths: str, extras: dict[str, int]) -> dict[str, int]:
    widths = {chr(32 + i): int(w) for i, w in enumerate(ascii_widths.split())}
    widths |= {chr(160 + i): int(w) for i, w in enumerate(latin_widths.split())}
    return widths | extras


_WIDTHS: Final = {
    False: _table(_REGULAR_ASCII, _REGULAR_LATIN, _EXTRAS),
    True: _table(_BOLD_ASCII, _BOLD_LATIN, _EXTRAS_BOLD),
}


def clean(text: str) -> str:
    """``text`` as the fonts can print it: odd spaces normalized, the rest WinAnsi or "?"."""
    text = text.translate(_SPACES)
    return text.encode("cp1252", errors="replace").decode("cp1252")


def text_width(text: str, size: int, *, bold: bool = False) -> int:
    """The width of ``text`` at ``size`` points, in thousandths of a point."""
    widths = _WIDTHS[bold]
    return sum(widths.get(ch, 556) for ch in clean(text)) * size


def fit(text: str, width: int, size: int, *, bold: bool = False) -> str:
    """``text`` cut with "…" so that it fits ``width`` points."""
    if text_width(text, size, bold=bold) <= width * 1000:
        return text
    while text and text_width(text + "…", size, bold=bold) > width * 1000:
        text = text[:-1]
    return text.rstrip() + "…"


def wrap(text: str, width: int, size: int, *, bold: bool = False) -> list[str]:
    """``text`` broken into lines of at most ``width`` points, at spaces and newlines."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        current = ""
        for word in paragraph.split():
            candidate = f"{current} {word}".strip()
            if current and text_width(candidate, size, bold=bold) > width * 1000:
                lines.append(current)
                current = word
            else:
                current = candidate
        lines.append(fit(current, width, size, bold=bold))
    return lines


def _points(milli: int) -> str:
    sign = "-" if milli < 0 else ""
    whole, frac = divmod(abs(milli), 1000)
    return f"{sign}{whole}.{frac:03d}"


def _literal(text: str) -> bytes:
    raw = clean(text).encode("cp1252")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


@dataclass
class PdfDocument:
    """Pages of positioned text and rules; :meth:`render` returns the PDF file's bytes."""

    title: str = ""
    pages: list[list[bytes]] = field(default_factory=lambda: [[]])

    def new_page(self) -> None:
        """Start a new, empty page; later drawing goes there."""
        self.pages.append([])

    def text(
        self,
        x: int,
        y: int,
        text: str,
        *,
        size: int = 10,
        bold: bool = False,
        align: Literal["left", "right"] = "left",
    ) -> None:
        """Draw one line of ``text`` with its baseline at ``y``; ``x`` is its left or right edge."""
        left = x * 1000
        if align == "right":
            left -= text_width(text, size, bold=bold)
        font = b"/F2" if bold else b"/F1"
        self.pages[-1].append(
            b"BT %s %d Tf %s %d Td %s Tj ET"
            % (font, size, _points(left).encode(), PAGE_HEIGHT - y, _literal(text))
        )

    def rule(self, x1: int, y: int, x2: int) -> None:
        """Draw a thin horizontal line at ``y`` from ``x1`` to ``x2``."""
        row = PAGE_HEIGHT - y
        self.pages[-1].append(b"0.5 w %d %d m %d %d l S" % (x1, row, x2, row))

    def render(self) -> bytes:
        """The whole document as a PDF 1.4 file (content streams compressed)."""
        objects: list[bytes] = [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"",  # the page tree, filled in once the page objects are numbered
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold "
            b"/Encoding /WinAnsiEncoding >>",
            b"<< /Title %s /Producer (Portico) >>" % _literal(self.title),
        ]
        kids = []
        for operations in self.pages:
            stream = zlib.compress(b"\n".join(operations))
            objects.append(
                b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream"
                % (len(stream), stream)
            )
            content = len(objects)
            objects.append(
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] "
                b"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents %d 0 R >>"
                % (PAGE_WIDTH, PAGE_HEIGHT, content)
            )
            kids.append(b"%d 0 R" % len(objects))
        objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
        out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for number, body in enumerate(objects, start=1):
            offsets.append(len(out))
            out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
        out += b"trailer\n<< /Size %d /Root 1 0 R /Info 5 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
            len(objects) + 1,
            xref,
        )
        return bytes(out)
