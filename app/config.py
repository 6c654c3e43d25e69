"""Settings from the environment (ARCHITECTURE §4), checked once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEV_SECRET_KEY = "portico-development-only-secret"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = PROJECT_ROOT / "instance"


class ConfigurationError(RuntimeError):
    """The environment cannot run Portico safely; the message says what to set."""


@dataclass
class Settings:
    env: str = "production"
    secret_key: str = ""
    database_url: str = ""
    redis_url: str = ""
    payment_gateway: str = "sandbox"
    stripe_secret_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = ""
    smtp_url: str = ""
    base_url: str = ""
    port: int = 5000
    sandbox_latency_ms: int = 0
    billing_on_behalf_countries: tuple[str, ...] = ("US",)
    billing_chunk_size: int = 200
    gateway_rate_per_second: int = 20
    billing_gateway_threads: int = 8
    billing_batch_size: int = 100
    card_testing_limit: int = 5
    card_testing_window_minutes: int = 10
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_development(self) -> bool:
        return self.env in ("development", "test")

    @property
    def secure_cookies(self) -> bool:
        """Cookies travel only over HTTPS: always outside development and test (ADR 0019)."""
        return not self.is_development or self.base_url.startswith("https://")


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read settings from ``environ`` (default ``os.environ``).

    Raises ConfigurationError outside development when SECRET_KEY is missing or the
    development default, or when the Stripe gateway is chosen without its key.
    """
    env = dict(os.environ if environ is None else environ)
    port = int(env.get("PORT") or 5000)
    settings = Settings(
        env=env.get("PORTICO_ENV", "production").strip().lower(),
        secret_key=env.get("SECRET_KEY", ""),
        database_url=env.get("DATABASE_URL") or f"sqlite:///{INSTANCE_DIR / 'portico.db'}",
        redis_url=env.get("REDIS_URL", ""),
        payment_gateway=(env.get("PAYMENT_GATEWAY") or "sandbox").strip().lower(),
        stripe_secret_key=env.get("STRIPE_SECRET_KEY", ""),
        stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET", ""),
        stripe_api_base=env.get("STRIPE_API_BASE", ""),
        smtp_url=env.get("SMTP_URL", ""),
        base_url=(env.get("PORTICO_BASE_URL") or f"http://127.0.0.1:{port}").rstrip("/"),
        port=port,
        sandbox_latency_ms=int(env.get("SANDBOX_LATENCY_MS") or 0),
        billing_chunk_size=int(env.get("BILLING_CHUNK_SIZE") or 200),
        gateway_rate_per_second=int(env.get("GATEWAY_RATE_PER_SECOND") or 20),
        billing_gateway_threads=max(1, int(env.get("BILLING_GATEWAY_THREADS") or 8)),
        billing_batch_size=max(1, int(env.get("BILLING_BATCH_SIZE") or 100)),
        card_testing_limit=int(env.get("CARD_TESTING_LIMIT") or 5),
        card_testing_window_minutes=int(env.get("CARD_TESTING_WINDOW_MINUTES") or 10),
        billing_on_behalf_countries=tuple(
            c.strip().upper()
            for c in (env.get("BILLING_ON_BEHALF_COUNTRIES") or "US").split(",")
            if c.strip()
        ),
    )
    if settings.database_url.startswith("postgres://"):
        settings.database_url = (
            "postgresql+psycopg://" + settings.database_url[len("postgres://") :]
        )
    elif settings.database_url.startswith("postgresql://"):
        settings.database_url = (
            "postgresql+psycopg://" + settings.database_url[len("postgresql://") :]
        )
    check_settings(settings)
    if not settings.secret_key:
        settings.secret_key = DEV_SECRET_KEY
    return settings


def check_settings(settings: Settings) -> None:
    """Refuse unsafe combinations. Raises ConfigurationError naming the variable to set."""
    if settings.env not in ("development", "test", "production"):
        raise ConfigurationError(
            f"PORTICO_ENV={settings.env!r} is not one of development, test, production."
        )
    if not settings.is_development and settings.secret_key in ("", DEV_SECRET_KEY):
        raise ConfigurationError(
            "SECRET_KEY is not set (or is the development default). Outside development "
            "Portico refuses to start with it, because anyone could forge sessions, CSRF "
            "tokens and widget tokens. Set SECRET_KEY to a long random value, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
        )
    if settings.payment_gateway not in ("sandbox", "stripe"):
        raise ConfigurationError("PAYMENT_GATEWAY must be 'sandbox' or 'stripe'.")
    if settings.payment_gateway == "stripe" and not settings.stripe_secret_key:
        raise ConfigurationError("PAYMENT_GATEWAY=stripe needs STRIPE_SECRET_KEY.")
    if not settings.is_development and settings.payment_gateway == "sandbox":
        # Allowed (staging demos), but never silently: production traffic must not hit it.
        settings.extra["sandbox_in_production"] = True
