"""The sandbox processor's bookkeeping: idempotency, stored objects, injected failures.

Every function opens its own short session on the engine and commits before it returns,
because the sandbox plays a separate system: its state must not depend on, or wait for,
a transaction of the caller.

Exactly once: a money call inserts its idempotency row *first* in the same transaction
as its effects. The unique key makes a concurrent second call with that key block (or
fail) on that insert; it then rolls back and returns the stored answer of the winner.
The money effects themselves live in :mod:`app.gateway.sandbox_money`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from app.gateway.base import (
    GatewayError,
    GatewayResult,
    OperationKind,
    PaymentMethodRejected,
    TokenizedMethod,
)
from app.gateway.sandbox_cards import CheckedMethod, behaviour_of
from app.models.sandbox import (
    SandboxCharge,
    SandboxCustomer,
    SandboxFailureInjection,
    SandboxIdempotencyKey,
    SandboxPaymentMethod,
)

# (response to store and return, whether to keep it): errors that moved nothing are not
# kept, so the same key may be retried, as ``GatewayResult.retryable`` promises.
Performed = tuple[dict[str, Any], bool]


class IdempotencyKeyReused(GatewayError):
    """An idempotency key came back with different parameters than its first use."""


@dataclass(frozen=True)
class SandboxChargeRecord:
    """One sandbox charge or authorization as the processor's ledger shows it."""

    reference: str
    kind: str
    status: str
    amount: int
    currency: str
    captured_amount: int
    refunded_amount: int
    idempotency_key: str
    customer_ref: str
    metadata: Mapping[str, str]
    created_at: datetime


def new_reference(prefix: str) -> str:
    """A fresh processor id such as ``ch_sbx_…``."""
    return f"{prefix}_sbx_{secrets.token_hex(12)}"


