"""Never twice: two workers given the same batch at the same moment send each message once.

The SMTP server answers slowly, so both are mid-batch together; every message must reach
it exactly once (counted by ``Message-ID``) and be claimed exactly once (one attempt).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from redis import Redis
from rq import Worker
from rq.job import Job, JobStatus
from sqlmodel import Session

from app.models import OutboxStatus
from app.services.email import DeliveryReport, deliver_many
from tests.fakes.smtp_server import LocalSMTPServer
from tests.jobs.email_support import make_messages, rows

ROOT = Path(__file__).resolve().parents[2]


def _assert_each_sent_once(engine, smtp: LocalSMTPServer, ids: list[int]) -> None:  # noqa: ANN001
    counts = Counter(smtp.message_ids())
    assert counts == Counter({f"<outbox-{i}@portico.example>": 1 for i in ids})
    assert {(r.status, r.attempts) for r in rows(engine, ids)} == {(OutboxStatus.SENT, 1)}


def test_do_two_deliveries_of_the_same_batch_at_once_send_each_message_once(app, engine) -> None:
    ids = make_messages(engine, 60)
    start = threading.Barrier(2)
    reports: list[DeliveryReport] = []
    failures: list[BaseException] = []

    def deliver(url: str) -> None:
        try:
            with Session(engine) as session:
                start.wait(timeout=10)
                reports.append(deliver_many(session, ids, smtp_url=url))
        except BaseException as exc:  # reported in the main thread
            failures.append(exc)

    with LocalSMTPServer(delay=0.005) as smtp:
        threads = [threading.Thread(target=deliver, args=(smtp.url,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []
    assert sorted(i for r in reports for i in r.sent) == ids
    _assert_each_sent_once(engine, smtp, ids)


def _worker(database_url: str, redis_url: str, smtp_url: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SMTP_URL": smtp_url,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "PORTICO_ENV": "test",
        "PAYMENT_GATEWAY": "sandbox",
    }
    rq = str(Path(sys.executable).with_name("rq"))
    command = [rq, "worker", "--url", redis_url, "-w", "app.jobs.worker.PorticoWorker", "email"]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait(condition, seconds: float, log: Path) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)


def test_do_two_real_workers_given_the_same_batch_send_each_message_once(
    app, engine, database_url, redis_url, tmp_path
) -> None:
    ids = make_messages(engine, 60)
    redis: Redis = app.extensions["portico"].redis
    email_queue = app.extensions["portico"].queue("email")
    log = tmp_path / "workers.log"
    with LocalSMTPServer(delay=0.01) as smtp:
        workers = [_worker(database_url, redis_url, smtp.url, log) for _ in range(2)]
        try:
            # Both workers wait on the queue before the jobs arrive, so each takes one.
            _wait(lambda: len(Worker.all(queue=email_queue)) == 2, 60, log)
            jobs = [
                email_queue.enqueue("app.jobs.email.send_emails", ids, job_id=f"same-batch-{n}")
                for n in range(2)
            ]
            _wait(lambda: all(j.get_status() == JobStatus.FINISHED for j in jobs), 60, log)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=30)
        done = [Job.fetch(j.id, connection=redis) for j in jobs]
    assert done[0].worker_name != done[1].worker_name  # really two workers
    first, second = sorted(done, key=lambda j: j.started_at)
    assert second.started_at < first.ended_at  # really at the same time
    assert sum(j.return_value() for j in done) == 60
    _assert_each_sent_once(engine, smtp, ids)
