"""Card and bank account entry: the boundary where raw numbers become a gateway token.

The view hands the posted fields to the processor's tokenization at once; services only
ever receive the resulting token, brand and last 4. Nothing here logs or stores a number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from app.gateway.base import (
    BankAccountDetails,
    CardDetails,
    PaymentGateway,
    PaymentMethodRejected,
    TokenizedMethod,
)
from app.services.widget_payments import FieldErrors

# The gateway names fields by what they are; the form names them by its inputs.
_FORM_FIELD = {
    "number": "card_number",
    "exp": "exp",
    "cvc": "cvc",
    "routing_number": "routing_number",
    "account_number": "account_number",
}
_EXPIRY = re.compile(r"^\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*$")
SENSITIVE_FIELDS = ("card_number", "cvc", "account_number", "routing_number")


def chosen_kind(form: Mapping[str, str], *, accept_card: bool, accept_bank: bool) -> str:
    """The method kind the payer picked (defaulting to the only one offered)."""
    kind = form.get("method", "")
    if kind == "bank_account" and accept_bank:
        return "bank_account"
    if kind == "card" and accept_card:
        return "card"
    return "card" if accept_card else "bank_account"


def tokenize_from_form(
    gateway: PaymentGateway, form: Mapping[str, str], *, kind: str, holder_name: str
) -> TokenizedMethod:
    """Tokenize the card or bank account posted in ``form``.

    A ``payment_token`` made by the processor's hosted card entry is used as it is (the
    processor describes it); otherwise the raw fields are tokenized here.
    Raises FieldErrors naming the form field at fault (nothing was charged or stored).
    """
    hosted = form.get("payment_token", "").strip()
    if hosted:
        return _tokenize(lambda: gateway.describe_payment_method(hosted))
    if kind == "bank_account":
        routing, account = (
            form.get("routing_number", "").strip(),
            form.get("account_number", "").strip(),
        )
        errors = {}
        if not routing:
            errors["routing_number"] = "Enter the 9-digit routing number."
        if not account:
            errors["account_number"] = "Enter the account number."
        if errors:
            raise FieldErrors(errors)
        details = BankAccountDetails(
            routing_number=routing, account_number=account, account_holder=holder_name
        )
        return _tokenize(lambda: gateway.tokenize_bank_account(details))
    number = re.sub(r"[\s-]", "", form.get("card_number", ""))
    errors = {}
    if not number:
        errors["card_number"] = "Enter the card number."
    match = _EXPIRY.match(form.get("exp", ""))
    if not match:
        errors["exp"] = "Enter the expiration date as MM/YY."
    cvc = form.get("cvc", "").strip()
    if not cvc:
        errors["cvc"] = "Enter the 3- or 4-digit security code."
    if errors:
        raise FieldErrors(errors)
    assert match is not None
    month, year = int(match.group(1)), int(match.group(2))
    card = CardDetails(
        number=number,
        exp_month=month,
        exp_year=year + 2000 if year < 100 else year,
        cvc=cvc,
        name=holder_name,
    )
    return _tokenize(lambda: gateway.tokenize_card(card))


def _tokenize(call) -> TokenizedMethod:  # noqa: ANN001
    try:
        return call()
    except PaymentMethodRejected as exc:
        raise FieldErrors({_FORM_FIELD.get(exc.field, "card_number"): exc.message}) from None


def kept_values(form: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The non-sensitive fields to show again after an error (never card or account numbers)."""
    return {name: form.get(name, "") for name in names if name not in SENSITIVE_FIELDS}
