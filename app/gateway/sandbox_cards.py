"""The sandbox processor's documented test numbers and input checks.

This module is the one place that lists which card and bank numbers the sandbox
accepts and what each of them does, so the README and the dev card-entry page can show
the same table the processor uses. It is pure code: no database, no clock reads except
the ``today`` the caller passes in.

Only behaviour-determining facts leave this module (brand, last 4, expiry, a behaviour
code and a keyed fingerprint); the full number and the CVC are never returned.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Final

from app.gateway.base import (
    BankAccountDetails,
    CardDetails,
    MethodKind,
    Outcome,
    PaymentMethodRejected,
)

SANDBOX_BANK_NAME = "STRIPE TEST BANK"
TEST_ROUTING_NUMBER = "110000000"

# A fixed key: fingerprints only need to be stable inside the sandbox, and only the
# documented test numbers (never real cards) ever get this far.
_FINGERPRINT_KEY = b"portico-sandbox-fingerprint"


@dataclass(frozen=True)
class Behaviour:
    """What the sandbox answers when a payment method is charged or attached."""

    code: str
    status: Outcome
    decline_code: str = ""
    message: str = ""
    retryable: bool = False
    attaches: bool = True

    @property
    def approves(self) -> bool:
        """Whether charging a method with this behaviour succeeds."""
        return self.status == "approved"


_DECLINED = "Your card was declined."

# Not a test number's behaviour: what a payment method becomes once it is detached
# from its customer (it can never be charged, attached or described again).
DETACHED: Final = "detached"

BEHAVIOURS: Mapping[str, Behaviour] = MappingProxyType(
    {
        b.code: b
        for b in (
            Behaviour("approve", "approved"),
            Behaviour("decline", "declined", "card_declined", _DECLINED, attaches=False),
            Behaviour(
                "insufficient_funds",
                "declined",
                "insufficient_funds",
                "Your card was declined: insufficient funds.",
                attaches=False,
            ),
            Behaviour("lost_card", "declined", "lost_card", _DECLINED, attaches=False),
            Behaviour(
                "expired_card", "declined", "expired_card", "Your card has expired.", attaches=False
            ),
            Behaviour(
                "incorrect_cvc",
                "declined",
                "incorrect_cvc",
                "Your card's security code is incorrect.",
                attaches=False,
            ),
            Behaviour(
                "processing_error",
                "error",
                "processing_error",
                "An error occurred while processing your card. Try again.",
                retryable=True,
                attaches=False,
            ),
            Behaviour("decline_after_attach", "declined", "card_declined", _DECLINED),
            Behaviour(
                "no_account",
                "declined",
                "no_account",
                "The bank account could not be found.",
                attaches=False,
            ),
            Behaviour(
                "bank_insufficient_funds",
                "declined",
                "insufficient_funds",
                "The bank account has insufficient funds.",
                attaches=False,
            ),
            Behaviour(
                DETACHED,
                "error",
                "payment_method_unavailable",
                "This payment method was removed and can no longer be used.",
                attaches=False,
            ),
        )
    }
)


@dataclass(frozen=True)
class TestCard:
    """One documented sandbox card number and what it does."""

    __test__ = False  # not a pytest test class despite the name

    number: str
    brand: str
    behaviour: str
    description: str

    @property
    def digits(self) -> str:
        """The number without spaces, as it is typed into an API."""
        return self.number.replace(" ", "")


@dataclass(frozen=True)
class TestBankAccount:
    """One documented sandbox bank account (routing + account number) and what it does."""

    __test__ = False

    routing_number: str
    account_number: str
    behaviour: str
    description: str


TEST_CARDS: tuple[TestCard, ...] = (
    TestCard("4242 4242 4242 4242", "visa", "approve", "Approves."),
    TestCard("5555 5555 5555 4444", "mastercard", "approve", "Approves."),
    TestCard("3782 822463 10005", "amex", "approve", "Approves (4-digit CVC)."),
    TestCard("4000 0000 0000 0002", "visa", "decline", "Declines: card declined."),
    TestCard("4000 0000 0000 9995", "visa", "insufficient_funds", "Declines: insufficient funds."),
    TestCard("4000 0000 0000 9987", "visa", "lost_card", "Declines: lost card."),
    TestCard("4000 0000 0000 0069", "visa", "expired_card", "Declines: expired card."),
    TestCard("4000 0000 0000 0127", "visa", "incorrect_cvc", "Declines: incorrect CVC."),
    TestCard("4000 0000 0000 0119", "visa", "processing_error", "Errors: processing error."),
    TestCard(
        "4000 0000 0000 0341",
        "visa",
        "decline_after_attach",
        "Saves to a customer, then declines when charged.",
    ),
)

TEST_BANK_ACCOUNTS: tuple[TestBankAccount, ...] = (
    TestBankAccount(TEST_ROUTING_NUMBER, "000123456789", "approve", "Approves."),
    TestBankAccount(TEST_ROUTING_NUMBER, "000111111116", "no_account", "Declines: no account."),
    TestBankAccount(
        TEST_ROUTING_NUMBER,
        "000222222227",
        "bank_insufficient_funds",
        "Declines: insufficient funds.",
    ),
)

_CARDS_BY_DIGITS: Mapping[str, TestCard] = MappingProxyType({c.digits: c for c in TEST_CARDS})
_ACCOUNTS: Mapping[tuple[str, str], TestBankAccount] = MappingProxyType(
    {(a.routing_number, a.account_number): a for a in TEST_BANK_ACCOUNTS}
)


@dataclass(frozen=True)
class CheckedMethod:
    """A payment method that passed the checks: only what the sandbox may keep."""

    kind: MethodKind
    last4: str
    behaviour: str
    fingerprint: str
    brand: str = ""
    exp_month: int | None = None
    exp_year: int | None = None
    bank_name: str = ""


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn (mod 10) check."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def aba_valid(routing_number: str) -> bool:
    """Whether a 9-digit US routing number passes the ABA checksum (3-7-1 weights)."""
    if len(routing_number) != 9 or not routing_number.isdigit():
        return False
    d = [int(c) for c in routing_number]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10 == 0


def behaviour_of(code: str) -> Behaviour:
    """The behaviour for a stored code. Raises KeyError for an unknown code."""
    return BEHAVIOURS[code]


def _fingerprint(material: str) -> str:
    return hmac.new(_FINGERPRINT_KEY, material.encode(), hashlib.sha256).hexdigest()[:32]


def check_card(card: CardDetails, *, today: date) -> CheckedMethod:
    """Validate card input the way a card network does in test mode.

    Args:
        card: the raw form input; spaces in the number are allowed.
        today: the current date, for the expiry check.

    Raises:
        PaymentMethodRejected: ``invalid_number`` (field ``number``) when the number is
            not 12–19 digits or fails Luhn; ``card_declined`` (field ``number``) for a
            valid number that is not a documented test card; ``invalid_expiry_month``,
            ``invalid_expiry_year`` or ``expired_card`` (field ``exp``);
            ``invalid_cvc`` (field ``cvc``) when the CVC is not 3 digits (4 for Amex).
    """
    digits = card.number.replace(" ", "")
    if not (digits.isdigit() and 12 <= len(digits) <= 19 and luhn_valid(digits)):
        raise PaymentMethodRejected("invalid_number", "Your card number is incorrect.", "number")
    test_card = _CARDS_BY_DIGITS.get(digits)
    if test_card is None:
        # Like a processor in test mode: a real card number is refused, never charged.
        raise PaymentMethodRejected(
            "card_declined",
            "Your card was declined: use one of the sandbox test card numbers.",
            "number",
        )
    if not 1 <= card.exp_month <= 12:
        raise PaymentMethodRejected(
            "invalid_expiry_month", "Your card's expiration month is invalid.", "exp"
        )
    exp_year = card.exp_year + 2000 if 0 <= card.exp_year < 100 else card.exp_year
    if not today.year - 100 < exp_year <= today.year + 50:
        raise PaymentMethodRejected(
            "invalid_expiry_year", "Your card's expiration year is invalid.", "exp"
        )
    if (exp_year, card.exp_month) < (today.year, today.month):
        raise PaymentMethodRejected("expired_card", "Your card has expired.", "exp")
    cvc_length = 4 if test_card.brand == "amex" else 3
    if not (card.cvc.isdigit() and len(card.cvc) == cvc_length):
        raise PaymentMethodRejected("invalid_cvc", "Your card's security code is invalid.", "cvc")
    return CheckedMethod(
        kind="card",
        last4=digits[-4:],
        behaviour=test_card.behaviour,
        fingerprint=_fingerprint(f"card:{digits}"),
        brand=test_card.brand,
        exp_month=card.exp_month,
        exp_year=exp_year,
    )


def check_bank_account(account: BankAccountDetails) -> CheckedMethod:
    """Validate US bank account (ACH) input against the sandbox test accounts.

    Raises:
        PaymentMethodRejected: ``invalid_routing_number`` (field ``routing_number``) when
            the routing number fails the ABA checksum or is not the sandbox test routing
            number; ``invalid_account_number`` (field ``account_number``) when the account
            number is not 4–17 digits or not a documented test account.
    """
    routing = account.routing_number.strip()
    number = account.account_number.strip()
    if not aba_valid(routing):
        raise PaymentMethodRejected(
            "invalid_routing_number", "The routing number is incorrect.", "routing_number"
        )
    if routing != TEST_ROUTING_NUMBER:
        raise PaymentMethodRejected(
            "invalid_routing_number",
            f"Use the sandbox test routing number {TEST_ROUTING_NUMBER}.",
            "routing_number",
        )
    if not (number.isdigit() and 4 <= len(number) <= 17):
        raise PaymentMethodRejected(
            "invalid_account_number", "The account number is incorrect.", "account_number"
        )
    test_account = _ACCOUNTS.get((routing, number))
    if test_account is None:
        raise PaymentMethodRejected(
            "invalid_account_number",
            "Use one of the sandbox test account numbers.",
            "account_number",
        )
    return CheckedMethod(
        kind="bank_account",
        last4=number[-4:],
        behaviour=test_account.behaviour,
        fingerprint=_fingerprint(f"bank:{routing}:{number}"),
        bank_name=SANDBOX_BANK_NAME,
    )
