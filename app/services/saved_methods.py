"""Payment methods kept from approved payments (widgets, orders): one row per token, and
the account's default when it has none."""

from __future__ import annotations

from sqlmodel import Session, select

from app.models import CustomerAccount, Payment, PaymentMethod


def keep_method(
    session: Session, account: CustomerAccount, payment: Payment, *, saved: dict | None
) -> PaymentMethod | None:
    """The method an approved payment used, kept on the account for later charges (the
    caller commits); the payment then names it.

    A method on file is reused; a newly tokenized one (``saved``: token, kind, brand,
    last 4, expiry, bank name) gets a payment method row, or the row its token already
    has. Either becomes the account's default when it has none. Returns None when the
    payment names no method and ``saved`` is empty.
    """
    method: PaymentMethod | None = None
    if payment.payment_method_id is not None:
        method = session.get(PaymentMethod, payment.payment_method_id)
    elif saved:
        method = session.exec(
            select(PaymentMethod).where(
                PaymentMethod.gateway == payment.gateway, PaymentMethod.token == saved["token"]
            )
        ).first() or PaymentMethod(
            partner_id=account.partner_id,
            customer_account_id=account.id,  # type: ignore[arg-type]
            gateway=payment.gateway,
            token=saved["token"],
            kind=saved.get("kind") or "card",
            brand=saved.get("brand") or "",
            last4=saved.get("last4") or "",
            exp_month=saved.get("exp_month"),
            exp_year=saved.get("exp_year"),
            bank_name=saved.get("bank_name") or "",
            holder_name=account.name,
        )
    if method is None:
        return None
    has_default = session.exec(
        select(PaymentMethod.id).where(
            PaymentMethod.customer_account_id == account.id,
            PaymentMethod.is_default == True,  # noqa: E712
        )
    ).first()
    if has_default is None:
        method.is_default = True
    session.add(method)
    session.flush()
    payment.payment_method_id = method.id
    session.add(payment)
    return method
