"""A minimal local SMTP server that keeps every message it receives (test boundary fake).

Besides receiving mail it counts the connections (SMTP sessions) it served, checks
``AUTH PLAIN`` credentials when told to, and can misbehave on purpose: refuse a chosen
recipient (always, or for the first few tries), drop the connection after a number of
messages, or answer slowly.
"""

from __future__ import annotations

import base64
import socketserver
import threading
import time
from email import message_from_bytes
from email.message import Message
from types import TracebackType


class _Handler(socketserver.StreamRequestHandler):
    def _reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        server: LocalSMTPServer = self.server  # type: ignore[assignment]
        with server.lock:
            server.sessions += 1
        self._reply("220 localhost fake SMTP ready")
        sender, recipients, authenticated = "", [], server.credentials is None
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            command = raw.decode("utf-8", "replace").strip()
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.wfile.write(b"250-localhost\r\n250-8BITMIME\r\n250 AUTH PLAIN\r\n")
            elif verb == "HELO":
                self._reply("250 localhost")
            elif verb == "AUTH":
                authenticated = self._auth(server, command)
            elif verb == "MAIL":
                if not authenticated:
                    self._reply("530 5.7.0 Authentication required")
                    continue
                sender, recipients = command[10:].strip("<> "), []
                self._reply("250 OK")
            elif verb == "RCPT":
                address = command[8:].strip("<> ")
                refusal = server.refusal_for(address)
                if refusal:
                    self._reply(refusal)
                else:
                    recipients.append(address)
                    self._reply("250 OK")
            elif verb == "DATA":
                self._reply("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while (line := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                    lines.append(line[1:] if line.startswith(b"..") else line)
                if not line:
                    return  # the client vanished mid-message: a real server keeps nothing
                if server.delay:
                    time.sleep(server.delay)
                drop = server.keep((sender, recipients, message_from_bytes(b"".join(lines))))
                self._reply("250 OK queued")
                if drop:
                    return  # hang up without a word, as a crashed or restarted server would
            elif verb == "RSET":
                sender, recipients = "", []
                self._reply("250 OK")
            elif verb == "QUIT":
                self._reply("221 Bye")
                return
            else:
                self._reply("250 OK")

    def _auth(self, server: LocalSMTPServer, command: str) -> bool:
        parts = command.split()
        if len(parts) != 3 or parts[1].upper() != "PLAIN":
            self._reply("504 5.5.4 Only AUTH PLAIN with an initial response")
            return False
        _, user, password = base64.b64decode(parts[2]).decode().split("\0")
        server.logins.append((user, password))
        if server.credentials is not None and (user, password) != server.credentials:
            self._reply("535 5.7.8 Authentication credentials invalid")
            return False
        self._reply("235 2.7.0 Authentication successful")
        return True


class LocalSMTPServer(socketserver.ThreadingTCPServer):
    """``with LocalSMTPServer() as smtp:`` listens on 127.0.0.1 at ``smtp.url``.

    ``credentials=("user", "secret")`` requires ``AUTH PLAIN`` with them before ``MAIL``
    (``smtp.url`` then carries them). ``delay`` (seconds) slows every accepted message.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *, credentials: tuple[str, str] | None = None, delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.credentials = credentials
        self.delay = delay
        self.lock = threading.Lock()
        self.messages: list[tuple[str, list[str], Message]] = []
        self.sessions = 0
        self.logins: list[tuple[str, str]] = []
        self._refusals: dict[str, tuple[str, int | None]] = {}
        self._drop_at: int | None = None
        self._drop_every = 0
        self._drops_left = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        auth = ""
        if self.credentials is not None:
            auth = f"{self.credentials[0]}:{self.credentials[1]}@"
        return f"smtp://{auth}127.0.0.1:{self.server_address[1]}"

    def refuse(
        self, address: str, reply: str = "550 5.1.1 No such user here", *, times: int | None = None
    ) -> None:
        """Answer ``RCPT TO:<address>`` with ``reply``: always, or only the next ``times``."""
        self._refusals[address] = (reply, times)

    def drop_after(self, count: int, *, times: int = 1) -> None:
        """Hang up right after accepting the ``count``-th message from now, and again
        after every ``count`` more, ``times`` times in all."""
        with self.lock:
            self._drop_at = len(self.messages) + count
            self._drop_every, self._drops_left = count, times

    def refusal_for(self, address: str) -> str:
        with self.lock:
            reply, times = self._refusals.get(address, ("", None))
            if reply and times is not None:
                if times <= 0:
                    return ""
                self._refusals[address] = (reply, times - 1)
            return reply

    def keep(self, message: tuple[str, list[str], Message]) -> bool:
        """Store an accepted message; True when the connection should now be dropped."""
        with self.lock:
            self.messages.append(message)
            if self._drop_at is None or len(self.messages) < self._drop_at:
                return False
            self._drops_left -= 1
            self._drop_at = len(self.messages) + self._drop_every if self._drops_left else None
            return True

    def message_ids(self) -> list[str]:
        """The ``Message-ID`` header of every received message, in arrival order."""
        with self.lock:
            return [str(email["Message-ID"]) for _, _, email in self.messages]

    def __enter__(self) -> LocalSMTPServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()
        self.server_close()
