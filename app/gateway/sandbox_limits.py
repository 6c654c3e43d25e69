"""The sandbox processor's request limit: HTTP 429 above N money calls per second.

Real processors refuse bursts (Stripe: about 25 requests per second per endpoint). The
limit lives in the database like the injected failures, so every process on the same
database shares it and shares one count. It reuses the failure-injection table (no schema
of its own): one row holds the limit, and each admitted request leaves a row stamped with
its whole second; a window is a wall-clock second, and rows of other seconds are removed
as requests come. Those rows use an operation name no call has, so injected failures
never see them.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session, col, delete, func, select

from app.clock import utcnow
from app.models.sandbox import SandboxFailureInjection as Row

LIMIT = "request_limit"
REQUEST = "request"
_OPERATION = "~request-limit"
_WRAP = 1_000_000  # seconds are stored modulo this, to fit any integer column


def set_request_limit(engine: Engine, per_second: int | None) -> None:
    """Allow ``per_second`` money calls per second from now on; None lifts the limit.

    Raises ValueError for a limit below 1.
    """
    if per_second is not None and per_second < 1:
        raise ValueError("per_second must be at least 1")
    with Session(engine) as session:
        session.exec(delete(Row).where(col(Row.operation) == _OPERATION))
        if per_second is not None:
            session.add(Row(failure=LIMIT, operation=_OPERATION, remaining=per_second))
        session.commit()


def admit(engine: Engine) -> bool:
    """Count one money call in the current second; False when it is over the limit.

    A refused call is not counted. Admission is serialized (the limit row is locked on
    PostgreSQL; the first write takes SQLite's write lock), so concurrent callers in any
    process never exceed the limit between them.
    """
    with Session(engine) as session:
        limit = session.exec(
            select(Row.remaining)
            .where(col(Row.operation) == _OPERATION, col(Row.failure) == LIMIT)
            .with_for_update()
        ).first()
        if limit is None:
            return True
        second = int(utcnow().timestamp()) % _WRAP
        session.exec(
            delete(Row).where(
                col(Row.operation) == _OPERATION,
                col(Row.failure) == REQUEST,
                col(Row.remaining) != second,
            )
        )
        used = session.exec(
            select(func.count())
            .select_from(Row)
            .where(col(Row.operation) == _OPERATION, col(Row.failure) == REQUEST)
        ).one()
        if used >= limit:
            session.commit()
            return False
        session.add(Row(failure=REQUEST, operation=_OPERATION, remaining=second))
        session.commit()
        return True
