"""The gate of every sandbox money call: injected failures and the request limit.

Both live in one table (``sandbox_failure_injection``), so every process on the same
database shares them. The normal case is that the table holds nothing active: then
:func:`gate` costs one plain ``SELECT`` on the call's own connection, and nothing is
locked, written or committed. Only when it finds active rows do the slower paths run,
each in its own short transaction that commits before the call's money transaction
starts (so a refused or failed call still counts, and still uses up its injection):

- the request limit (HTTP 429 above N money calls per second). Real processors refuse
  bursts (Stripe: about 25 requests per second per endpoint). One row holds the limit,
  and each admitted request leaves a row stamped with its whole second; a window is a
  wall-clock second, and rows of other seconds are removed as requests come. Those rows
  use an operation name no call has, so injected failures never see them. A refused
  call is not counted and consumes no injection.
- injected failures: each call consumes one use of the oldest injection for its
  operation (or ``*``).
"""

from __future__ import annotations

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from app.clock import utcnow
from app.models.sandbox import SandboxFailureInjection

LIMIT = "request_limit"
REQUEST = "request"
_OPERATION = "~request-limit"
_WRAP = 1_000_000  # seconds are stored modulo this, to fit any integer column

_T = SandboxFailureInjection.__table__  # type: ignore[attr-defined]

# Everything that can change what a call of ``operation`` does, oldest first: its
# injections with uses left, and the request limit (the per-request rows are not needed
# to know whether a limit is set).
_IS_ACTIVE = or_(
    and_(
        or_(_T.c.operation == bindparam("operation"), _T.c.operation == "*"),
        _T.c.remaining > 0,
    ),
    and_(_T.c.operation == _OPERATION, _T.c.failure == LIMIT),
)
_ACTIVE = select(_T.c.id, _T.c.failure, _T.c.operation).where(_IS_ACTIVE).order_by(_T.c.id)
# The same question inside another statement (parameter ``operation``): is anything
# active for the call? A money call that reads a row anyway asks it in that read, and
# runs :func:`gate` only when the answer is yes: one round trip instead of two.
ACTIVE = select(_T.c.id).where(_IS_ACTIVE).exists()
_INJECTIONS = (
    select(_T.c.id, _T.c.failure)
    .where(
        or_(_T.c.operation == bindparam("operation"), _T.c.operation == "*"),
        _T.c.remaining > 0,
    )
    .order_by(_T.c.id)
)
_USE_ONE = (
    update(_T)
    .where(_T.c.id == bindparam("injection_id"), _T.c.remaining > 0)
    .values(remaining=_T.c.remaining - 1)
)
_LIMIT = (
    select(_T.c.remaining)
    .where(_T.c.operation == _OPERATION, _T.c.failure == LIMIT)
    .with_for_update()
)
_FORGET_OTHER_SECONDS = delete(_T).where(
    _T.c.operation == _OPERATION, _T.c.failure == REQUEST, _T.c.remaining != bindparam("second")
)
_USED = (
    select(func.count())
    .select_from(_T)
    .where(_T.c.operation == _OPERATION, _T.c.failure == REQUEST)
)
_INSERT = insert(_T)


def gate(conn: Connection, operation: str) -> tuple[bool, str | None]:
    """Pass one money call of ``operation`` through the request limit and injections.

    Returns ``(admitted, failure)``: ``admitted`` is False when the request limit refuses
    the call (then nothing is consumed), and ``failure`` is the injected failure the call
    must suffer (``decline``, ``timeout_after_charge``, ``server_error``, ``rate_limit``),
    or None. With nothing active this is one ``SELECT`` and leaves ``conn``'s transaction
    open for the call; otherwise what it consumed is committed before it returns.
    """
    rows = conn.execute(_ACTIVE, {"operation": operation}).all()
    if not rows:
        return True, None
    limited = any(row.operation == _OPERATION for row in rows)
    if limited and not admit(conn):
        return False, None
    if all(row.operation == _OPERATION for row in rows):
        return True, None
    return True, take_injection(conn, operation)


def set_request_limit(engine: Engine, per_second: int | None) -> None:
    """Allow ``per_second`` money calls per second from now on; None lifts the limit.

    Raises ValueError for a limit below 1.
    """
    if per_second is not None and per_second < 1:
        raise ValueError("per_second must be at least 1")
    with engine.begin() as conn:
        conn.execute(delete(_T).where(_T.c.operation == _OPERATION))
        if per_second is not None:
            conn.execute(_INSERT, _row(LIMIT, _OPERATION, per_second))


def admit(conn: Connection) -> bool:
    """Count one money call in the current second; False when it is over the limit.

    A refused call is not counted. Admission is serialized (the limit row is locked on
    PostgreSQL; the first write takes SQLite's write lock), so concurrent callers in any
    process never exceed the limit between them. Commits (or, without a limit, rolls
    back) ``conn``'s transaction.
    """
    limit = conn.execute(_LIMIT).scalar()
    if limit is None:
        conn.rollback()
        return True
    second = int(utcnow().timestamp()) % _WRAP
    conn.execute(_FORGET_OTHER_SECONDS, {"second": second})
    used = conn.execute(_USED).scalar_one()
    if used >= limit:
        conn.commit()
        return False
    conn.execute(_INSERT, _row(REQUEST, _OPERATION, second))
    conn.commit()
    return True


def take_injection(conn: Connection, operation: str) -> str | None:
    """Consume one use of the oldest failure injected for ``operation`` (or ``*``).

    Returns that failure, or None when none is left. Commits ``conn``'s transaction.
    """
    while True:
        candidates = conn.execute(_INJECTIONS, {"operation": operation}).all()
        if not candidates:
            conn.rollback()
            return None
        for candidate in candidates:
            taken = conn.execute(_USE_ONE, {"injection_id": candidate.id}).rowcount
            if taken == 1:
                conn.commit()
                return str(candidate.failure)
            # Another process used the last one between our read and update: try the next.
        conn.rollback()


def add_injection(engine: Engine, *, failure: str, operation: str, times: int) -> None:
    """Persist an injected failure for the next ``times`` calls of ``operation``."""
    with engine.begin() as conn:
        conn.execute(_INSERT, _row(failure, operation, times))


def clear_injections(engine: Engine) -> None:
    """Remove every injected failure, used or not, and the request limit."""
    with engine.begin() as conn:
        conn.execute(delete(_T))


def _row(failure: str, operation: str, remaining: int) -> dict[str, object]:
    return {
        "failure": failure,
        "operation": operation,
        "remaining": remaining,
        "created_at": utcnow(),
    }
