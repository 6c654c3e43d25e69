"""The RQ worker class: ``rq worker -w app.jobs.worker.PorticoWorker billing email default``.

The app is built once and jobs run in the worker's own process (RQ's ``SimpleWorker``),
reusing its database and Redis connections, compiled statements and templates: forking a
work horse per job cost about 200 ms of start-up per billing chunk (ADR 0011). Crash
safety does not rest on the fork: every job is safe to run again after a worker dies.
Should anything fork anyway, the child drops the pooled connections it inherited, so no
socket is ever shared between processes.
"""

from __future__ import annotations

import os
from typing import Any

from rq import SimpleWorker

from app.jobs.context import job_app


def _after_fork_in_child() -> None:
    from app.jobs.context import _app

    if _app is not None:
        _app.extensions["portico"].after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class PorticoWorker(SimpleWorker):
    """An RQ worker that builds the Portico app once and runs every job in its process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        job_app()
        super().__init__(*args, **kwargs)


def main() -> None:
    """``python -m app.jobs.worker``: work the billing, email and default queues."""
    from app.extensions import QUEUE_NAMES

    app = job_app()
    connection = app.extensions["portico"].redis
    PorticoWorker(list(QUEUE_NAMES), connection=connection).work(with_scheduler=True)


if __name__ == "__main__":
    main()
