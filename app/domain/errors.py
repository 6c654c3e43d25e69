"""Domain errors. One error handler maps them to HTTP statuses (404/409/422)."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a service raises on purpose; ``message`` is for people."""

    status_code = 422

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """The record does not exist, or belongs to another tenant (never say which)."""

    status_code = 404


class Conflict(DomainError):
    """The request is valid but the record's state forbids it now."""

    status_code = 409


class InvalidInput(DomainError):
    """Input that breaks a rule; ``field`` names the form field at fault (or "")."""

    status_code = 422

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class CurrencyMismatch(InvalidInput):
    """Arithmetic or comparison between amounts of two currencies."""


class Forbidden(DomainError):
    """The person may see the record but not do this; ``message`` says why."""

    status_code = 403


class FieldsInvalid(InvalidInput):
    """Every bad field of a form: ``errors`` maps field names to messages (nothing was
    saved); ``message`` and ``field`` name the first, for callers that show only one."""

    def __init__(self, errors: dict[str, str]) -> None:
        first_field, first_message = next(iter(errors.items()))
        super().__init__(first_message, first_field)
        self.errors = dict(errors)
