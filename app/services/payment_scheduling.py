"""A customer schedules the payment of an open invoice for a later day, or cancels it.

The rules (issue 8): the invoice is the customer's own (else NotFound) and payable
(created or overdue with a balance; else Conflict). The day is after today and on or
before the due date, or (where the partner allows paying after the due date) any day
within a year. The amount is the balance, or a part of it where the partner allows
partial payments, and never more than the balance minus what is already scheduled: that
last check runs under the invoice's row lock, so two schedules cannot together exceed
the balance. The method is one of the account's saved methods (nobody is present on the
day to enter a card). A form token makes a double submission create one schedule.
The billing run charges it (:mod:`app.services.scheduled_payments`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlmodel import Session, col, select

from app.domain.errors import Conflict, FieldsInvalid, InvalidInput, NotFound
from app.domain.money import format_money, parse_amount
from app.models import (
    AuditEvent,
    CustomerAccount,
    Invoice,
    Partner,
    PaymentMethod,
    ScheduledPayment,
    ScheduledStatus,
    User,
)
from app.services.form_tokens import FormToken
from app.services.notifications import write_email
from app.services.pay_links import PAYABLE
from app.services.scheduled_rows import (
    LIVE,
    audit,
    lock_invoice,
    lock_scheduled,
    method_label,
    scheduled_total,
)
from app.services.tenancy import own_account, owned

CREATED_ACTION = "scheduled_payment.created"
NOT_CANCELABLE = {
    ScheduledStatus.PROCESSING: "This payment is already being processed; it can no longer "
    "be canceled.",
    ScheduledStatus.PAID: "This payment has already been made.",
    ScheduledStatus.FAILED: "This payment already failed on its day; there is nothing to cancel.",
    ScheduledStatus.CANCELED: "This payment was already canceled.",
}


def form_subject(invoice_id: int) -> str:
    """The form token subject of an invoice's schedule form."""
    return f"schedule:{invoice_id}"


def one_year_after(day: date) -> date:
    """The same day next year (Feb 29 → Feb 28)."""
    try:
        return day.replace(year=day.year + 1)
    except ValueError:
        return day.replace(year=day.year + 1, day=28)


@dataclass(frozen=True)
class ScheduleInput:
    """The schedule form as submitted (text, checked by :func:`schedule_payment`)."""

    pay_on: str = ""
    amount: str = ""
    payment_method_id: str = ""


@dataclass(frozen=True)
class ScheduleForm:
    """An invoice of the customer's and what the schedule form offers for it."""

    invoice: Invoice
    partner: Partner
    account: CustomerAccount
    methods: list[PaymentMethod]
    scheduled: list[ScheduledPayment]  # this invoice's payments still to be made
    as_of: date

    @property
    def already_scheduled(self) -> int:
        return sum(s.amount for s in self.scheduled)

    @property
    def available(self) -> int:
        """What may still be scheduled."""
        return max(0, self.invoice.balance - self.already_scheduled)

    @property
    def partial(self) -> bool:
        return self.partner.allow_partial_payments

    @property
    def earliest(self) -> date:
        return self.as_of + timedelta(days=1)

    @property
    def latest(self) -> date:
        if self.partner.portal_schedule_after_due:
            return one_year_after(self.as_of)
        return self.invoice.due_date

    @property
    def past_due(self) -> bool:
        """No day is left to schedule on: the due date is today or has passed."""
        return not self.partner.portal_schedule_after_due and self.latest < self.earliest

    @property
    def fully_scheduled(self) -> bool:
        return self.available <= 0 or (not self.partial and self.already_scheduled > 0)

    @property
    def default_method(self) -> PaymentMethod | None:
        return next((m for m in self.methods if m.is_default), None) or (
            self.methods[0] if self.methods else None
        )

    def method_of(self, scheduled: ScheduledPayment) -> PaymentMethod | None:
        return next((m for m in self.methods if m.id == scheduled.payment_method_id), None)


@dataclass(frozen=True)
class Scheduled:
    """A scheduled payment as made (``created`` False: the form was sent twice)."""

    scheduled: ScheduledPayment
    method: PaymentMethod | None  # None only if it was removed since
    created: bool
    email_ids: tuple[int, ...] = ()

    @property
    def summary(self) -> str:
        """ "Payment of $40.00 scheduled for Mar 31, 2026 with Visa •••• 4242."."""
        row = self.scheduled
        amount = format_money(row.amount, row.currency)
        label = method_label(self.method) if self.method else "your saved payment method"
        return f"Payment of {amount} scheduled for {row.pay_on:%b %-d, %Y} with {label}."


def own_partner(session: Session, user: User) -> Partner:
    """The partner of a signed-in customer (whose timezone says what "today" is).

    Raises NotFound for anyone who is not a customer.
    """
    partner = session.get(Partner, own_account(session, user).partner_id)
    if partner is None:
        raise NotFound("Not found.")
    return partner


