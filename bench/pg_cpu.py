"""CPU time of the PostgreSQL backends serving one database, for the benchmarks.

Backends come and go with their clients' connections, so a thread samples
``pg_stat_activity`` for the database's backends every ``interval`` seconds and reads each
one's user + system CPU from ``/proc/<pid>/stat`` (the server runs on this machine). A
backend's CPU between its last sample and its exit is missed: at most ``interval``
seconds of it, in a benchmark whose clients end by closing their connections. Client
backends (the connections of the benchmark's processes) and autovacuum workers on the
database are summed apart; the server's other background processes (WAL writer,
checkpointer) are not counted.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid``, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


class BackendCpu:
    """Sum of the CPU the database's backends used between ``start`` and ``stop``."""

    def __init__(self, admin: Any, database: str, interval: float = 0.2) -> None:
        """``admin`` is an engine on another database of the same server."""
        self.admin = admin
        self.database = database
        self.interval = interval
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.kind: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._totals: dict[str, float] | None = None

    def start(self) -> None:
        """Take the starting sample (backends already there count from now) and go on."""
        for pid, cpu in self._sample().items():
            self.first[pid] = self.last[pid] = cpu
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        """Stop sampling; the CPU seconds the client backends used since ``start``."""
        return self.totals().get("client backend", 0.0)

    def totals(self) -> dict[str, float]:
        """Stop sampling; CPU seconds since ``start`` by backend type (``client backend``,
        ``autovacuum worker``)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._record(self._sample())
            self._totals = {}
            for pid, cpu in self.last.items():
                kind = self.kind[pid]
                self._totals[kind] = self._totals.get(kind, 0.0) + cpu - self.first.get(pid, 0.0)
        return dict(self._totals or {})

    def _loop(self) -> None:
        # Ctrl-C and SIGTERM go to the main thread (where they interrupt its waits).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        while not self._stop.wait(self.interval):
            self._record(self._sample())

    def _record(self, sample: dict[int, float]) -> None:
        for pid, cpu in sample.items():
            self.last[pid] = max(cpu, self.last.get(pid, 0.0))

    def _sample(self) -> dict[int, float]:
        from sqlalchemy import text

        with self.admin.connect() as conn:
            rows = conn.execute(
                text("SELECT pid, backend_type FROM pg_stat_activity WHERE datname = :name"),
                {"name": self.database},
            ).all()
        found: dict[int, float] = {}
        for pid, kind in rows:
            cpu = process_cpu(int(pid))
            if cpu is not None:
                found[int(pid)] = cpu
                self.kind.setdefault(int(pid), str(kind))
        return found
