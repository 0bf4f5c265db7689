"""Names users choose: job ids and queue names, and their one check.

Owns: the allowed shapes and the error for each. Must not: know keys or Redis (the
engine builds keys from names that passed here).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from rsched.errors import InvalidQueueName, ValidationError

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
JOB_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


def validate_queue(name: str) -> str:
    if not QUEUE_NAME.match(name):
        raise InvalidQueueName(f"invalid queue name {name!r}: use 1-64 of [A-Za-z0-9_.-]")
    return name


# A queue's priority lane: runs of jobs with an explicit priority p are queued in the
# stream of lane "<queue>!<p>" (docs/tasks.md, "Priorities"); "<queue>" is the default lane.
LANE_SEP = "!"
MIN_PRIORITY, MAX_PRIORITY = 0, 9
LANE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}(![0-9])?$")


def lane(queue: str, priority: int | None) -> str:
    """The lane runs of a job with ``priority`` (None: its queue's default) are queued in."""
    return queue if priority is None else f"{queue}{LANE_SEP}{priority}"


def split_lane(name: str) -> tuple[str, int | None]:
    """A lane name -> (queue, explicit priority or None)."""
    queue, sep, prio = name.partition(LANE_SEP)
    return queue, int(prio) if sep else None


def validate_lane(name: str) -> str:
    if not LANE_NAME.match(name):
        raise InvalidQueueName(f"invalid queue name {name!r}: use 1-64 of [A-Za-z0-9_.-]")
    return name


def validate_job_id(job_id: str) -> str:
    if not JOB_ID.match(job_id):
        raise ValidationError(f"invalid job id {job_id!r}: use 1-128 of [A-Za-z0-9_.-]")
    return job_id


TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$")
LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$")
MAX_LABELS = 32


def validate_tenant(tenant: str) -> str:
    if not TENANT.match(tenant):
        raise ValidationError(f"invalid tenant {tenant!r}: use 1-64 of [A-Za-z0-9_.-]")
    return tenant


def validate_job_name(name: str) -> str:
    if not JOB_NAME.match(name):
        raise ValidationError(f"invalid job name {name!r}: use 1-128 of [A-Za-z0-9_.:/@-],"
                              " starting with a letter or digit")
    return name


def validate_labels(labels: dict[str, str]) -> dict[str, str]:
    if len(labels) > MAX_LABELS:
        raise ValidationError(f"labels: at most {MAX_LABELS}")
    for key, value in labels.items():
        if not LABEL_KEY.match(key):
            raise ValidationError(f"invalid label key {key!r}: use 1-63 of [A-Za-z0-9_./-]")
        if len(value) > 256:
            raise ValidationError(f"label {key!r}: value longer than 256 characters")
    return labels


def validate_webhook_url(url: str) -> str:
    """An http(s) URL with a host and a valid port (a webhook's target)."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) \
            and (parts.port is None or parts.port > 0) and not any(c.isspace() for c in url)
    except ValueError:  # a bad port or IPv6 literal
        ok = False
    if not ok:
        raise ValidationError(f"webhook url {url[:100]!r}: use http:// or https:// with a host")
    return url
