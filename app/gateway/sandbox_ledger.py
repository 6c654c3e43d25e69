"""The sandbox processor's bookkeeping: idempotency and stored objects.

Every function opens its own short connection and commits before it returns (or, for
:func:`run_once`, works in the money call's own connection), because the sandbox plays a
separate system: its state must not depend on, or wait for, a transaction of the caller.

Exactly once: a call runs its effects and inserts its idempotency row, holding the final
response, in one transaction. The unique key (and the unique key column of the charge,
refund or customer it creates) makes a concurrent second call with that key block (or
fail) on its insert; it then rolls back and returns the stored answer of the winner. So
the normal call never reads the key table first. The money effects themselves live in
:mod:`app.gateway.sandbox_money`, the request limit and injected failures in
:mod:`app.gateway.sandbox_limits`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from app.clock import utcnow
from app.gateway.base import (
    GatewayError,
    GatewayResult,
    PaymentMethodRejected,
    TokenizedMethod,
)
from app.gateway.sandbox_cards import DETACHED, CheckedMethod, behaviour_of
from app.models.sandbox import (
    SandboxCharge,
    SandboxCustomer,
    SandboxIdempotencyKey,
    SandboxPaymentMethod,
)

# (response to store and return, whether to keep it): errors that moved nothing are not
# kept, so the same key may be retried, as ``GatewayResult.retryable`` promises.
Performed = tuple[dict[str, Any], bool]

_KEYS = SandboxIdempotencyKey.__table__  # type: ignore[attr-defined]
_INSERT_KEY = insert(_KEYS)
_LOOKUP = select(_KEYS.c.operation, _KEYS.c.request_fingerprint, _KEYS.c.response).where(
    _KEYS.c.key == bindparam("key")
)
_INSERT_CUSTOMER = insert(SandboxCustomer.__table__)  # type: ignore[attr-defined]
_RESULT_FIELDS = tuple(f.name for f in fields(GatewayResult))


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
    data = {name: getattr(result, name) for name in _RESULT_FIELDS}
    data["metadata"] = dict(result.metadata)
    return data


def result_from_dict(data: Mapping[str, Any]) -> GatewayResult:
    """The result stored by :func:`result_to_dict`."""
    return GatewayResult(**{**data, "metadata": dict(data.get("metadata") or {})})


def _lookup(conn: Connection, key: str) -> Row[Any] | None:
    return conn.execute(_LOOKUP, {"key": key}).first()


def _replay(record: Row[Any], fingerprint: str) -> dict[str, Any]:
    if record.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused("This idempotency key was already used for a different request.")
    return dict(record.response)


def run_once(
    conn: Connection,
    *,
    key: str,
    operation: str,
    fingerprint: str,
    perform: Callable[[Connection], Performed],
    look_first: bool = False,
) -> dict[str, Any]:
    """Run ``perform`` at most once per key and return its (stored) response.

    ``perform`` reads and writes through ``conn`` in its open transaction and returns
    the response; this then inserts the idempotency row holding that response and
    commits, all in that one transaction. When ``perform`` says the response is not to
    be kept (an error that moved nothing), the transaction is rolled back instead. When
    the key was used before (the inserts hit a unique key), the transaction is rolled
    back and the stored response is returned; ``perform``'s effects never land twice.
    With ``look_first`` the key is looked up before ``perform`` runs, so a repeated call
    only reads (for calls whose keys often come back, such as ``create_customer``; money
    calls skip that read).

    Raises:
        IdempotencyKeyReused: the key was first used with a different fingerprint.
        IntegrityError: a unique key was hit while no call with this key landed.
    """
    if look_first:
        stored = _lookup(conn, key)
        if stored is not None:
            return _replay(stored, fingerprint)
    try:
        response, keep = perform(conn)
        if keep:
            conn.execute(
                _INSERT_KEY,
                {
                    "key": key,
                    "operation": operation,
                    "request_fingerprint": fingerprint,
                    "response": response,
                    "created_at": utcnow(),
                },
            )
            conn.commit()
            return response
        conn.rollback()
    except IntegrityError:
        # Another call with this key committed first: answer what it answered.
        conn.rollback()
        winner = _lookup(conn, key)
        if winner is None:
            raise
        return _replay(winner, fingerprint)
    # An error moves nothing, but a key that already landed still answers as it did.
    stored = _lookup(conn, key)
    return response if stored is None else _replay(stored, fingerprint)


def stored_response(engine: Engine, key: str) -> tuple[str, dict[str, Any]] | None:
    """The operation and stored response for ``key``, or None if no call landed."""
    with engine.connect() as conn:
        record = _lookup(conn, key)
    return None if record is None else (record.operation, dict(record.response))


def find_payment_method(session: Session, token: str) -> SandboxPaymentMethod | None:
    """The payment method with this token, if any."""
    return session.scalars(
        select(SandboxPaymentMethod).where(SandboxPaymentMethod.token == token)
    ).first()


def describe_payment_method(engine: Engine, token: str) -> TokenizedMethod:
    """The stored description of an unattached ``token``.

    Raises PaymentMethodRejected if unknown or already saved on a customer.
    """
    with Session(engine) as session:
        method = find_payment_method(session, token)
        # A token saved on a customer is only usable with that customer, never by bare id.
        if method is None or method.customer_ref or method.behaviour == DETACHED:
            raise PaymentMethodRejected(
                "unknown_token", "This payment method could not be found. Enter it again.", "number"
            )
        return _describe(method)


def perform_create_customer(conn: Connection, *, key: str, email: str, name: str) -> Performed:
    """Create a processor customer; the response carries its reference.

    Raises IntegrityError when a customer with this key exists (``run_once`` then
    answers the stored response).
    """
    reference = new_reference("cus")
    conn.execute(
        _INSERT_CUSTOMER,
        {
            "reference": reference,
            "email": email,
            "name": name,
            "idempotency_key": key,
            "created_at": utcnow(),
        },
    )
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
        customer = session.scalars(
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


def detach_payment_method(engine: Engine, token: str) -> None:
    """Detach ``token`` from its customer for good (again detaching is a no-op).

    Raises:
        PaymentMethodRejected: ``resource_missing`` for an unknown token.
    """
    with Session(engine) as session:
        detached = session.execute(
            update(SandboxPaymentMethod)
            .where(col(SandboxPaymentMethod.token) == token)
            .values(customer_ref=None, behaviour=DETACHED)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        session.commit()
    if detached != 1:
        raise PaymentMethodRejected("resource_missing", "No such payment method.")


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


def list_charges(engine: Engine) -> list[SandboxChargeRecord]:
    """Every sandbox charge and authorization, oldest first."""
    with Session(engine) as session:
        rows = session.scalars(select(SandboxCharge).order_by(col(SandboxCharge.id))).all()
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
