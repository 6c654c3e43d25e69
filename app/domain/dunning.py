"""Dunning policies: which overdue-reminder stages a partner sends, and when (pure code).

A policy is an ordered tuple of :class:`Stage`: on day ``day`` after the due date an
unpaid invoice gets a ``reminder`` or a ``warning`` (service stops soon) email to the
customer and/or the partner, or service ``stop``s. The default (ARCHITECTURE §1, seed
002) reminds both at 5, 10, 15 and 25 days, warns at 30 and stops at 35.

Partners store their own policy as JSON; :func:`parse_policy` checks it (or a settings
form's rows) and raises :class:`PolicyInvalid` naming each field at fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Final

from app.domain.errors import InvalidInput
from app.domain.ids import parse_id


class StageKind(StrEnum):
    REMINDER = "reminder"
    WARNING = "warning"  # "service stops in N days"
    STOP = "stop"  # service stops (the account's subscriptions are suspended)


class Recipient(StrEnum):
    CUSTOMER = "customer"  # the invoice's billing email
    PARTNER = "partner"  # the partner's admins


BOTH: Final = frozenset({Recipient.CUSTOMER, Recipient.PARTNER})
DAY_RANGE: Final = (1, 365)
MAX_STAGES: Final = 10


@dataclass(frozen=True)
class Stage:
    """One step of a policy: on overdue day ``day``, do ``kind`` for ``recipients``.

    A stop stage always tells both the customer and the partner (service_stopped email).
    """

    day: int
    kind: StageKind
    recipients: frozenset[Recipient] = BOTH

    def to_json(self) -> dict[str, object]:
        """The stored form: ``{"day": 5, "stage": "reminder", "recipients": [...]}``."""
        return {
            "day": self.day,
            "stage": self.kind.value,
            "recipients": sorted(r.value for r in self.recipients),
        }


Policy = tuple[Stage, ...]

DEFAULT_POLICY: Final[Policy] = (
    Stage(5, StageKind.REMINDER),
    Stage(10, StageKind.REMINDER),
    Stage(15, StageKind.REMINDER),
    Stage(25, StageKind.REMINDER),
    Stage(30, StageKind.WARNING),
    Stage(35, StageKind.STOP),
)


class PolicyInvalid(InvalidInput):
    """A policy that breaks a rule; ``errors`` maps each field at fault to its message.

    Fields are ``stages-<n>-day``, ``stages-<n>-stage`` and ``stages-<n>-recipients``
    (``n`` counts rows from 0) and ``stages`` for the policy as a whole.
    """

    def __init__(self, errors: dict[str, str]) -> None:
        first_field, first_message = next(iter(errors.items()))
        super().__init__(first_message, first_field)
        self.errors = errors


def policy_to_json(policy: Policy) -> list[dict[str, object]]:
    """The JSON list stored in ``Partner.dunning_policy``."""
    return [stage.to_json() for stage in policy]


def parse_policy(
    rows: Sequence[Mapping[str, object]] | None, *, skip_blank: bool = False
) -> Policy:
    """Check a stored policy or a form's rows and return it as stages.

    ``None`` means the default policy. With ``skip_blank`` rows without a day are left
    out (a form's spare rows), and fields keep their row's number. Each row has ``day``
    (an int or digits), ``stage`` (reminder, warning or stop) and ``recipients`` (a list
    of customer and/or partner). Rules: one to ten stages; days from 1 to 365, strictly
    increasing; at least one recipient for reminders and warnings; at most one stop
    stage, and it is the last; a warning needs a stop stage after it, and a stop a
    warning before it.

    Raises:
        PolicyInvalid: with one message per field at fault.
    """
    if rows is None:
        return DEFAULT_POLICY
    errors: dict[str, str] = {}
    numbered = [(n, row) for n, row in enumerate(rows) if not (skip_blank and _blank(row))]
    if not numbered:
        raise PolicyInvalid({"stages": "Add at least one stage, such as a reminder at day 5."})
    if len(numbered) > MAX_STAGES:
        raise PolicyInvalid({"stages": f"A policy has at most {MAX_STAGES} stages."})
    parsed = {n: _parse_row(n, row, errors) for n, row in numbered}
    previous: tuple[int, int] | None = None  # (row, day) of the last readable day
    for n, (day, _kind, _recipients) in parsed.items():
        if day is None:
            continue
        if previous is not None and day <= previous[1]:
            errors.setdefault(
                f"stages-{n}-day",
                f"Stage {n + 1}: enter a day after day {previous[1]} of stage {previous[0] + 1}.",
            )
        previous = (n, day)
    _check_stop_and_warnings({n: kind for n, (_d, kind, _r) in parsed.items()}, errors)
    if errors:
        raise PolicyInvalid(errors)
    return tuple(
        Stage(day, kind, recipients)
        for day, kind, recipients in parsed.values()
        if day is not None and kind is not None and recipients
    )


def _blank(row: Mapping[str, object]) -> bool:
    day = row.get("day")
    return day is None or (isinstance(day, str) and not day.strip())


def _parse_row(
    n: int, row: Mapping[str, object], errors: dict[str, str]
) -> tuple[int | None, StageKind | None, frozenset[Recipient]]:
    """A row's day, kind and recipients, each None/empty when unreadable (noted in errors)."""
    label = f"Stage {n + 1}"
    low, high = DAY_RANGE
    raw_day = row.get("day")
    day: int | None = None
    if isinstance(raw_day, int) and not isinstance(raw_day, bool):
        day = raw_day
    elif isinstance(raw_day, str) and len(raw_day.strip()) < 6:
        day = parse_id(raw_day)
    if day is None:
        errors[f"stages-{n}-day"] = f"{label}: enter the day as a whole number, such as 5."
    elif not low <= day <= high:
        errors[f"stages-{n}-day"] = f"{label}: enter a day from {low} to {high}."
        day = None
    try:
        kind: StageKind | None = StageKind(str(row.get("stage", "")))
    except ValueError:
        errors[f"stages-{n}-stage"] = f"{label}: choose reminder, warning or stop."
        kind = None
    raw_recipients = row.get("recipients") or ()
    if isinstance(raw_recipients, str):
        raw_recipients = [raw_recipients]
    recipients: set[Recipient] = set()
    for value in raw_recipients if isinstance(raw_recipients, Sequence) else ():
        try:
            recipients.add(Recipient(str(value)))
        except ValueError:
            errors[f"stages-{n}-recipients"] = f"{label}: recipients are customer or partner."
    if kind == StageKind.STOP:
        recipients = set(BOTH)  # service_stopped always goes to both
    elif kind is not None and not recipients and f"stages-{n}-recipients" not in errors:
        errors[f"stages-{n}-recipients"] = f"{label}: choose at least one recipient."
    return day, kind, frozenset(recipients)


def _check_stop_and_warnings(kinds: dict[int, StageKind | None], errors: dict[str, str]) -> None:
    stops = [n for n, kind in kinds.items() if kind == StageKind.STOP]
    last = max(kinds)
    for n in stops[1:]:
        errors.setdefault(f"stages-{n}-stage", f"Stage {n + 1}: a policy has one stop stage.")
    if stops and stops[0] != last:
        errors.setdefault(
            f"stages-{stops[0]}-stage",
            f"Stage {stops[0] + 1}: the stop stage must be the last stage.",
        )
    warnings = [n for n, kind in kinds.items() if kind == StageKind.WARNING]
    for n in warnings:
        if not stops or stops[0] < n:
            errors.setdefault(
                f"stages-{n}-stage",
                f"Stage {n + 1}: a warning says when service stops, so add a stop stage after it.",
            )
    if stops and not any(n < stops[0] for n in warnings):
        errors.setdefault(
            f"stages-{stops[0]}-stage",
            f"Stage {stops[0] + 1}: add a warning stage before the stop, "
            "so the customer learns when service stops.",
        )


# -- when stages fall due ------------------------------------------------------------------


def days_overdue(due_date: date, as_of: date) -> int:
    """Days past the due date on ``as_of`` (0 or less: not overdue yet)."""
    return (as_of - due_date).days


def latest_due_stage(policy: Policy, days_overdue: int, after_day: int) -> Stage | None:
    """The last stage with ``after_day < day <= days_overdue`` (None when none is due).

    A run that was missed sends only this one; the earlier ones are recorded as skipped.
    """
    due = [s for s in policy if after_day < s.day <= days_overdue]
    return due[-1] if due else None


def stages_between(policy: Policy, after_day: int, before_day: int) -> list[Stage]:
    """The stages with ``after_day < day < before_day`` (those a catch-up skips)."""
    return [s for s in policy if after_day < s.day < before_day]


def next_stage(policy: Policy, after_day: int) -> Stage | None:
    """The first stage after overdue day ``after_day`` (None when the policy is done)."""
    return next((s for s in policy if s.day > after_day), None)


def stop_stage(policy: Policy) -> Stage | None:
    """The policy's stop stage, if it has one."""
    return next((s for s in policy if s.kind == StageKind.STOP), None)


@dataclass(frozen=True)
class Decision:
    """What the sweep does to one unpaid invoice on ``as_of``.

    ``stage`` is sent (None: nothing due), ``skipped`` are recorded without sending,
    ``mark_overdue`` turns a ``created`` invoice ``overdue``; ``handled_day`` becomes the
    invoice's ``dunning_day`` and ``next_on`` its ``next_dunning_on``.
    """

    days: int
    mark_overdue: bool
    stage: Stage | None
    skipped: tuple[Stage, ...]
    handled_day: int
    next_on: date | None


def decide(
    policy: Policy, *, due_date: date, dunning_day: int, status: str, as_of: date
) -> Decision:
    """What to do with an unpaid ``created``/``overdue`` invoice on ``as_of``.

    Not yet past its due date: nothing, look again the day after it. Past it: turn it
    ``overdue``, send the latest stage now due after ``dunning_day`` (skipping earlier
    ones a missed run left), and look again on the next stage's day (None when none is
    left). Raises nothing.
    """
    days = days_overdue(due_date, as_of)
    if days <= 0:
        return Decision(days, False, None, (), dunning_day, due_date + timedelta(days=1))
    stage = latest_due_stage(policy, days, dunning_day)
    skipped = tuple(stages_between(policy, dunning_day, stage.day)) if stage else ()
    handled = stage.day if stage else dunning_day
    following = next_stage(policy, days)  # every stage up to today is handled or skipped
    next_on = due_date + timedelta(days=following.day) if following else None
    return Decision(days, status == "created", stage, skipped, handled, next_on)


def reschedule(
    policy: Policy, *, due_date: date, dunning_day: int, as_of: date
) -> tuple[int, date | None]:
    """An overdue invoice's ``(dunning_day, next_dunning_on)`` under a new policy.

    A policy change applies to the stages still ahead: overdue days before ``as_of``
    count as passed, so no stage that fell in the past is sent because of the change.
    Invoices not yet overdue keep ``dunning_day`` and their first look the day after
    the due date. Raises nothing.
    """
    days = days_overdue(due_date, as_of)
    if days <= 0:
        return dunning_day, due_date + timedelta(days=1)
    passed = max(dunning_day, days - 1)
    following = next_stage(policy, passed)
    return passed, due_date + timedelta(days=following.day) if following else None
