"""Every Lua script's header is a complete contract, and every engine call stays in one slot."""

from __future__ import annotations

import re
from typing import Any

import pytest
from redis.crc import key_slot

from rsched.engine.keys import ShardKeys
from rsched.engine.scripts import load_all, parse
from rsched.errors import ScriptError

SCRIPTS = load_all()


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_header_declares_exactly_what_the_body_uses(name: str) -> None:
    script = SCRIPTS[name]
    body = "\n".join(line for line in script.source.splitlines() if not line.startswith("--"))
    used_keys = {int(n) for n in re.findall(r"KEYS\[(\d+)\]", body)}
    used_args = {int(n) for n in re.findall(r"ARGV\[(\d+)\]", body)}
    assert used_keys == set(range(1, len(script.keys) + 1)), "KEYS used != declared"
    fixed = set(range(1, len(script.args) + 1))
    assert fixed <= used_args, f"declared but unused ARGV: {fixed - used_args}"
    if script.variadic is None:
        assert used_args == fixed, f"undeclared ARGV used: {used_args - fixed}"
    else:  # the variadic tail is read through a loop starting at the next index
        assert re.search(rf"for i = {len(script.args) + 1}, #ARGV", body)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_header_names_the_return(name: str) -> None:
    assert "-- Returns:" in SCRIPTS[name].source


def test_parse_rejects_gaps() -> None:
    with pytest.raises(ScriptError, match="not contiguous"):
        parse("bad", "-- KEYS[1] a  ZSET\n-- KEYS[3] c  ZSET\nreturn 0\n")


def test_order_raises_on_missing_or_extra_names_before_any_round_trip() -> None:
    s = SCRIPTS["pause_job"]
    keys = {"due": "a", "events": "b"}
    args: dict[str, Any] = {"now_ms": 1, "job_prefix": "p", "job_id": "j", "maxlen": 5,
                            "until_ms": -1, "wake": "w", "shard": 3}
    assert s.order(keys, args) == ["a", "b", 1, "p", "j", 5, -1, "w", 3]
    with pytest.raises(ScriptError, match="args"):
        s.order(keys, {**args, "extra": 1})
    with pytest.raises(ScriptError, match="keys"):
        s.order({"due": "a"}, args)


@pytest.mark.parametrize("shard", [0, 7, 15, 123])
def test_all_keys_of_a_shard_share_one_cluster_slot(shard: int) -> None:
    k = ShardKeys("rsched", shard)
    names = [k.due, k.jobs, k.events, k.dead, k.lease, k.fence, k.job("abc"), k.run("abc:1"),
             k.queue("emails")]
    assert len({key_slot(n.encode()) for n in names}) == 1
    assert all(f"{{s{shard:02d}}}" in n for n in names)


def test_schedule_job_items_have_the_headers_group_size() -> None:
    from rsched.engine.jobs import ITEM_ARGS, Jobs
    from rsched.models import JobDef, Webhook

    source = SCRIPTS["schedule_job"].source
    [size] = re.findall(r"flat groups of (\d+) per job", source)
    assert re.search(rf"for i = \d+, #ARGV, {size} do", source)
    full = JobDef(task="t", name="n", labels={"a": "b"}, unique_key="u",
                  webhook=Webhook(url="https://example.com/h"))
    jobs = object.__new__(Jobs)  # _item needs no Redis: only its trigger cache
    jobs._triggers = {}
    for d in (JobDef(task="t"), full):
        item = jobs._item("j1", d, 1000, 0)
        assert len(item) == ITEM_ARGS == int(size)
