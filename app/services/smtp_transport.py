"""One SMTP session for a batch of emails, from an ``SMTP_URL``.

``smtp://user:pass@host:port`` (plain, port 25 by default), ``smtp+starttls://…`` (upgraded
with STARTTLS, port 587) and ``smtps://…`` (TLS from the first byte, port 465). TLS
certificates are verified against the system's trust store. User and password are
percent-decoded, so ``p%40ss`` means ``p@ss``.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS: Final = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
TIMEOUT_SECONDS: Final = 20
MAX_CONNECTIONS: Final = 2  # the first, and one reconnection after a drop


class TransportGaveUp(Exception):
    """The batch's connection is gone and may not be opened again; ``__cause__`` says why."""


class ConnectionLost(Exception):
    """The connection dropped while a message was being sent; ``__cause__`` says how."""


@dataclass(frozen=True)
class SmtpTarget:
    scheme: str
    host: str
    port: int
    username: str
    password: str


def parse_smtp_url(url: str) -> SmtpTarget:
    """Split an ``SMTP_URL``.

    Raises:
        ValueError: the scheme is not smtp, smtp+starttls or smtps, or the host is missing.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"SMTP_URL must start with smtp://, smtp+starttls:// or smtps://, not {scheme!r}"
        )
    if not parts.hostname:
        raise ValueError("SMTP_URL has no host")
    return SmtpTarget(
        scheme=scheme,
        host=parts.hostname,
        port=parts.port or DEFAULT_PORTS[scheme],
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )


def is_connection_error(exc: BaseException) -> bool:
    """True for a lost or unusable connection, as opposed to a refusal of one message."""
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException)


def is_permanent(exc: BaseException) -> bool:
    """True for a refusal the server says will not change (a 5xx reply): every recipient
    refused with 5xx, or the sender or the data refused with 5xx. Trying again would only
    repeat it."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _reply in exc.recipients.values()]
        return bool(codes) and all(code >= 500 for code in codes)
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code >= 500
    return False


def describe(exc: BaseException) -> str:
    """A short, readable error for the outbox row: the server's code and words if any."""
    if isinstance(exc, TransportGaveUp) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(
            f"{code} {_text(reply)} ({address})"
            for address, (code, reply) in exc.recipients.items()
        )
        text = f"Recipient refused: {refused}"
    elif isinstance(exc, smtplib.SMTPResponseException):
        text = f"{type(exc).__name__}: {exc.smtp_code} {_text(exc.smtp_error)}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text[:500]


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


class SmtpBatchConnection:
    """One batch's SMTP connection: opened by :meth:`open`, reopened once after a drop.

    The caller opens it before taking any database lock (connecting can take up to the
    timeout), sends with :meth:`send`, and after :class:`ConnectionLost` calls
    :meth:`open` again: the first time that reconnects, the second time (a second drop,
    or a connection that cannot be opened at all) it raises :class:`TransportGaveUp`. A
    message the server refuses (a recipient, the sender or the data) raises that
    ``smtplib`` error and the connection carries on.
    """

    def __init__(self, url: str) -> None:
        self.target = parse_smtp_url(url)
        self.connections = 0
        self._client: smtplib.SMTP | None = None
        self._last_drop: BaseException | None = None
        self._gave_up: BaseException | None = None

    def open(self) -> None:
        """Make sure a connection is up, opening one if needed.

        Raises:
            TransportGaveUp: it cannot be opened, or it dropped twice in this batch.
        """
        if self._client is not None:
            return
        if self._gave_up is None and self.connections >= MAX_CONNECTIONS:
            self._gave_up = self._last_drop or smtplib.SMTPServerDisconnected("connection lost")
        if self._gave_up is not None:
            raise TransportGaveUp(str(self._gave_up)) from self._gave_up
        self.connections += 1
        try:
            self._client = self._open()
        except (OSError, smtplib.SMTPException) as exc:
            self._gave_up = exc
            raise TransportGaveUp(str(exc)) from exc

    def send(self, sender: str, recipients: list[str], data: bytes) -> dict[str, tuple[int, bytes]]:
        """Send one message (``data``: its CRLF-terminated bytes) on the open connection;
        returns the recipients refused while others accepted it.

        Raises:
            ConnectionLost: the connection dropped (it is closed; :meth:`open` again).
            smtplib.SMTPRecipientsRefused, SMTPSenderRefused, SMTPDataError: the server
                refused this message.
        """
        client = self._client
        if client is None:
            raise ConnectionLost("not connected")
        try:
            return client.sendmail(sender, recipients, data)
        except (OSError, smtplib.SMTPException) as exc:
            if is_connection_error(exc):
                self.close()
                self._last_drop = exc
                raise ConnectionLost(str(exc)) from exc
            if client.sock is None:  # a 421 answer: the server closed the session
                self._client = None
                self._last_drop = exc
            raise

    def close(self) -> None:
        """Say QUIT if the connection is still up; never raises."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()

    def _open(self) -> smtplib.SMTP:
        target = self.target
        client: smtplib.SMTP
        if target.scheme == "smtps":
            client = smtplib.SMTP_SSL(
                target.host,
                target.port,
                timeout=TIMEOUT_SECONDS,
                context=ssl.create_default_context(),
            )
        else:
            client = smtplib.SMTP(target.host, target.port, timeout=TIMEOUT_SECONDS)
        try:
            client.ehlo()
            if target.scheme == "smtp+starttls":
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if target.username:
                client.login(target.username, target.password)
        except BaseException:
            client.close()
            raise
        return client