def schedule_form(session: Session, user: User, invoice_id: int, *, as_of: date) -> ScheduleForm:
    """The customer's own invoice with what the schedule form offers on ``as_of``.

    Raises:
        NotFound: not a customer, or not their invoice.
        Conflict: the invoice has nothing to pay (paid, canceled, a cancellation).
    """
    account = own_account(session, user)
    invoice = owned(session, user, Invoice, invoice_id)
    if invoice.customer_account_id != account.id:
        raise NotFound("Not found.")
    if invoice.status not in PAYABLE or invoice.balance <= 0:
        raise Conflict(f"Invoice {invoice.number} is {invoice.status}: it has nothing to pay.")
    partner = session.get(Partner, invoice.partner_id)
    assert partner is not None
    methods = session.exec(
        select(PaymentMethod)
        .where(PaymentMethod.customer_account_id == account.id)
        .order_by(col(PaymentMethod.is_default).desc(), PaymentMethod.id)
    ).all()
    scheduled = session.exec(
        select(ScheduledPayment)
        .where(ScheduledPayment.invoice_id == invoice.id, col(ScheduledPayment.status).in_(LIVE))
        .order_by(ScheduledPayment.pay_on, ScheduledPayment.id)
    ).all()
    return ScheduleForm(invoice, partner, account, list(methods), list(scheduled), as_of)


def past_due_message(form: ScheduleForm) -> str:
    """Why an invoice at or past its due date cannot be scheduled."""
    return (
        f"Invoice {form.invoice.number} was due on {form.invoice.due_date:%b %-d, %Y}, so its "
        "payment can't be scheduled for a later day. Pay it now instead."
    )


