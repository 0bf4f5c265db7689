"""The invariant check every chaos and concurrency scenario ends with.

Owns: reading the whole state of one deployment (job and run hashes, queue streams and
their pending lists, the due index, events and dead-letter streams) and asserting:

- no slot fired twice: each (job, slot) has exactly one run;
- every run is in exactly one state, terminal once the system has settled, with exactly
  one terminal event for it (a fenced-out late completion must add none);
- no id is in two structures: an ended run is not pending in a queue stream, a retry
  member in the due index belongs to a ``retrying`` run (and vice versa), a job member
  in the due index belongs to an ``active`` job, a run is dead-lettered at most once.

Must not: change state, or know how a scenario produced it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from rsched.engine import Engine
from rsched.engine.keys import RETRY_PREFIX, WORKER_GROUP
from rsched.models import TERMINAL, RunStatus

_ENDED = {s.value for s in TERMINAL}


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def read_stream(redis: Any, key: str, page: int = 10_000) -> list[tuple[str, dict[str, str]]]:
    """Every entry of a stream, oldest first, fields decoded (payload blobs excluded)."""
    out: list[tuple[str, dict[str, str]]] = []
    start = "-"
    while True:
        rows = await redis.xrange(key, min=start, count=page)
        for eid, f in rows:
            out.append((_s(eid), {_s(a): _s(b) for a, b in f.items() if _s(a) not in
                                  ("spec", "sched")}))
        if len(rows) < page:
            return out
        start = "(" + _s(rows[-1][0])


async def fires_from_queues(engine: Engine, queues: list[str]) -> dict[tuple[str, int], set[str]]:
    """(job, slot) -> run ids enqueued for it, read from the queue streams (which only
    hold every fire while no worker trims them)."""
    fires: dict[tuple[str, int], set[str]] = defaultdict(set)
    for k in engine.core.shard_keys:
        for q in queues:
            for _, f in await read_stream(engine.core.redis, k.queue(q)):
                fires[(f["j"], int(float(f["slot"])))].add(f["r"])
    return fires


async def fires_from_events(engine: Engine) -> dict[tuple[str, int], set[str]]:
    """(job, slot) -> run ids, from the ``queued`` run events of scheduled fires."""
    fires: dict[tuple[str, int], set[str]] = defaultdict(set)
    for k in engine.core.shard_keys:
        for _, f in await read_stream(engine.core.redis, k.events):
            if f.get("k") == "run" and f.get("st") == "queued" and f.get("why") != "run_now":
                fires[(f["j"], int(float(f["slot"])))].add(f["r"])
    return fires


def doubled(fires: dict[tuple[str, int], set[str]]) -> dict[tuple[str, int], set[str]]:
    return {key: runs for key, runs in fires.items() if len(runs) > 1}


@dataclass
class Summary:
    runs: dict[str, dict[str, str]]  # run id -> run hash fields
    fires: dict[tuple[str, int], set[str]]  # (job, slot) -> run ids, from run hashes
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> state

    def statuses(self) -> Counter[str]:
        return Counter(r["st"] for r in self.runs.values())

    def slots(self, job_id: str) -> list[int]:
        if not hasattr(self, "_by_job"):
            self._by_job: dict[str, list[int]] = defaultdict(list)
            for j, slot in self.fires:
                self._by_job[j].append(slot)
        return sorted(self._by_job.get(job_id, []))


async def _hashes(redis: Any, keys: list[str]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for i in range(0, len(keys), 2000):
        pipe = redis.pipeline(transaction=False)
        for key in keys[i:i + 2000]:
            pipe.hgetall(key)
        out += [{_s(a): _s(b) for a, b in row.items() if _s(a) not in ("spec", "sched")}
                for row in await pipe.execute()]
    return out


async def _pending(engine: Engine, queues: list[str]) -> dict[str, str]:
    """Pending entry id -> queue stream, over every shard's queue streams."""
    out: dict[str, str] = {}
    for k in engine.core.shard_keys:
        for q in queues:
            stream = k.queue(q)
            try:
                rows = await engine.core.redis.xpending_range(stream, WORKER_GROUP, "-", "+",
                                                              100_000)
            except ResponseError as exc:  # no worker ever read this queue: nothing pending
                if "NOGROUP" not in str(exc):
                    raise
                continue
            for p in rows:
                out[_s(p["message_id"])] = stream
    return out


async def collect(engine: Engine, job_ids: list[str]) -> Summary:
    """Jobs and every run they made (run ids are <job>:1..<job>:runs)."""
    jobs = await _hashes(engine.core.redis, [engine.keys_for(j).job(j) for j in job_ids])
    run_ids = [f"{j}:{n}" for j, h in zip(job_ids, jobs, strict=True)
               for n in range(1, int(h.get("runs", 0)) + 1)]
    rows = await _hashes(engine.core.redis, [engine.keys_for(r.rsplit(":", 1)[0]).run(r)
                                        for r in run_ids])
    runs: dict[str, dict[str, str]] = {}
    fires: dict[tuple[str, int], set[str]] = defaultdict(set)
    for rid, row in zip(run_ids, rows, strict=True):
        assert row, f"run {rid} has no state (expired or never written)"
        runs[rid] = row
        fires[(row["job"], int(float(row["slot"])))].add(rid)
    states = {j: h.get("state", "") for j, h in zip(job_ids, jobs, strict=True)}
    return Summary(runs, fires, states)


