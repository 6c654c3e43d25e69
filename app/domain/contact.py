"""Checks on contact details typed into forms."""

from __future__ import annotations

MAX_EMAIL_LENGTH = 254


def is_email(value: str) -> bool:
    """Whether ``value`` is a well-formed email address (no DNS lookup)."""
    from email_validator import EmailNotValidError, validate_email

    if not value or len(value) > MAX_EMAIL_LENGTH:
        return False
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True
