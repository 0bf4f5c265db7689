"""Names users choose: job ids and queue names, and their one check.

Owns: the allowed shapes and the error for each. Must not: know keys or Redis (the
engine builds keys from names that passed here).
"""

from __future__ import annotations

import re

from rsched.errors import InvalidQueueName, ValidationError

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
JOB_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


def validate_queue(name: str) -> str:
    if not QUEUE_NAME.match(name):
        raise InvalidQueueName(f"invalid queue name {name!r}: use 1-64 of [A-Za-z0-9_.-]")
    return name


def validate_job_id(job_id: str) -> str:
    if not JOB_ID.match(job_id):
        raise ValidationError(f"invalid job id {job_id!r}: use 1-128 of [A-Za-z0-9_.-]")
    return job_id
