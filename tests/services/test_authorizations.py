"""Authorize, capture and void through the payments service (for orders to use)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import Flask
from sqlmodel import Session

from app.gateway.base import CardDetails
from app.models import Partner, PaymentKind, PaymentStatus
from app.services import payments

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _partner(session: Session) -> int:
    partner = Partner(name="Auth Co", slug="auth-co", country="US", currency="USD")
    session.add(partner)
    session.commit()
    return int(partner.id)  # type: ignore[arg-type]


def _approved_authorization(session: Session, gateway, partner_id: int, amount: int):  # noqa: ANN001, ANN202
    token = gateway.tokenize_card(CardDetails("4242424242424242", 12, 2034, "123", "Pat")).token
    spec = payments.AttemptSpec(
        partner_id=partner_id,
        purpose_key="order:1:auth:1",
        amount=amount,
        currency="USD",
        method="card",
        kind=PaymentKind.AUTHORIZATION,
        gateway=gateway.name,
    )
    attempt, created = payments.open_attempt(session, spec)
    assert created
    result = payments.authorize(gateway, attempt, token=token)
    assert payments.claim_outcome(session, attempt, result, now=NOW)
    session.commit()
    return attempt


def _follow_up(session: Session, partner_id: int, kind: str, key: str, amount: int):  # noqa: ANN202
    spec = payments.AttemptSpec(
        partner_id=partner_id,
        purpose_key=key,
        amount=amount,
        currency="USD",
        method="card",
        kind=kind,
        gateway="sandbox",
    )
    attempt, created = payments.open_attempt(session, spec)
    assert created
    return attempt


def test_can_an_authorization_be_captured_in_part(app: Flask, db_session: Session) -> None:
    gateway = app.extensions["portico"].gateway
    partner_id = _partner(db_session)
    authorization = _approved_authorization(db_session, gateway, partner_id, 5000)

    capture = _follow_up(db_session, partner_id, PaymentKind.CAPTURE, "order:1:capture:1", 3000)
    result = payments.capture(gateway, capture, authorization=authorization)

    assert result.approved and result.captured_amount == 3000
    assert payments.claim_outcome(db_session, capture, result, now=NOW)
    db_session.commit()
    assert capture.status == PaymentStatus.APPROVED


def test_can_an_authorization_be_voided(app: Flask, db_session: Session) -> None:
    gateway = app.extensions["portico"].gateway
    partner_id = _partner(db_session)
    authorization = _approved_authorization(db_session, gateway, partner_id, 5000)

    void = _follow_up(db_session, partner_id, PaymentKind.VOID, "order:1:void:1", 5000)
    result = payments.void(gateway, void, authorization=authorization)

    assert result.approved
    later = _follow_up(db_session, partner_id, PaymentKind.CAPTURE, "order:1:capture:9", 1000)
    assert not payments.capture(gateway, later, authorization=authorization).approved


def test_is_capturing_more_than_authorized_refused(app: Flask, db_session: Session) -> None:
    gateway = app.extensions["portico"].gateway
    partner_id = _partner(db_session)
    authorization = _approved_authorization(db_session, gateway, partner_id, 5000)
    too_much = _follow_up(db_session, partner_id, PaymentKind.CAPTURE, "order:1:capture:2", 6000)

    with pytest.raises(ValueError, match="more than was authorized"):
        payments.capture(gateway, too_much, authorization=authorization)