def request_fingerprint(operation: str, params: Mapping[str, object]) -> str:
    """A hash of everything a call asked for, to spot a key reused for another request."""
    canonical = json.dumps({"operation": operation, **params}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def result_to_dict(result: GatewayResult) -> dict[str, Any]:
    """A JSON-ready form of a result, for the idempotency table."""
    data = asdict(result)
    data["metadata"] = dict(result.metadata)
    return data


def result_from_dict(data: Mapping[str, Any]) -> GatewayResult:
    """The result stored by :func:`result_to_dict`."""
    return GatewayResult(**{**data, "metadata": dict(data.get("metadata") or {})})


def _lookup(engine: Engine, key: str) -> SandboxIdempotencyKey | None:
    with Session(engine) as session:
        return session.exec(
            select(SandboxIdempotencyKey).where(SandboxIdempotencyKey.key == key)
        ).first()


def _replay(record: SandboxIdempotencyKey, fingerprint: str) -> dict[str, Any]:
    if record.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused("This idempotency key was already used for a different request.")
    return dict(record.response)


def run_once(
    engine: Engine,
    *,
    key: str,
    operation: str,
    fingerprint: str,
    perform: Callable[[Session], Performed],
) -> dict[str, Any]:
    """Run ``perform`` at most once per key and return its (stored) response.

    ``perform`` adds its effects to the session it is given; they commit together with
    the idempotency row, or not at all when it says the response is not to be kept.

    Raises:
        IdempotencyKeyReused: the key was first used with a different fingerprint.
    """
    stored = _lookup(engine, key)
    if stored is not None:
        return _replay(stored, fingerprint)
    with Session(engine) as session:
        record = SandboxIdempotencyKey(
            key=key, operation=operation, request_fingerprint=fingerprint, response={}
        )
        session.add(record)
        try:
            session.flush()
            response, keep = perform(session)
            if not keep:
                session.rollback()
                return response
            record.response = response
            session.commit()
        except IntegrityError:
            # Another call with this key committed first: answer what it answered.
            session.rollback()
            winner = _lookup(engine, key)
            if winner is None:
                raise
            return _replay(winner, fingerprint)
    return response


def stored_response(engine: Engine, key: str) -> tuple[str, dict[str, Any]] | None:
    """The operation and stored response for ``key``, or None if no call landed."""
    record = _lookup(engine, key)
    return None if record is None else (record.operation, dict(record.response))


def find_payment_method(session: Session, token: str) -> SandboxPaymentMethod | None:
    """The payment method with this token, if any."""
    return session.exec(
        select(SandboxPaymentMethod).where(SandboxPaymentMethod.token == token)
    ).first()


def describe_payment_method(engine: Engine, token: str) -> TokenizedMethod:
    """The stored description of an unattached ``token``.

    Raises PaymentMethodRejected if unknown or already saved on a customer.
    """
    with Session(engine) as session:
        method = find_payment_method(session, token)
        # A token saved on a customer is only usable with that customer, never by bare id.
        if method is None or method.customer_ref:
            raise PaymentMethodRejected(
                "unknown_token", "This payment method could not be found. Enter it again.", "number"
            )
        return _describe(method)


def find_charge(session: Session, reference: str) -> SandboxCharge | None:
    """The charge or authorization with this reference, if any."""
    return session.exec(select(SandboxCharge).where(SandboxCharge.reference == reference)).first()


def perform_create_customer(session: Session, *, key: str, email: str, name: str) -> Performed:
    """Create a processor customer; the response carries its reference."""
    reference = new_reference("cus")
    session.add(SandboxCustomer(reference=reference, email=email, name=name, idempotency_key=key))
    return {"reference": reference}, True


def store_payment_method(engine: Engine, checked: CheckedMethod) -> TokenizedMethod:
    """Keep a checked payment method under a new token and describe it."""
    method = SandboxPaymentMethod(
        token=new_reference("pm"),
        kind=checked.kind,
        behaviour=checked.behaviour,
        fingerprint=checked.fingerprint,
        last4=checked.last4,
        brand=checked.brand,
        exp_month=checked.exp_month,
        exp_year=checked.exp_year,
        bank_name=checked.bank_name,
    )
    with Session(engine, expire_on_commit=False) as session:
        session.add(method)
        session.commit()
    return _describe(method)


def attach_payment_method(engine: Engine, *, customer_ref: str, token: str) -> TokenizedMethod:
    """Attach a token to a customer (again attaching to the same one is a no-op).

    Raises:
        PaymentMethodRejected: ``resource_missing`` for an unknown customer or token,
            ``payment_method_unavailable`` when it belongs to another customer, and the
            card's own decline code and message when its test behaviour refuses saving.
    """
    with Session(engine, expire_on_commit=False) as session:
        customer = session.exec(
            select(SandboxCustomer).where(SandboxCustomer.reference == customer_ref)
        ).first()
        if customer is None:
            raise PaymentMethodRejected("resource_missing", "No such customer.")
        method = find_payment_method(session, token)
        if method is None:
            raise PaymentMethodRejected("resource_missing", "No such payment method.")
        behaviour = behaviour_of(method.behaviour)
        if not behaviour.attaches:
            raise PaymentMethodRejected(behaviour.decline_code, behaviour.message)
        attached = session.execute(
            update(SandboxPaymentMethod)
            .where(
                col(SandboxPaymentMethod.id) == method.id,
                or_(
                    col(SandboxPaymentMethod.customer_ref).is_(None),
                    col(SandboxPaymentMethod.customer_ref) == customer_ref,
                ),
            )
            .values(customer_ref=customer_ref)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        session.commit()
        if attached != 1:
            raise PaymentMethodRejected(
                "payment_method_unavailable",
                "This payment method is already attached to another customer.",
            )
        session.refresh(method)
        return _describe(method)


def _describe(method: SandboxPaymentMethod) -> TokenizedMethod:
    return TokenizedMethod(
        token=method.token,
        kind="card" if method.kind == "card" else "bank_account",
        last4=method.last4,
        brand=method.brand,
        exp_month=method.exp_month,
        exp_year=method.exp_year,
        bank_name=method.bank_name,
        fingerprint=method.fingerprint,
    )


def charge_currency(engine: Engine, reference: str) -> str:
    """The currency of a charge, or "" when there is no such charge."""
    with Session(engine) as session:
        charge = find_charge(session, reference)
        return charge.currency if charge is not None else ""


def take_injection(engine: Engine, operation: OperationKind) -> str | None:
    """Consume one use of the oldest failure injected for ``operation`` (or ``*``)."""
    with Session(engine) as session:
        while True:
            candidate = session.exec(
                select(SandboxFailureInjection)
                .where(
                    col(SandboxFailureInjection.operation).in_([operation, "*"]),
                    col(SandboxFailureInjection.remaining) > 0,
                )
                .order_by(col(SandboxFailureInjection.id))
            ).first()
            if candidate is None:
                return None
            taken = session.execute(
                update(SandboxFailureInjection)
                .where(
                    col(SandboxFailureInjection.id) == candidate.id,
                    col(SandboxFailureInjection.remaining) > 0,
                )
                .values(remaining=col(SandboxFailureInjection.remaining) - 1)
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            session.commit()
            if taken == 1:
                return candidate.failure
            # Another process used the last one between our read and update: look again.


def add_injection(engine: Engine, *, failure: str, operation: str, times: int) -> None:
    """Persist an injected failure for the next ``times`` calls of ``operation``."""
    with Session(engine) as session:
        session.add(SandboxFailureInjection(failure=failure, operation=operation, remaining=times))
        session.commit()


def clear_injections(engine: Engine) -> None:
    """Remove every injected failure, used or not."""
    with Session(engine) as session:
        session.exec(delete(SandboxFailureInjection))
        session.commit()


def list_charges(engine: Engine) -> list[SandboxChargeRecord]:
    """Every sandbox charge and authorization, oldest first."""
    with Session(engine) as session:
        rows = session.exec(select(SandboxCharge).order_by(col(SandboxCharge.id))).all()
        return [
            SandboxChargeRecord(
                reference=row.reference,
                kind=row.kind,
                status=row.status,
                amount=row.amount,
                currency=row.currency,
                captured_amount=row.captured_amount,
                refunded_amount=row.refunded_amount,
                idempotency_key=row.idempotency_key,
                customer_ref=row.customer_ref,
                metadata=dict(row.meta),
                created_at=row.created_at,
            )
            for row in rows
        ]
