"""Queueing a billing run: a job per chunk, then the day's scheduled payments, all sent to
Redis in one round trip whatever the number of chunks (ARCHITECTURE §2)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

from flask import Flask
from redis import Redis
from redis.connection import Connection, ConnectionPool, UnixDomainSocketConnection
from rq.utils import get_version

from app.extensions import queue
from app.jobs.billing import enqueue_run
from tests.services.billing_helpers import due_customers, make_partner, sandbox

DAY = date(2031, 6, 3)


class _Sends:
    count = 0


class _CountingTcp(Connection):
    def send_packed_command(self, command, check_health=True) -> None:  # noqa: ANN001
        _Sends.count += 1
        super().send_packed_command(command, check_health)


class _CountingUnix(UnixDomainSocketConnection):
    def send_packed_command(self, command, check_health=True) -> None:  # noqa: ANN001
        _Sends.count += 1
        super().send_packed_command(command, check_health)


@contextmanager
def counted_redis(app: Flask, url: str) -> Iterator[type[_Sends]]:
    """The app's Redis client replaced by one counting what it sends (one per round trip)."""
    kind = _CountingUnix if url.startswith("unix://") else _CountingTcp
    client = Redis(connection_pool=ConnectionPool.from_url(url, connection_class=kind))
    resources = app.extensions["portico"]
    saved = resources._redis
    resources._redis = client
    # Connected, and RQ's once-per-client server version read done: what is counted is
    # what queueing sends.
    get_version(client)
    _Sends.count = 0
    try:
        yield _Sends
    finally:
        resources._redis = saved
        client.close()


def test_does_a_run_queue_its_chunks_and_scheduled_payments_in_one_round_trip(
    app, db_session, redis_url
) -> None:
    gateway = sandbox(app)
    settings = app.config["PORTICO"]
    chunk_size = settings.billing_chunk_size
    settings.billing_chunk_size = 2
    try:
        with app.app_context():
            partner = make_partner(db_session)
            subs = due_customers(db_session, gateway, partner, 5, due=DAY)
            billing = queue("billing")
            billing.empty()
            with counted_redis(app, redis_url) as sends:
                run_id = enqueue_run(partner.id, DAY)  # type: ignore[arg-type]
            jobs = billing.get_jobs()
            billing.empty()
    finally:
        settings.billing_chunk_size = chunk_size

    assert sends.count == 1
    assert [j.func_name for j in jobs] == ["app.jobs.billing.run_chunk"] * 3 + [
        "app.jobs.billing.run_scheduled_payments"
    ]
    ids = [s.id for s in subs]
    assert [j.args for j in jobs[:3]] == [(run_id, ids[0:2]), (run_id, ids[2:4]), (run_id, ids[4:])]
    assert jobs[3].args == (partner.id, DAY)
    assert {j.timeout for j in jobs} == {3600}