async def check(engine: Engine, queues: list[str], job_ids: list[str], *,
                settled: bool = True, events_complete: bool = True) -> Summary:
    """Assert the invariants; ``settled``: nothing is in flight any more, so every run
    must be terminal and nothing pending; ``events_complete``: the events streams were
    never capped, so they must agree with the run hashes one to one."""
    s = await collect(engine, job_ids)
    twice = doubled(s.fires)
    assert not twice, f"{len(twice)} slot(s) fired twice, e.g. {list(twice.items())[:3]}"
    if settled:
        open_runs = {r: h["st"] for r, h in s.runs.items() if h["st"] not in _ENDED}
        assert not open_runs, f"{len(open_runs)} run(s) not terminal: {list(open_runs.items())[:5]}"
    await _check_pending(engine, queues, s, settled)
    await _check_due(engine, s)
    await _check_dead(engine, s)
    if events_complete:
        await _check_events(engine, s)
    return s


async def _check_pending(engine: Engine, queues: list[str], s: Summary, settled: bool) -> None:
    pending = await _pending(engine, queues)
    if settled:
        assert not pending, f"{len(pending)} entries still pending: {list(pending)[:5]}"
    current = {h.get("entry"): rid for rid, h in s.runs.items()}
    for eid in pending:
        rid = current.get(eid)
        assert rid is not None, f"pending entry {eid} belongs to no run's current attempt"
        st = s.runs[rid]["st"]
        assert st not in _ENDED, f"run {rid} is {st} but its entry {eid} is still pending"


async def _check_due(engine: Engine, s: Summary) -> None:
    retry_members: set[str] = set()
    for k in engine.core.shard_keys:
        for m in await engine.core.redis.zrange(k.due, 0, -1):
            member = _s(m)
            if member.startswith(RETRY_PREFIX):
                rid = member[len(RETRY_PREFIX):]
                retry_members.add(rid)
                st = s.runs.get(rid, {}).get("st")
                assert st == RunStatus.RETRYING, f"retry member {member} but run is {st}"
            elif member in s.jobs:
                assert s.jobs[member] == "active", \
                    f"job {member} is {s.jobs[member]} but still in the due index"
    retrying = {r for r, h in s.runs.items() if h["st"] == RunStatus.RETRYING}
    assert retrying <= retry_members, \
        f"retrying runs without a due entry: {retrying - retry_members}"


async def _check_dead(engine: Engine, s: Summary) -> None:
    seen: Counter[str] = Counter()
    for k in engine.core.shard_keys:
        for _, f in await read_stream(engine.core.redis, k.dead):
            seen[f["r"]] += 1
    twice = [r for r, n in seen.items() if n > 1]
    assert not twice, f"dead-lettered more than once: {twice[:5]}"
    for rid in seen:
        if rid in s.runs:
            st = s.runs[rid]["st"]
            assert st in ("dead", "failed", "timed_out"), f"dead letter for {rid} which is {st}"


async def _check_events(engine: Engine, s: Summary) -> None:
    ends: dict[str, list[str]] = defaultdict(list)
    for k in engine.core.shard_keys:
        for _, f in await read_stream(engine.core.redis, k.events):
            if f.get("k") == "run" and f.get("st") in _ENDED:
                ends[f["r"]].append(f["st"])
    for rid, h in s.runs.items():
        got = ends.get(rid, [])
        if h["st"] in _ENDED:
            assert got == [h["st"]], f"run {rid} is {h['st']} but its terminal events are {got}"
        else:
            assert not got, f"run {rid} is {h['st']} but has terminal events {got}"
    ev_fires = await fires_from_events(engine)
    hash_fires = {key: runs for key, runs in s.fires.items()}
    missing = {key for key in hash_fires if key[0] in s.jobs and key not in ev_fires}
    assert not missing, f"fires without a queued event: {sorted(missing)[:5]}"
    twice = doubled(ev_fires)
    assert not twice, f"events show slots fired twice: {list(twice.items())[:3]}"


async def created_ms(engine: Engine, job_ids: list[str]) -> dict[str, int]:
    """When each job was created (Redis time), as recorded in its hash."""
    pipe = engine.core.redis.pipeline(transaction=False)
    for j in job_ids:
        pipe.hget(engine.keys_for(j).job(j), "created")
    return {j: int(v) for j, v in zip(job_ids, await pipe.execute(), strict=True)}


def expected_slots(schedule: Any, scheduled_at_ms: int, until_ms: int) -> list[int]:
    """Every slot a schedule has from its creation up to ``until_ms`` (inclusive): what a
    correct scheduler fires for a ``catch_up`` job missing fewer than catch_up_max slots
    at a time (or any job whose slots each fire on time)."""
    from rsched.timing import first_fire, next_fire

    out: list[int] = []
    nxt = first_fire(schedule, scheduled_at_ms)
    while nxt is not None and nxt <= until_ms:
        out.append(nxt)
        nxt = next_fire(schedule, nxt)
    return out
