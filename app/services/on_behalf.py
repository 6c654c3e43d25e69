"""Billing on behalf: the activation wizard's draft, its checks, and the atomic confirm.

A partner user switches a customer account to be billed by the platform (ARCHITECTURE §1,
seed 002): (1) a start date, the first day of next month at the earliest, and a billing
email; (2) the subscriptions whose start date or price should change; (3) for each of
them, one step at a time, the new start date and price; (4) a review and **Confirm**.
Every step saves into a server-side draft (one per account and user), so a reload, the
browser's Back button or a second tab continue from the same place; confirming applies
everything in one transaction under the account's row lock, so two tabs confirming at
once activate once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from app.domain import schedule as rules
from app.domain.contact import is_email
from app.domain.errors import Conflict, InvalidInput, NotFound
from app.domain.money import format_plain, parse_amount
from app.models import CustomerAccount, OnBehalfDraft, Partner, Subscription, User
from app.services.audit_log import add_event
from app.services.schedules import refresh_next_charge_date, schedule_of
from app.services.tenancy import customer_for, partner_of

CHANGEABLE = (
    rules.SubscriptionStatus.RECURRING,
    rules.SubscriptionStatus.STOPPED,
    rules.SubscriptionStatus.ERROR,
    rules.SubscriptionStatus.SUSPENDED,
)


class StepInvalid(InvalidInput):
    """Every bad field of a wizard step, by field name (nothing was saved)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(next(iter(errors.values())), next(iter(errors)))
        self.errors = errors


@dataclass(frozen=True)
class ReviewRow:
    """One subscription on the review screen: its values before and after."""

    subscription: Subscription
    old_start: date
    new_start: date
    old_price: int | None
    new_price: int | None

    @property
    def changed(self) -> bool:
        return (self.old_start, self.old_price) != (self.new_start, self.new_price)


