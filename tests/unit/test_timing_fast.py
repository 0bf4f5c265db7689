"""The fast next-fire path (zone tables, the time-set matcher, the memos) against the
reference path (croniter and datetime walks only), across DST transitions."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from rsched import crontime
from rsched.models import Cron, Every, Misfire, Trigger
from rsched.timing import (
    NEXT_MEMO_SIZE,
    DecisionMemo,
    _cron_next,
    _cron_next_memo,
    decide,
    next_fire,
    parse_cron,
)

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
# elapsed-time and wall-clock crons, second- to day-level, Vixie day rules, L and #
EXPRS = ["*/1 * * * * *", "*/7 * * * * *", "15,45 * * * * *", "*/20 1-3 * * *",
         "0 * * * *", "*/15 * * * *", "30 2 * * *", "0 0,30 2 * * *", "15 45 1 * * *",
         "0 0 2-3 * * *", "0 12 */2 * mon", "0 12 13 * mon", "0 3 L * *", "0 2 * * sun#1",
         "30 1 * * 1-5"]
HOUR = 3_600_000


def changes(zone: str, years: range) -> list[int]:
    """Offset-change instants (ms) of those years, found hour by hour."""
    tz = ZoneInfo(zone)
    lo = int(datetime(years.start, 1, 1, tzinfo=UTC).timestamp())
    hi = int(datetime(years.stop, 1, 1, tzinfo=UTC).timestamp())
    return [s * 1000 for s in range(lo, hi, 900)
            if datetime.fromtimestamp(s, tz).utcoffset()
            != datetime.fromtimestamp(s + 900, tz).utcoffset()]


def afters(rng: random.Random, change: int, expr: str) -> list[int]:
    """Instants to ask from: steps through the change (short ones for crons with a
    seconds field), plus random instants, whole seconds and not, within a day of it."""
    by_second = parse_cron(expr, "UTC").expr.split()[0] != "0"
    span, steps = (HOUR // 3, (1, 999, 1000, 7_000, 60_000)) if by_second else \
        (30 * HOUR, (1000, 60_000, HOUR // 4, HOUR))
    out: list[int] = []
    at = change - span
    while at < change + span and len(out) < 400:
        out.append(at)
        at += rng.choice(steps)
    out += [change + rng.randrange(-26 * HOUR, 26 * HOUR) for _ in range(60)]
    out += [change + d for d in (-1, 0, 1, -1000, 1000)]
    return out


@pytest.mark.parametrize("zone", ZONES)
def test_memoised_fast_next_fire_equals_the_reference_across_transitions(zone: str) -> None:
    rng = random.Random(zone)
    for change in changes(zone, range(2025, 2027)):
        for expr in EXPRS:
            rule, sched = parse_cron(expr, zone), Cron(expr=expr, tz=zone)
            for after in afters(rng, change, expr):
                want = _cron_next(rule, after, fast=False)
                assert next_fire(sched, after) == want, (zone, expr, after)
                assert next_fire(sched, after) == want, (zone, expr, after)  # memo hit
                # and the slot walk the scheduler makes: from each fire to the next
                if want is not None and rng.random() < 0.2:
                    assert next_fire(sched, want) == _cron_next(rule, want, fast=False)


@pytest.mark.parametrize("expr", EXPRS + ["0 0 29 2 *", "59 59 23 31 12 *", "0 0 0 1 1 *"])
def test_time_set_matcher_equals_croniter(expr: str) -> None:
    rule = parse_cron(expr, "UTC")
    rng = random.Random(expr)
    for _ in range(400):
        local = rng.randrange(-10 * 365, 60 * 365) * crontime.DAY_MS + rng.choice(
            (0, -1, 1, -1000, rng.randrange(crontime.DAY_MS)))
        assert crontime.match_after(rule.iter, rule.sets, local) == \
            crontime.croniter_after(rule.iter, local), (expr, local)


def test_next_fire_memo_is_bounded() -> None:
    sched = Cron(expr="*/1 * * * * *", tz="Europe/Berlin")
    start = int(datetime(2026, 3, 29, tzinfo=UTC).timestamp() * 1000)
    for i in range(NEXT_MEMO_SIZE + 500):
        assert next_fire(sched, start + i * 1000) == start + (i + 1) * 1000
    info = _cron_next_memo.cache_info()
    assert info.maxsize == NEXT_MEMO_SIZE and info.currsize <= NEXT_MEMO_SIZE
    rule = parse_cron("0 0 12 * * *", "UTC")
    assert rule.sets is not None
    for day in range(10_000):
        crontime.match_after(rule.iter, rule.sets, day * crontime.DAY_MS)
    assert len(rule.sets.days) <= 4096


@pytest.mark.parametrize("zone", ZONES)
def test_decision_memo_answers_what_decide_answers(zone: str) -> None:
    rng = random.Random(zone)
    memo = DecisionMemo(size=64)
    triggers = [Trigger(schedule=Cron(expr=e, tz=zone), misfire=m, grace_s=g, catch_up_max=5)
                for e in ("*/1 * * * * *", "*/20 1-3 * * *", "30 2 * * *")
                for m in Misfire for g in (0, 2.5, 60)]
    triggers.append(Trigger(schedule=Every(every_ms=1500)))
    blobs = {t: f"{i}".encode() for i, t in enumerate(triggers)}
    hits = 0
    for change in changes(zone, range(2026, 2027)):
        for _ in range(600):
            t = rng.choice(triggers)
            slot = next_fire(t.schedule, change + rng.randrange(-3 * HOUR, 3 * HOUR))
            assert slot is not None
            key = (blobs[t], str(slot))
            lates = (0, 1, 999, 1000, 2000, 2500, 2501, 61_000, 125_000, 1_200_000)
            for now in sorted(slot + rng.choice(lates) for _ in range(3)):
                want = decide(t, slot, now)
                got = memo.get(key, now)
                if got is None:
                    memo.put(key, t, slot, now, want)
                else:
                    hits += 1
                    assert got == want, (t, slot, now)
                assert len(memo) <= 64
    assert hits > 500  # the memo was used, not just filled
