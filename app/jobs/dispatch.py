"""Enqueueing after commit. Job ids are derived from row ids, so a row is queued once."""

from __future__ import annotations

from collections.abc import Iterable

from rq.exceptions import DuplicateJobError

from app.extensions import queue


def enqueue_emails(message_ids: Iterable[int]) -> int:
    """Queue a send job per message id not already queued; returns how many were queued."""
    email_queue = queue("email")
    queued = 0
    for message_id in message_ids:
        try:
            email_queue.enqueue(
                "app.jobs.email.send_email", message_id, job_id=f"email-{message_id}", unique=True
            )
            queued += 1
        except DuplicateJobError:
            continue
    return queued
