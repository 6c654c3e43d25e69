"""Enqueueing after commit. Job ids are derived from row ids, so a row is queued once."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Final

from flask import current_app
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from app.extensions import queue

# Messages per email job: one SMTP connection each; several jobs share a backlog.
EMAIL_BATCH_SIZE: Final = 200
# RQ retries a failed email job after these many seconds (overridable in tests through
# the Flask config key EMAIL_RETRY_INTERVALS); afterwards the outbox sweeper takes over.
EMAIL_RETRY_INTERVALS: Final = (10, 30, 120, 600, 1800)
EMAIL_JOB_TIMEOUT: Final = 600
# A job id may be reused once its job has ended this way (its record stays in Redis).
_ENDED: Final = frozenset(
    {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}
)


def enqueue_emails(message_ids: Iterable[int], *, retry: bool = True) -> int:
    """Queue the delivery of outbox messages; returns how many jobs were queued.

    One message gets its own job (``email-<id>``); several share jobs of up to
    ``EMAIL_BATCH_SIZE`` (``emails-<first id>-<count>-<digest of the ids>``), each sent
    over one SMTP connection, so queueing costs one Redis round trip per batch. A job id
    still queued, scheduled or running is not queued again; one whose job has ended
    (sent, or failed for good) is replaced, so "Send again" and the sweeper can always
    queue a message anew. Delivery is idempotent, so a message in two jobs is still sent
    once. With ``retry`` RQ retries a failed job with backoff (``EMAIL_RETRY_INTERVALS``);
    the sweeper queues without it, being itself the slow retry.

    Needs an app context. Raises redis errors if Redis is unreachable.
    """
    ids = sorted(set(message_ids))
    if not ids:
        return 0
    email_queue = queue("email")
    policy = _retry_policy() if retry else None
    queued = 0
    for start in range(0, len(ids), EMAIL_BATCH_SIZE):
        chunk = ids[start : start + EMAIL_BATCH_SIZE]
        if len(chunk) == 1:
            func, arg, job_id = "app.jobs.email.send_email", chunk[0], f"email-{chunk[0]}"
        else:
            func, arg, job_id = "app.jobs.email.send_emails", chunk, _batch_id(chunk)
        queued += _enqueue_once(email_queue, func, arg, job_id=job_id, retry=policy)
    return queued


def _enqueue_once(
    email_queue: Queue, func: str, arg: object, *, job_id: str, retry: Retry | None
) -> int:
    for _ in range(2):
        try:
            email_queue.enqueue(
                func, arg, job_id=job_id, unique=True, retry=retry, job_timeout=EMAIL_JOB_TIMEOUT
            )
            return 1
        except DuplicateJobError:
            try:
                job = Job.fetch(job_id, connection=email_queue.connection)
            except NoSuchJobError:
                continue  # it just expired: try again
            if job.get_status(refresh=False) not in _ENDED:
                return 0  # queued, scheduled for a retry, or running: it will send them
            job.delete()
    return 0


def _retry_policy() -> Retry:
    intervals: Sequence[int] = current_app.config.get(
        "EMAIL_RETRY_INTERVALS", EMAIL_RETRY_INTERVALS
    )
    return Retry(max=len(intervals), interval=list(intervals))


def _batch_id(ids: list[int]) -> str:
    digest = hashlib.blake2b(",".join(map(str, ids)).encode(), digest_size=8).hexdigest()
    return f"emails-{ids[0]}-{len(ids)}-{digest}"
