"""Claims a new job makes before it exists: its unique key and its name in its tenant.

Owns: the compare-and-set loops over the catalog's claim scripts, and when a holder still
counts (a live job, or a claim younger than UNIQUE_CREATE_MS). Must not: create jobs (the
client does, then writes what it claimed).
"""

from __future__ import annotations

from collections.abc import Sequence

from rsched.engine import Engine
from rsched.errors import DuplicateJob, ValidationError
from rsched.models import JobDef, JobState

# A unique key's claim whose job is not in Redis yet is live this long (its creator is
# between claiming the key and creating the job); past it, a new job may take the key.
UNIQUE_CREATE_MS = 30_000


class Claims:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def unique(self, tenant: str, key: str, claim: str, now: int) -> str | None:
        """Claim a unique key for a new job (None), or the id of the job holding it. A
        holder counts while its job hash exists (it ends, then expires done_job_ttl_s
        later) or while its claim is younger than UNIQUE_CREATE_MS (being created)."""
        for _ in range(5):  # compare-and-set: retried only when the claim changed meanwhile
            held = await self.engine.catalog.unique_holder(tenant, key)
            if held is not None:
                holder, _, at = held.partition(" ")
                fresh = now - int(at or 0) < UNIQUE_CREATE_MS
                if fresh or await self.engine.query.get_job(holder) is not None:
                    return holder
            if await self.engine.catalog.claim_unique(tenant, key, held, claim):
                return None
        raise DuplicateJob(f"unique key {key!r} is contended", script="claim_name")

    async def name(self, tenant: str, name: str, job_id: str) -> None:
        """Take a tenant's job name for ``job_id``; a cancelled or vanished holder loses it."""
        for _ in range(3):  # compare-and-set: retried only when the holder changed meanwhile
            holder = await self.engine.catalog.name_holder(tenant, name)
            if holder == job_id:
                return
            if holder is not None:
                held = await self.engine.query.get_job(holder)
                if held is not None and held.state is not JobState.CANCELLED \
                        and held.name == name and held.tenant == tenant:
                    raise DuplicateJob(f"job name {name!r} is taken by job {holder!r}",
                                       script="claim_name", job_id=holder)
            if await self.engine.catalog.claim_name(tenant, name, holder, job_id):
                return
        raise DuplicateJob(f"job name {name!r} is contended", script="claim_name")

    async def names(self, jobs: Sequence[JobDef], ids: Sequence[str]) -> None:
        named = [(j.tenant, j.name, i) for j, i in zip(jobs, ids, strict=True) if j.name]
        if len({(t, n) for t, n, _ in named}) != len(named):
            raise ValidationError("name: the same job name twice in one batch")
        done: list[tuple[str, str, str]] = []
        try:
            for tenant, name, job_id in named:
                await self.name(tenant, name, job_id)
                done.append((tenant, name, job_id))
        except BaseException:
            for tenant, name, job_id in done:
                await self.engine.catalog.claim_name(tenant, name, job_id, None)
            raise

