"""The account history words customer-portal events for people, never showing form nonces."""

from __future__ import annotations

from app.services.history import Subject, describe

MEMBERSHIP = Subject("Community membership", "USD")


def test_a_scheduled_payment_reads_as_a_sentence_without_its_form_reference() -> None:
    detail = {
        "amount": "$40.00",
        "invoice": "INV-001-000004",
        "pay_on": "2026-11-24",
        "method": "Visa •••• 4242",
        "form_reference": "nonce-abc",
    }

    text, details = describe("scheduled_payment.created", detail, Subject("", "USD"))

    assert text == "Scheduled a payment of $40.00 for 2026-11-24"
    assert details == ["Invoice INV-001-000004", "With Visa •••• 4242"]


def test_a_failed_scheduled_payment_gives_its_reason() -> None:
    text, details = describe(
        "scheduled_payment.failed", {"amount": "$40.00", "reason": "Card declined"}, MEMBERSHIP
    )

    assert (text, details) == ("Scheduled payment of $40.00 failed", ["Reason: Card declined"])


def test_a_customer_cancellation_names_the_subscription_and_its_end() -> None:
    text, details = describe(
        "subscription.canceled_by_customer", {"ends_on": "2026-11-30", "at_once": False}, MEMBERSHIP
    )

    assert text == "Canceled subscription “Community membership” at the end of the period"
    assert details == ["Ends on 2026-11-30"]


def test_an_unworded_event_hides_the_form_reference() -> None:
    _text, details = describe(
        "payment_method.other", {"form_reference": "n", "last4": "4242"}, MEMBERSHIP
    )

    assert details == ["Last4: 4242"]
