"""Dunning policies: validation with errors per field, and which stage is due when."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from app.domain.dunning import (
    DEFAULT_POLICY,
    PolicyInvalid,
    Recipient,
    Stage,
    StageKind,
    decide,
    latest_due_stage,
    parse_policy,
    policy_to_json,
    reschedule,
)

BOTH = ["customer", "partner"]


def _row(day: object, stage: str = "reminder", recipients: object = BOTH) -> dict[str, object]:
    return {"day": day, "stage": stage, "recipients": recipients}


def _errors(rows: list[dict[str, object]], **kwargs: bool) -> dict[str, str]:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(rows, **kwargs)
    return caught.value.errors


def test_is_the_default_policy_the_seeds_schedule() -> None:
    assert parse_policy(None) == DEFAULT_POLICY
    assert [(s.day, s.kind.value) for s in DEFAULT_POLICY] == [
        (5, "reminder"), (10, "reminder"), (15, "reminder"), (25, "reminder"),
        (30, "warning"), (35, "stop"),
    ]  # fmt: skip
    assert all(s.recipients == {Recipient.CUSTOMER, Recipient.PARTNER} for s in DEFAULT_POLICY)


def test_does_a_stored_policy_round_trip_through_json() -> None:
    policy = parse_policy([_row(3, recipients=["partner"]), _row(7), _row(20, "reminder")])
    assert parse_policy(policy_to_json(policy)) == policy
    assert policy[0] == Stage(3, StageKind.REMINDER, frozenset({Recipient.PARTNER}))


def test_do_form_strings_parse_like_numbers() -> None:
    assert parse_policy([_row(" 4 "), _row("9")]) == parse_policy([_row(4), _row(9)])


def test_must_days_increase_strictly_and_does_the_error_name_the_row() -> None:
    errors = _errors([_row(5), _row(5), _row(3)])
    assert set(errors) == {"stages-1-day", "stages-2-day"}
    assert errors["stages-1-day"] == "Stage 2: enter a day after day 5 of stage 1."
    assert "after day 5 of stage 2" in errors["stages-2-day"]


@pytest.mark.parametrize("day", [0, 366, -1, "", "five", "1.5", True, None, "9999999"])
def test_are_days_outside_1_to_365_or_not_whole_numbers_refused(day: object) -> None:
    errors = _errors([_row(day)])
    assert list(errors) == ["stages-0-day"]
    assert errors["stages-0-day"].startswith("Stage 1: enter")


def test_is_an_unknown_stage_kind_refused() -> None:
    assert _errors([_row(5, "nag")]) == {
        "stages-0-stage": "Stage 1: choose reminder, warning or stop."
    }


def test_needs_a_reminder_a_recipient_and_only_known_ones() -> None:
    assert _errors([_row(5, recipients=[])]) == {
        "stages-0-recipients": "Stage 1: choose at least one recipient."
    }
    assert "customer or partner" in _errors([_row(5, recipients=["boss"])])["stages-0-recipients"]


def test_does_a_stop_stage_tell_both_whatever_was_chosen() -> None:
    policy = parse_policy([_row(30, "warning"), _row(35, "stop", [])])
    assert policy[-1].recipients == {Recipient.CUSTOMER, Recipient.PARTNER}


def test_must_the_one_stop_stage_come_last_after_a_warning() -> None:
    assert (
        "must be the last"
        in _errors([_row(10, "warning"), _row(20, "stop"), _row(30)])["stages-1-stage"]
    )
    two_stops = _errors([_row(10, "warning"), _row(20, "stop"), _row(30, "stop")])
    assert two_stops["stages-2-stage"] == "Stage 3: a policy has one stop stage."
    assert (
        "add a warning stage before the stop"
        in _errors([_row(5), _row(35, "stop")])["stages-1-stage"]
    )
    assert "add a stop stage after it" in _errors([_row(5), _row(30, "warning")])["stages-1-stage"]


def test_are_empty_and_oversized_policies_refused() -> None:
    assert "at least one stage" in _errors([])["stages"]
    assert "at most 10" in _errors([_row(d) for d in range(1, 12)])["stages"]
    assert "at least one stage" in _errors([_row(""), _row(" ")], skip_blank=True)["stages"]


def test_do_spare_form_rows_keep_their_row_numbers_in_errors() -> None:
    policy = parse_policy([_row(3), _row(""), _row(9)], skip_blank=True)
    assert [s.day for s in policy] == [3, 9]
    errors = _errors([_row(3), _row(""), _row(2)], skip_blank=True)
    assert errors == {"stages-2-day": "Stage 3: enter a day after day 3 of stage 1."}


def test_is_the_first_error_the_exceptions_message_and_field() -> None:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy([_row(0)])
    assert caught.value.field == "stages-0-day"
    assert caught.value.message == "Stage 1: enter a day from 1 to 365."


def test_is_the_latest_due_stage_the_last_one_reached_after_the_handled_day() -> None:
    assert latest_due_stage(DEFAULT_POLICY, 4, 0) is None
    assert latest_due_stage(DEFAULT_POLICY, 5, 0) == DEFAULT_POLICY[0]
    assert latest_due_stage(DEFAULT_POLICY, 9, 5) is None
    assert latest_due_stage(DEFAULT_POLICY, 27, 5) == DEFAULT_POLICY[3]  # 10, 15 skipped
    assert latest_due_stage(DEFAULT_POLICY, 400, 35) is None


DUE = date(2031, 3, 31)


def test_does_an_invoice_turn_overdue_the_day_after_its_due_date() -> None:
    on_due_date = decide(DEFAULT_POLICY, due_date=DUE, dunning_day=0, status="created", as_of=DUE)
    assert (on_due_date.mark_overdue, on_due_date.next_on) == (False, DUE + timedelta(days=1))
    after = decide(
        DEFAULT_POLICY, due_date=DUE, dunning_day=0, status="created", as_of=DUE + timedelta(1)
    )
    assert (after.mark_overdue, after.stage, after.next_on) == (
        True, None, DUE + timedelta(days=5),
    )  # fmt: skip


def test_does_a_missed_week_send_only_the_latest_stage_and_skip_the_rest() -> None:
    decision = decide(
        DEFAULT_POLICY, due_date=DUE, dunning_day=5, status="overdue", as_of=DUE + timedelta(17)
    )
    assert decision.stage == DEFAULT_POLICY[2]  # day 15
    assert decision.skipped == (DEFAULT_POLICY[1],)  # day 10
    assert (decision.handled_day, decision.next_on) == (15, DUE + timedelta(days=25))


def test_does_the_sweep_stop_looking_after_the_last_stage() -> None:
    decision = decide(
        DEFAULT_POLICY, due_date=DUE, dunning_day=30, status="overdue", as_of=DUE + timedelta(35)
    )
    assert decision.stage is not None and decision.stage.kind == StageKind.STOP
    assert decision.next_on is None


def test_does_a_new_policy_apply_only_to_the_stages_still_ahead() -> None:
    policy = parse_policy([_row(3), _row(7), _row(20)])
    today = DUE + timedelta(days=12)
    assert reschedule(policy, due_date=DUE, dunning_day=10, as_of=today) == (
        11, DUE + timedelta(days=20),
    )  # fmt: skip
    assert reschedule(policy, due_date=DUE, dunning_day=0, as_of=DUE + timedelta(days=20)) == (
        19, DUE + timedelta(days=20),
    )  # fmt: skip
    assert reschedule(DEFAULT_POLICY, due_date=DUE, dunning_day=20, as_of=DUE + timedelta(40)) == (
        39, None,
    )  # fmt: skip
    not_due = reschedule(policy, due_date=DUE, dunning_day=0, as_of=DUE)
    assert not_due == (0, DUE + timedelta(days=1))