def schedule_payment(
    session: Session,
    user: User,
    invoice_id: int,
    data: ScheduleInput,
    *,
    token: FormToken,
    as_of: date,
    now: datetime,
    base_url: str = "",
) -> Scheduled:
    """Schedule the payment of the customer's invoice for a later day (commits).

    Once per form token: sending the same form again returns the first schedule. Writes
    an audit event and a confirmation email (its id is in ``email_ids``).

    Raises:
        NotFound: not a customer, or not their invoice.
        Conflict: nothing to pay, or past its due date where the partner does not allow
            scheduling after it.
        FieldsInvalid: every bad field (``pay_on``, ``amount``, ``payment_method_id``).
    """
    form = schedule_form(session, user, invoice_id, as_of=as_of)
    earlier = _made_with(session, form.invoice.id, token)  # type: ignore[arg-type]
    if earlier is not None:
        return earlier
    if form.past_due:
        raise Conflict(past_due_message(form))
    pay_on, amount, method = _checked(form, data)
    session.rollback()
    invoice = lock_invoice(session, form.invoice.id)  # type: ignore[arg-type]
    earlier = _made_with(session, invoice.id, token)  # type: ignore[arg-type]
    if earlier is not None:  # the same form, sent twice at once: the first one won the lock
        session.rollback()  # releases the lock; read it again, as it stands committed
        return _made_with(session, invoice.id, token) or earlier  # type: ignore[arg-type]
    if invoice.status not in PAYABLE or invoice.balance <= 0:
        session.rollback()
        raise Conflict(f"Invoice {invoice.number} is {invoice.status}: it has nothing to pay.")
    left = invoice.balance - scheduled_total(session, invoice.id)  # type: ignore[arg-type]
    if amount > left:
        session.rollback()
        raise FieldsInvalid({"amount": _too_much(invoice, max(left, 0), form.partial)})
    row = ScheduledPayment(
        partner_id=invoice.partner_id,
        customer_account_id=invoice.customer_account_id,
        invoice_id=invoice.id,  # type: ignore[arg-type]
        payment_method_id=method.id,
        amount=amount,
        currency=invoice.currency,
        pay_on=pay_on,
        created_by_user_id=user.id,
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit(
        session, row, "created", actor_user_id=user.id, actor_label=user.email,
        invoice=invoice.number, pay_on=pay_on.isoformat(), method=method_label(method),
        form_reference=token.nonce,
    )  # fmt: skip
    email = write_email(
        session,
        template="scheduled_payment_created",
        dedupe_key=f"scheduled_payment_created:{row.id}",
        to_address=invoice.billing_email or form.account.email,
        subject=f"Payment of {format_money(amount, row.currency)} scheduled for "
        f"{pay_on:%b %-d, %Y}",
        partner_id=invoice.partner_id,
        account=form.account,
        partner=form.partner,
        invoice=invoice,
        scheduled=row,
        method=method_label(method),
        invoice_url=f"{base_url}/portal/invoices/{invoice.id}",
    )
    session.commit()
    return Scheduled(row, method, True, (email.id,) if email.id is not None else ())


def cancel_scheduled_payment(
    session: Session, user: User, scheduled_id: int, *, now: datetime
) -> ScheduledPayment:
    """Cancel the customer's own scheduled payment while it waits for its day (commits).

    Raises:
        NotFound: not a customer, or not their scheduled payment.
        Conflict: it is no longer waiting (processing, paid, failed or canceled).
    """
    account = own_account(session, user)
    row = owned(session, user, ScheduledPayment, scheduled_id)
    if row.customer_account_id != account.id:
        raise NotFound("Not found.")
    session.rollback()
    locked = lock_scheduled(session, scheduled_id)
    assert locked is not None
    if locked.status != ScheduledStatus.SCHEDULED:
        session.rollback()
        raise Conflict(NOT_CANCELABLE.get(locked.status, "This payment cannot be canceled."))  # type: ignore[call-overload]
    locked.status, locked.canceled_at = ScheduledStatus.CANCELED, now
    session.add(locked)
    audit(
        session, locked, "canceled", actor_user_id=user.id, actor_label=user.email,
        pay_on=locked.pay_on.isoformat(),
    )  # fmt: skip
    session.commit()
    return locked


def _checked(form: ScheduleForm, data: ScheduleInput) -> tuple[date, int, PaymentMethod]:
    """The day, amount and method of the form, or FieldsInvalid with every bad field."""
    errors: dict[str, str] = {}
    pay_on = _day(form, data.pay_on, errors)
    amount = _amount(form, data.amount, errors)
    method = next((m for m in form.methods if str(m.id) == data.payment_method_id.strip()), None)
    if not form.methods:
        errors["payment_method_id"] = (
            "Add a card or bank account first: a scheduled payment is charged to a saved "
            "payment method."
        )
    elif method is None:
        errors["payment_method_id"] = "Choose one of your saved payment methods."
    if errors:
        raise FieldsInvalid(errors)
    assert pay_on is not None and amount is not None and method is not None
    return pay_on, amount, method


def _day(form: ScheduleForm, text: str, errors: dict[str, str]) -> date | None:
    if not text.strip():
        errors["pay_on"] = "Enter the payment date."
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        errors["pay_on"] = "Enter the payment date as YYYY-MM-DD, e.g. 2026-12-01."
        return None
    if day < form.earliest:
        errors["pay_on"] = "Choose a day after today. To pay today, use Pay now."
    elif day > form.latest and form.partner.portal_schedule_after_due:
        errors["pay_on"] = f"Choose a day within a year, on or before {form.latest:%b %-d, %Y}."
    elif day > form.latest:
        errors["pay_on"] = (
            f"Choose a day on or before the due date, {form.invoice.due_date:%b %-d, %Y}."
        )
    return day


def _amount(form: ScheduleForm, text: str, errors: dict[str, str]) -> int | None:
    invoice = form.invoice
    balance = format_money(invoice.balance, invoice.currency)
    if not form.partial:
        amount = invoice.balance
        if text.strip():
            try:
                amount = parse_amount(text, invoice.currency)
            except InvalidInput as exc:
                errors["amount"] = exc.message
                return None
            if amount != invoice.balance:
                errors["amount"] = f"This invoice must be paid in full ({balance})."
                return None
    elif not text.strip():
        amount = form.available
    else:
        try:
            amount = parse_amount(text, invoice.currency)
        except InvalidInput as exc:
            errors["amount"] = exc.message
            return None
    if amount > form.available or amount <= 0:
        errors["amount"] = _too_much(invoice, form.available, form.partial)
        return None
    return amount


def _too_much(invoice: Invoice, left: int, partial: bool) -> str:
    balance = format_money(invoice.balance, invoice.currency)
    if not partial and left < invoice.balance:
        return "A payment of this invoice is already scheduled. Cancel it to choose another day."
    if left <= 0:
        return f"Payments of the whole balance ({balance}) are already scheduled."
    if left < invoice.balance:
        return (
            f"That is more than is left to schedule: {format_money(left, invoice.currency)} of "
            f"the {balance} balance."
        )
    return f"That is more than the {balance} due. Enter the amount due or less."


def _made_with(session: Session, invoice_id: int, token: FormToken) -> Scheduled | None:
    """The schedule a form token already made for the invoice, if any."""
    events = session.exec(
        select(AuditEvent)
        .join(ScheduledPayment, col(ScheduledPayment.id) == AuditEvent.subject_id)
        .where(
            AuditEvent.action == CREATED_ACTION,
            AuditEvent.subject_type == "scheduled_payment",
            ScheduledPayment.invoice_id == invoice_id,
        )
    ).all()
    for event in events:
        if event.detail.get("form_reference") == token.nonce:
            row = session.get(ScheduledPayment, event.subject_id)
            assert row is not None
            method_id = row.payment_method_id
            method = session.get(PaymentMethod, method_id) if method_id else None
            return Scheduled(row, method, False)
    return None
