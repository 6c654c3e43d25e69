"""A widget's configuration as its page views read it, cached for a moment per process.

The take-payment page is the page Portico serves most (it loads on partners' community
pages) and its rendered form is cached per configuration (see the components blueprint),
so a view only needs the configuration to pick the cached form. Reading it from the
database was more than half of such a view's CPU time (and a wait for the database on a
busy machine), so each process keeps what it read for ``CONFIG_TTL_MS`` (two seconds):

- an edit made through a session of this process (the partner's widget page, partner
  settings, an operator) clears the cache when its transaction commits, so it shows on
  the next load served by this process;
- other processes show it within ``CONFIG_TTL_MS`` (two seconds). Payments are unaffected: a
  submission always reads the widget from the database (``widget_payments.load_widget``),
  so a form served from a stale configuration is refused like one loaded just before the
  edit (deactivated widget, changed fixed amount).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import chain
from typing import Any
from weakref import WeakSet

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from app.models import Partner, Widget

CONFIG_TTL_MS = 2000
MAX_CACHED = 1024  # widgets per app; the cache starts over beyond it

_WIDGET_TABLE, _PARTNER_TABLE = Widget.__table__, Partner.__table__  # type: ignore[attr-defined]
_SNAPSHOT_BY_KEY = (
    select(*_WIDGET_TABLE.c, _PARTNER_TABLE.c.name, _PARTNER_TABLE.c.allowed_origins)
    .join(_PARTNER_TABLE, _PARTNER_TABLE.c.id == _WIDGET_TABLE.c.partner_id)
    .where(_WIDGET_TABLE.c.key == bindparam("key"))
)

# Every cache of this process (one per app), to clear when a commit changed a widget.
_LIVE: WeakSet[ConfigCache] = WeakSet()
_CHANGED = "widget_config_changed"


def widget_snapshot(session: Session, key: str) -> tuple | None:
    """The widget with public ``key`` as one plain row; None when there is none.

    Every column of the widget, then its partner's name and allowed origins, read without
    building ORM objects. Equal to :func:`snapshot_of` the pair that
    ``widget_payments.load_widget`` returns. Raises what the database driver raises when
    the database cannot be reached.
    """
    row = session.connection().execute(_SNAPSHOT_BY_KEY, {"key": key}).first()
    return None if row is None else tuple(row)


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class ConfigCache:
    """Widget configurations one app has read, each kept for ``ttl_ms`` milliseconds.

    Cleared whenever a session of this process commits a change to a widget or a partner.
    """

    def __init__(
        self, ttl_ms: int = CONFIG_TTL_MS, clock: Callable[[], int] = _monotonic_ms
    ) -> None:
        self.ttl_ms = ttl_ms
        self._clock = clock  # milliseconds of an interval, not a date: not the business clock
        # widget key -> (monotonic expiry in ms, snapshot, or None for no such widget)
        self._entries: dict[str, tuple[int, tuple | None]] = {}
        _LIVE.add(self)

    def snapshot(self, session: Session, key: str) -> tuple | None:
        """:func:`widget_snapshot`, read at most once per ``ttl_ms`` milliseconds.

        An unknown key is remembered as None for as long. Raises what ``widget_snapshot``
        raises.
        """
        now = self._clock()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        snapshot = widget_snapshot(session, key)
        if len(self._entries) >= MAX_CACHED:
            self._entries.clear()
        self._entries[key] = (now + self.ttl_ms, snapshot)
        return snapshot

    def clear(self) -> None:
        """Forget every configuration: the next view of each widget reads it again."""
        self._entries.clear()


def snapshot_of(widget: Widget, partner: Partner) -> tuple:
    """What ``widget_snapshot`` reads, from loaded objects."""
    columns = tuple(getattr(widget, column.name) for column in _WIDGET_TABLE.c)
    return (*columns, partner.name, partner.allowed_origins)


@event.listens_for(OrmSession, "after_flush")
def _note_config_changes(session: OrmSession, _context: Any) -> None:
    # Still the pre-flush state here: what this flush wrote.
    if _CHANGED not in session.info and any(
        isinstance(obj, Widget | Partner)
        for obj in chain(session.new, session.dirty, session.deleted)
    ):
        session.info[_CHANGED] = True


@event.listens_for(OrmSession, "after_commit")
def _forget_committed_changes(session: OrmSession) -> None:
    if session.info.pop(_CHANGED, False):
        for cache in list(_LIVE):
            cache.clear()


@event.listens_for(OrmSession, "after_soft_rollback")
def _drop_rolled_back_changes(session: OrmSession, _previous: Any) -> None:
    if not session.in_transaction():
        session.info.pop(_CHANGED, None)
