"""Tables of the sandbox processor (``app/gateway/sandbox.py``).

They model a separate system that happens to share Portico's database: Portico's own
services never read or write them. No row ever holds a full card number, a bank account
number or a CVC; a payment method keeps only what decides its behaviour (a behaviour
code) plus what any processor shows (brand, last 4, expiry, a keyed fingerprint).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Integer

from app.models.base import Field, SQLModel, created_at, money


class SandboxCustomer(SQLModel, table=True):
    """A processor-side customer (``cus_sbx_…``)."""

    __tablename__ = "sandbox_customer"

    id: int | None = Field(default=None, primary_key=True)
    reference: str = Field(max_length=64, unique=True)
    email: str = Field(default="", max_length=320)
    name: str = Field(default="", max_length=200)
    idempotency_key: str = Field(max_length=255, unique=True)
    created_at: datetime = created_at()


class SandboxPaymentMethod(SQLModel, table=True):
    """A tokenized card or bank account (``pm_sbx_…``), optionally attached to a customer."""

    __tablename__ = "sandbox_payment_method"

    id: int | None = Field(default=None, primary_key=True)
    token: str = Field(max_length=64, unique=True)
    kind: str = Field(max_length=16)
    behaviour: str = Field(max_length=32)
    fingerprint: str = Field(max_length=64, index=True)
    last4: str = Field(max_length=4)
    brand: str = Field(default="", max_length=32)
    exp_month: int | None = None
    exp_year: int | None = None
    bank_name: str = Field(default="", max_length=100)
    customer_ref: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = created_at()


class SandboxCharge(SQLModel, table=True):
    """A charge or an authorization (``ch_sbx_…``), including declined ones.

    ``status`` is ``succeeded`` (money captured), ``requires_capture`` (an open
    authorization), ``canceled`` (a voided authorization) or ``failed`` (declined; no
    money moved). ``captured_amount - refunded_amount`` is what the payer is out of pocket.
    """

    __tablename__ = "sandbox_charge"

    id: int | None = Field(default=None, primary_key=True)
    reference: str = Field(max_length=64, unique=True)
    kind: str = Field(max_length=16)
    status: str = Field(max_length=20)
    amount: int = money()
    currency: str = Field(max_length=3)
    captured: bool = False
    captured_amount: int = money()
    refunded: bool = False
    refunded_amount: int = money()
    payment_method_token: str = Field(max_length=64)
    customer_ref: str = Field(default="", max_length=64)
    description: str = Field(default="", max_length=500)
    decline_code: str = Field(default="", max_length=64)
    meta: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("metadata", JSON, nullable=False)
    )
    idempotency_key: str = Field(max_length=255, unique=True)
    created_at: datetime = created_at()


class SandboxRefund(SQLModel, table=True):
    """A refund (``re_sbx_…``) of part or all of a captured charge."""

    __tablename__ = "sandbox_refund"

    id: int | None = Field(default=None, primary_key=True)
    reference: str = Field(max_length=64, unique=True)
    charge_id: int = Field(
        sa_column=Column(Integer, ForeignKey("sandbox_charge.id"), nullable=False, index=True)
    )
    amount: int = money()
    currency: str = Field(max_length=3)
    status: str = Field(default="succeeded", max_length=20)
    idempotency_key: str = Field(max_length=255, unique=True)
    created_at: datetime = created_at()


class SandboxIdempotencyKey(SQLModel, table=True):
    """The first answer given for an idempotency key, and a hash of what was asked.

    The unique key is what makes concurrent calls with one key move money once: the
    second insert fails and its caller returns the stored response instead.
    """

    __tablename__ = "sandbox_idempotency_key"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=255, unique=True)
    operation: str = Field(max_length=32)
    request_fingerprint: str = Field(max_length=64)
    response: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = created_at()


class SandboxFailureInjection(SQLModel, table=True):
    """A failure the next ``remaining`` calls of ``operation`` will suffer.

    Kept in the database so a test can inject into a separately running server process.
    """

    __tablename__ = "sandbox_failure_injection"

    id: int | None = Field(default=None, primary_key=True)
    failure: str = Field(max_length=32)
    operation: str = Field(max_length=32)
    remaining: int = 1
    created_at: datetime = created_at()