def earliest_start(as_of: date) -> date:
    """The first day of the month after ``as_of``: billing on behalf starts no sooner."""
    return date(as_of.year + as_of.month // 12, as_of.month % 12 + 1, 1)


def is_eligible(partner: Partner, countries: tuple[str, ...]) -> bool:
    """Whether the partner's country may use billing on behalf."""
    return partner.country.upper() in countries


def ineligible_reason(partner: Partner, countries: tuple[str, ...]) -> str:
    """Why the partner cannot use billing on behalf ("" when it can)."""
    if is_eligible(partner, countries):
        return ""
    return (
        "Billing on behalf is available to partners in "
        f"{', '.join(countries) or 'no country yet'} only; {partner.name} is in {partner.country}."
    )


def open_wizard(
    session: Session, user: User, account_id: int, *, countries: tuple[str, ...]
) -> tuple[CustomerAccount, OnBehalfDraft]:
    """The account and this user's draft for it (created on first use; commits then).

    Raises:
        NotFound: not the user's partner's account.
        Conflict: the partner's country is not eligible, or the account is already
            billed on behalf.
    """
    account = customer_for(session, user, account_id)
    partner = partner_of(session, user)
    reason = ineligible_reason(partner, countries)
    if reason:
        raise Conflict(reason)
    if account.on_behalf_start is not None:
        raise Conflict("Billing on behalf is already active for this account.")
    draft = session.exec(
        select(OnBehalfDraft).where(
            OnBehalfDraft.customer_account_id == account.id, OnBehalfDraft.user_id == user.id
        )
    ).first()
    if draft is None:
        draft = OnBehalfDraft(
            partner_id=account.partner_id,
            customer_account_id=account.id,  # type: ignore[arg-type]
            user_id=user.id,  # type: ignore[arg-type]
            billing_email=account.billing_email or account.email,
        )
        session.add(draft)
        session.commit()
    return account, draft


def changeable_subscriptions(session: Session, account_id: int) -> list[Subscription]:
    """The account's subscriptions whose start date or price may change, oldest first."""
    return list(
        session.exec(
            select(Subscription)
            .where(
                Subscription.customer_account_id == account_id,
                col(Subscription.status).in_(CHANGEABLE),
            )
            .order_by(col(Subscription.id))
        ).all()
    )


def save_start(
    session: Session, draft: OnBehalfDraft, *, start_text: str, email_text: str, as_of: date
) -> None:
    """Step 1: keep the start date and billing email (commits).

    Raises StepInvalid naming ``start_date`` and/or ``billing_email``.
    """
    errors: dict[str, str] = {}
    start = _date_or_error(start_text, "start_date", errors)
    earliest = earliest_start(as_of)
    if start is not None and start < earliest:
        errors["start_date"] = f"Choose {earliest:%B %-d, %Y} or later."
    email = email_text.strip()
    if not is_email(email):
        errors["billing_email"] = "Enter a billing email such as billing@example.com."
    if errors:
        raise StepInvalid(errors)
    draft.start_date, draft.billing_email = start, email
    _save(session, draft)


def save_choice(
    session: Session, draft: OnBehalfDraft, *, wants_changes: bool, chosen: list[int]
) -> None:
    """Step 2: keep which subscriptions will change (commits).

    Values already entered for a subscription that stays chosen are kept.
    Raises StepInvalid (``subscriptions``) when changes were requested but none chosen,
    or a chosen id is not one of the account's changeable subscriptions.
    """
    allowed = [s.id for s in changeable_subscriptions(session, draft.customer_account_id)]
    picked = [i for i in allowed if i in set(chosen)] if wants_changes else []
    if wants_changes and not picked:
        raise StepInvalid({"subscriptions": "Choose at least one subscription to change."})
    if set(chosen) - set(allowed):
        raise StepInvalid({"subscriptions": "Choose among this account's subscriptions."})
    draft.wants_changes = wants_changes
    draft.chosen = picked  # type: ignore[assignment]
    draft.changes = {k: v for k, v in draft.changes.items() if int(k) in picked}
    _save(session, draft)


def step_values(
    session: Session, draft: OnBehalfDraft, position: int
) -> tuple[Subscription, str, str]:
    """The subscription at wizard position ``position`` (1-based) and the start date and
    price to show: what was entered before, else the activation date and current price.

    Raises NotFound for a position outside the chosen subscriptions.
    """
    sub = _chosen(session, draft, position)
    saved = draft.changes.get(str(sub.id), {})
    start = saved.get("start_date") or (draft.start_date.isoformat() if draft.start_date else "")
    price = saved.get("price_text") or _price_text(sub)
    return sub, start, price


def save_step(
    session: Session,
    draft: OnBehalfDraft,
    position: int,
    *,
    start_text: str,
    price_text: str,
    as_of: date,
) -> None:
    """Step 3: keep one subscription's new start date and price (commits).

    Raises:
        NotFound: a position outside the chosen subscriptions.
        StepInvalid: ``start_date`` before the earliest allowed date or malformed;
            ``price`` negative, zero or malformed.
    """
    sub = _chosen(session, draft, position)
    errors: dict[str, str] = {}
    start = _date_or_error(start_text, "start_date", errors)
    earliest = earliest_start(as_of)
    if start is not None and start < earliest:
        errors["start_date"] = f"Choose {earliest:%B %-d, %Y} or later."
    price = 0
    try:
        price = parse_amount(price_text, sub.currency, field="price")
    except InvalidInput as exc:
        errors["price"] = exc.message
    if errors:
        raise StepInvalid(errors)
    changes = dict(draft.changes)
    changes[str(sub.id)] = {
        "start_date": start.isoformat(),  # type: ignore[union-attr]
        "price": price,
        "price_text": price_text.strip(),
    }
    draft.changes = changes
    _save(session, draft)


def review(session: Session, draft: OnBehalfDraft) -> list[ReviewRow]:
    """Step 4: every changeable subscription with its old and new start date and price.

    Raises Conflict when an earlier step is missing (the user is sent back to it).
    """
    if draft.start_date is None:
        raise Conflict("Choose the start date and billing email first.")
    missing = [i for i in draft.chosen if str(i) not in draft.changes]
    if missing:
        raise Conflict("Set the start date and price of every chosen subscription first.")
    rows = []
    for sub in changeable_subscriptions(session, draft.customer_account_id):
        change = draft.changes.get(str(sub.id))
        new_start = date.fromisoformat(change["start_date"]) if change else sub.start_date
        new_price = int(change["price"]) if change else sub.manual_amount
        rows.append(ReviewRow(sub, sub.start_date, new_start, sub.manual_amount, new_price))
    return rows


def confirm(
    session: Session, user: User, draft: OnBehalfDraft, *, version: int, as_of: date, now: datetime
) -> CustomerAccount:
    """Step 5: apply the draft in one transaction and delete it (commits).

    The account row is locked first: a second confirmation (another tab) finds billing on
    behalf active and changes nothing. Changed subscriptions restart on their new start
    date with their new price; history rows record who did what.

    Raises:
        Conflict: already active, the draft changed since it was reviewed (``version``),
            or a step is missing. Nothing is written then.
    """
    account_id, draft_id = draft.customer_account_id, draft.id
    # The lock is the transaction's first statement, so on SQLite (no row locks) the write
    # lock is taken before anything is read and a second confirmation waits, then sees it.
    session.rollback()
    account = _locked_account(session, account_id)
    if account.on_behalf_start is not None:
        session.rollback()
        raise Conflict("Billing on behalf is already active for this account.")
    current = session.get(OnBehalfDraft, draft_id, populate_existing=True)
    if current is None or version != current.version:
        session.rollback()
        raise Conflict("This activation changed in another tab. Review it again, then confirm.")
    draft = current
    try:
        rows = review(session, draft)
    except Conflict:
        session.rollback()
        raise
    assert draft.start_date is not None
    account.on_behalf_start = draft.start_date
    account.on_behalf_email = draft.billing_email
    session.add(account)
    _audit(session, user, account, "billing_on_behalf.activated", "account", account.id,
           start_date=draft.start_date.isoformat(), billing_email=draft.billing_email)  # fmt: skip
    for row in rows:
        if row.changed:
            _apply(session, user, row, as_of=as_of, now=now)
    session.delete(draft)
    session.commit()
    return account


def update_billing_email(session: Session, user: User, account_id: int, email_text: str) -> str:
    """Change the billing-on-behalf email in place (commits); returns the new email.

    Raises:
        NotFound: not the user's partner's account.
        Conflict: the account is not billed on behalf.
        StepInvalid: a malformed email (``billing_email``); nothing changes.
    """
    account = customer_for(session, user, account_id)
    if account.on_behalf_start is None:
        raise Conflict("Billing on behalf is not active for this account.")
    email = email_text.strip()
    if not is_email(email):
        raise StepInvalid({"billing_email": "Enter a billing email such as billing@example.com."})
    if email != account.on_behalf_email:
        _audit(session, user, account, "billing_on_behalf.email_changed", "account", account.id,
               old=account.on_behalf_email, new=email)  # fmt: skip
        account.on_behalf_email = email
        session.add(account)
    session.commit()
    return email


def _apply(session: Session, user: User, row: ReviewRow, *, as_of: date, now: datetime) -> None:
    sub = session.exec(
        select(Subscription)
        .where(Subscription.id == row.subscription.id)
        .execution_options(populate_existing=True)
    ).one()
    sub.start_date = row.new_start
    sub.manual_amount = row.new_price
    schedule = schedule_of(sub)
    # Period numbers restart at the new start date (charges already taken stay counted).
    sub.first_period = rules.period_index_on_or_after(schedule, as_of) - sub.recurring_count
    refresh_next_charge_date(sub)
    sub.updated_at = now
    session.add(sub)
    _audit(session, user, None, "subscription.rescheduled_on_behalf", "subscription", sub.id,
           account_id=sub.customer_account_id, old_start=row.old_start.isoformat(),
           new_start=row.new_start.isoformat(), old_price=row.old_price,
           new_price=row.new_price)  # fmt: skip


def _audit(
    session: Session,
    user: User,
    account: CustomerAccount | None,
    action: str,
    subject_type: str,
    subject_id: int | None,
    **detail: object,
) -> None:
    add_event(
        session, action=action, subject_type=subject_type, subject_id=subject_id,
        partner_id=user.partner_id,
        customer_account_id=account.id if account else detail.get("account_id"),  # type: ignore[arg-type]
        actor_user_id=user.id, actor_label=user.name or user.email, detail=detail,
    )  # fmt: skip


def _locked_account(session: Session, account_id: int) -> CustomerAccount:
    query = select(CustomerAccount).where(CustomerAccount.id == account_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    else:
        session.execute(
            update(CustomerAccount)
            .where(col(CustomerAccount.id) == account_id)
            .values(status=CustomerAccount.status)
            .execution_options(synchronize_session=False)
        )
    account = session.exec(query.execution_options(populate_existing=True)).first()
    if account is None:
        raise NotFound("Not found.")
    return account


def _chosen(session: Session, draft: OnBehalfDraft, position: int) -> Subscription:
    if not 1 <= position <= len(draft.chosen):
        raise NotFound("Not found.")
    sub = session.get(Subscription, draft.chosen[position - 1])
    if sub is None or sub.customer_account_id != draft.customer_account_id:
        raise NotFound("Not found.")
    return sub


def _save(session: Session, draft: OnBehalfDraft) -> None:
    draft.version += 1
    session.add(draft)
    session.commit()


def _date_or_error(text: str, field: str, errors: dict[str, str]) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        errors[field] = "Enter a date such as 2031-02-01."
        return None


def _price_text(sub: Subscription) -> str:
    return format_plain(sub.manual_amount, sub.currency) if sub.manual_amount else ""
