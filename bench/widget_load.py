"""HTTP load for the widget benchmarks: closed loop (fixed concurrency) and open loop (rate).

A helper module of ``widget_latency.py``, not a benchmark of its own. One thread drives
every connection with non-blocking sockets, so the client costs ~0.15 ms of CPU per
request (a thread per connection, or asyncio streams, cost two to three times that on the
same two cores, and threads waiting for the GIL would inflate the latencies they measure).
Every request opens its own connection and asks the server to close it, like a browser's
first load of the widget frame, whatever the server's keep-alive policy. Requests send
``Accept-Encoding: gzip`` like a browser.
"""

from __future__ import annotations

import errno
import heapq
import os
import resource
import selectors
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    """What one load run measured. Latencies in ms, times in s."""

    latencies: list[float]  # of the requests answered with a 200
    elapsed: float  # first start (or scheduled start) to last answer
    errors: list[str] = field(default_factory=list)  # non-200, refused, reset
    timeouts: int = 0
    client_cpu: float = 0.0  # the client's own CPU time during the run
    start_lag: list[float] = field(default_factory=list)  # ms behind schedule (open loop)
    started_span: float = 0.0  # first to last actual start (open loop)

    @property
    def rate(self) -> float:
        """Successful answers per second over the run."""
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


class _Request:
    """One request on its own connection."""

    __slots__ = ("sock", "due", "started", "received", "expected", "status")

    def __init__(self, due: float) -> None:
        self.sock: socket.socket | None = None
        self.due = due  # the moment its latency counts from
        self.started = 0.0
        self.received = b""
        self.expected = -1  # bytes of head + body, once the head has arrived
        self.status = ""


class _Client:
    """The shared machinery: open a connection, send, read one answer, close."""

    def __init__(self, base_url: str, path: str) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/html\r\n"
            "Accept-Encoding: gzip\r\nUser-Agent: portico-bench\r\nConnection: close\r\n\r\n"
        ).encode()
        self.selector = selectors.DefaultSelector()
        self.in_flight: dict[int, _Request] = {}  # by socket fd
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.last_answer = 0.0

    def start(self, due: float) -> _Request:
        req = _Request(due)
        req.started = time.perf_counter()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        req.sock = sock
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            self._done(req, f"connect: {os.strerror(code)}")
            return req
        self.in_flight[sock.fileno()] = req
        self.selector.register(sock, selectors.EVENT_WRITE, req)
        return req

    def _done(self, req: _Request, error: str = "") -> None:
        assert req.sock is not None
        now = time.perf_counter()
        self.last_answer = now
        if error:
            self.errors.append(error)
        else:
            self.latencies.append((now - req.due) * 1000)
        if req.sock.fileno() in self.in_flight:
            del self.in_flight[req.sock.fileno()]
            self.selector.unregister(req.sock)
        req.sock.close()
        req.sock = None

    def drop(self, req: _Request) -> None:
        """Give up on ``req`` (a timeout): close it without counting an answer."""
        assert req.sock is not None
        del self.in_flight[req.sock.fileno()]
        self.selector.unregister(req.sock)
        req.sock.close()
        req.sock = None

    def poll(self, timeout: float) -> list[_Request]:
        """Advance the connections with events within ``timeout``; the finished ones."""
        finished = []
        for key, events in self.selector.select(timeout=timeout):
            req: _Request = key.data
            sock = req.sock
            assert sock is not None
            if events & selectors.EVENT_WRITE:  # connected (or failed to)
                if error := sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self._done(req, f"connect: {os.strerror(error)}")
                    finished.append(req)
                    continue
                sock.send(self.request)
                self.selector.modify(sock, selectors.EVENT_READ, req)
                continue
            try:
                chunk = sock.recv(65536)
            except OSError as exc:
                self._done(req, f"recv: {exc.strerror}")
                finished.append(req)
                continue
            req.received += chunk
            if req.expected < 0 and (end := req.received.find(b"\r\n\r\n")) >= 0:
                head = req.received[:end].decode("latin-1").lower().split("\r\n")
                fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
                req.status = head[0].split()[1]
                req.expected = end + 4 + int(fields.get("content-length", "0"))
            if 0 <= req.expected <= len(req.received):
                self._done(req, "" if req.status == "200" else f"HTTP {req.status}")
                finished.append(req)
            elif not chunk:
                self._done(req, "closed before answering")
                finished.append(req)
        return finished


def closed_loop(base_url: str, path: str, total: int, concurrency: int) -> Run:
    """``total`` GETs, ``concurrency`` at a time: each answer starts the next request.

    A request's latency runs from its connect to its last byte. Raises SystemExit when the
    server cannot be reached or a request fails (a closed loop has no use for failures).
    """
    client = _Client(base_url, path)
    cpu, began = _cpu(), time.perf_counter()
    started = 0
    for _ in range(min(concurrency, total)):
        client.start(time.perf_counter())
        started += 1
    while len(client.latencies) < total:
        finished = client.poll(30)
        if client.errors:
            raise SystemExit(f"{base_url}{path}: {client.errors[:3]}")
        if time.perf_counter() - max(client.last_answer, began) > 30:
            raise SystemExit(f"{base_url}{path}: no answer within 30 s")
        for _ in finished:
            if started < total:
                client.start(time.perf_counter())
                started += 1
    client.selector.close()
    return Run(
        latencies=client.latencies,
        elapsed=client.last_answer - began,
        client_cpu=_cpu() - cpu,
    )


def open_loop(base_url: str, path: str, rate: float, duration: float, timeout: float) -> Run:
    """GETs started at a fixed ``rate`` for ``duration`` seconds, answered or not.

    Request n is due at ``start + n / rate`` and its latency counts from that moment, not
    from when the client got round to it, so a stall (of the server, or of this client)
    shows in the latencies instead of silently thinning the load (no coordinated
    omission). A request not answered ``timeout`` seconds after it was due is abandoned
    and counted as a timeout; refused or reset connections and non-200 answers are
    errors. The client's lag behind schedule and its own CPU time are reported, to show
    whether the client kept up.
    """
    client = _Client(base_url, path)
    count = round(rate * duration)
    deadlines: list[tuple[float, int, _Request]] = []  # (give-up time, seq, request)
    run = Run(latencies=[], elapsed=0.0)
    cpu = _cpu()
    begin = time.perf_counter() + 0.05
    first_start = last_start = 0.0
    sent = 0
    while sent < count or client.in_flight:
        now = time.perf_counter()
        while sent < count and begin + sent / rate <= now:
            due = begin + sent / rate
            req = client.start(due)
            if sent == 0:
                first_start = req.started
            last_start = req.started
            run.start_lag.append((req.started - due) * 1000)
            if req.sock is not None:
                heapq.heappush(deadlines, (due + timeout, sent, req))
            sent += 1
        while deadlines and (deadlines[0][0] <= now or deadlines[0][2].sock is None):
            _, _, req = heapq.heappop(deadlines)
            if req.sock is not None:
                client.drop(req)
                run.timeouts += 1
        wait = (begin + sent / rate - now) if sent < count else 0.05
        if deadlines:
            wait = min(wait, deadlines[0][0] - now)
        if client.in_flight:
            client.poll(max(0.0, wait))
        elif wait > 0:
            time.sleep(wait)
    client.selector.close()
    run.latencies = client.latencies
    run.errors = client.errors
    run.client_cpu = _cpu() - cpu
    run.started_span = last_start - first_start
    run.elapsed = max(client.last_answer, last_start) - begin
    return run
