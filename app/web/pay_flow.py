"""Submitting an invoice payment: shared by the pay link, its embed and the portal."""

from __future__ import annotations

from collections.abc import Callable

from flask import request
from sqlmodel import Session
from werkzeug.wrappers import Response

from app.domain.errors import InvalidInput
from app.extensions import gateway
from app.models import PaymentMethod
from app.services import form_tokens, pay_links, payments
from app.services.card_testing import TooManyDeclines
from app.services.receipts import outcome_for
from app.services.widget_payments import FieldErrors
from app.web.card_entry import chosen_kind, kept_values, tokenize_from_form
from app.web.payer import (
    client_address,
    decline_limit,
    enqueue_after_commit,
    now_and_today,
    settings,
)

PAY_FIELDS = ("name", "amount", "method", "saved_method")


def form_subject(view: pay_links.LinkView) -> str:
    """What a pay-now form token is bound to: its link, or the invoice in the portal."""
    return f"paylink:{view.link.id}" if view.link else f"invoice:{view.invoice.id}"


def submit_invoice_payment(
    session: Session,
    view: pay_links.LinkView,
    *,
    saved_methods: list[PaymentMethod],
    render: Callable[..., Response],
) -> Response:
    """Validate, tokenize and pay; answer with the receipt or the form and its errors."""
    if view.state != "payable":
        return render(view)
    form = request.form
    values = kept_values(form, PAY_FIELDS)
    try:
        token = form_tokens.verify(
            settings().secret_key, form.get("token", ""), subject=form_subject(view)
        )
    except (form_tokens.FormTokenExpired, form_tokens.FormTokenInvalid) as exc:
        return render(view, values=values, message=exc.message, status=exc.status_code)
    earlier = payments.find_attempt(session, token.purpose_key)
    if earlier is not None:
        outcome = outcome_for(session, payments.wait_until_settled(session, earlier.id))  # type: ignore[arg-type]
    else:
        try:
            amount = pay_links.parse_invoice_amount(view, form.get("amount", ""))
            method = _method(form, view, saved_methods)
            now, _ = now_and_today(view.partner.timezone)
            outcome = pay_links.pay_invoice(
                session, gateway(), view=view, form=token, amount=amount, method=method,
                payer_email=view.invoice.billing_email or view.account.email,
                client_address=client_address(), now=now, limit=decline_limit(),
            )  # fmt: skip
        except FieldErrors as exc:
            return render(view, values=values, errors=exc.errors, status=422)
        except InvalidInput as exc:
            return render(
                view, values=values, errors={exc.field or "amount": exc.message}, status=422
            )
        except TooManyDeclines as exc:
            return render(view, values=values, message=exc.message, status=429)
        enqueue_after_commit(outcome.email_ids)
    if outcome.approved or outcome.status in ("pending", "unknown"):
        return render(_reloaded(session, view), outcome=outcome)
    return render(view, values=values, message=outcome.message, status=402)


def _method(form, view: pay_links.LinkView, saved_methods: list[PaymentMethod]):  # noqa: ANN001, ANN202
    saved_id = form.get("saved_method", "")
    # Where no saved method is offered (pay links, embeds) the field is not on the form.
    if saved_id and saved_id != "new" and saved_methods:
        for method in saved_methods:
            if str(method.id) == saved_id:
                return method
        raise FieldErrors({"saved_method": "Choose one of your saved payment methods."})
    kind = chosen_kind(form, accept_card=True, accept_bank=view.invoice.currency == "USD")
    holder = " ".join(form.get("name", "").split()) or view.account.name
    return tokenize_from_form(gateway(), form, kind=kind, holder_name=holder)


def _reloaded(session: Session, view: pay_links.LinkView) -> pay_links.LinkView:
    session.refresh(view.invoice)
    state = "paid" if view.invoice.balance <= 0 else "payable"
    return pay_links.LinkView(
        view.link, view.invoice, view.partner, view.account, state, view.last_payment
    )
