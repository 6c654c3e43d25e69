"""Enqueueing after commit. Job ids are derived from row ids, so a row is queued once."""

from __future__ import annotations

from collections.abc import Iterable

from rq.exceptions import DuplicateJobError

from app.extensions import queue


def enqueue_emails(message_ids: Iterable[int]) -> int:
    """Queue the delivery of outbox messages; returns how many jobs were queued.

    One message gets its own job (``email-<id>``, queued once). Several (a billing batch's
    receipts, the sweeper's leftovers) share one job, so queueing costs one Redis round
    trip whatever their number; delivery is idempotent, so a message in two jobs is
    still sent once.
    """
    ids = sorted(set(message_ids))
    if not ids:
        return 0
    email_queue = queue("email")
    if len(ids) == 1:
        func, args, job_id = "app.jobs.email.send_email", (ids[0],), f"email-{ids[0]}"
    else:
        func, args, job_id = "app.jobs.email.send_emails", (ids,), _batch_id(ids)
    try:
        email_queue.enqueue(func, *args, job_id=job_id, unique=True)
    except DuplicateJobError:
        return 0
    return 1


def _batch_id(ids: list[int]) -> str:
    return f"emails-{ids[0]}-{ids[-1]}-{len(ids)}"
