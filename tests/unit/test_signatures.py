"""Signature checks on the approval page (pure): names, typed and drawn signatures."""

from __future__ import annotations

import base64

import pytest

from app.domain.signatures import (
    MAX_DRAWN_BYTES,
    PNG_MAGIC,
    SignatureKind,
    check_signature,
    png_bytes,
)


def _png_url(size: int) -> str:
    body = PNG_MAGIC + b"\0" * (size - len(PNG_MAGIC))
    return "data:image/png;base64," + base64.b64encode(body).decode()


def test_is_a_typed_signature_kept_with_its_spaces_squashed() -> None:
    signature, errors = check_signature("  Nora   Quist ", "typed", " Nora  Q. ")
    assert errors == {}
    assert signature is not None
    assert (signature.signer_name, signature.kind, signature.value) == (
        "Nora Quist",
        SignatureKind.TYPED,
        "Nora Q.",
    )


def test_is_every_problem_reported_at_once_by_field() -> None:
    signature, errors = check_signature("", "typed", "   ")
    assert signature is None and set(errors) == {"signer_name", "signature"}
    _, errors = check_signature("N" * 201, "scribbled", "x")
    assert set(errors) == {"signer_name", "signature_kind"}
    assert check_signature("N" * 200, "typed", "S" * 200)[1] == {}
    assert "at most 200" in check_signature("Nora", "typed", "S" * 201)[1]["signature"]


@pytest.mark.parametrize(
    ("size", "accepted"), [(MAX_DRAWN_BYTES, True), (MAX_DRAWN_BYTES + 1, False)]
)
def test_is_a_drawn_signature_limited_to_200_kb(size: int, accepted: bool) -> None:
    signature, errors = check_signature("Nora", "drawn", _png_url(size))
    assert (signature is not None) is accepted
    assert accepted or "too large" in errors["signature"]


def test_are_the_png_bytes_of_a_drawn_signature_read_back() -> None:
    assert png_bytes(_png_url(100)) == PNG_MAGIC + b"\0" * 92
    for bad in ("data:image/gif;base64,R0lG", "data:image/png;base64,R0lGODlh", "data:,x"):
        with pytest.raises(ValueError):
            png_bytes(bad)
