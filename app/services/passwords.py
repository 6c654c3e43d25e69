"""The rules a new password must meet (set from an invitation, a reset or a change).

Length is what matters (NIST SP 800-63B): at least 12 characters, any characters,
spaces allowed, no composition rules; refused when it is the person's email or a
password everyone tries first. The upper bound matches the sign-in form's.
"""

from __future__ import annotations

from typing import Final

MIN_LENGTH: Final = 12
MAX_LENGTH: Final = 200
_COMMON: Final = frozenset(
    {
        "123456789012",
        "1234567890123",
        "qwertyuiopas",
        "password1234",
        "password12345",
        "passwordpassword",
        "iloveyou1234",
        "letmeinletmein",
        "portico-portico",
        "changemechangeme",
    }
)


def password_problem(password: str, *, email: str) -> str:
    """What is wrong with ``password`` as a new password for ``email``, or "" if nothing.

    The message is written for the person choosing it. Raises nothing.
    """
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    if not password.strip():
        return "Use some characters other than spaces."
    lowered = password.strip().lower()
    if len(set(lowered)) < 4:
        return "Use more than a few different characters."
    if lowered == email.strip().lower() or lowered == email.strip().lower().split("@")[0]:
        return "Do not use your email address as your password."
    if lowered in _COMMON:
        return "This password is too common. Choose another."
    return ""


def new_password_errors(password: str, confirm: str, *, email: str) -> dict[str, str]:
    """Per-field messages for a new password and its confirmation (keys ``password`` and
    ``confirm``), empty when both are fine. Raises nothing."""
    errors: dict[str, str] = {}
    problem = password_problem(password, email=email)
    if problem:
        errors["password"] = problem
    if confirm != password:
        errors["confirm"] = "The two passwords differ. Type the same one twice."
    return errors
