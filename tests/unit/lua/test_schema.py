"""Every field a Lua script writes or reads is declared in rsched/engine/schema.py.

The parser reads each script's calls: HSET/HSETNX/HINCRBY/HGET/HMGET/HDEL field
arguments, XADD field/value pairs, the scripts' local ``event(...)`` helpers (field/value
pairs), field lists built as tables (``{'runs', n, 'cur', id}``) and stream-entry reads
(``f.r`` after XAUTOCLAIM). Only literal names are checked; a name built at run time
would escape it, and no script builds one.
"""

from __future__ import annotations

import re
from importlib import resources

import pytest

from rsched.engine import schema

HASH_FIELDS = {"HSET": 2, "HSETNX": 2, "HINCRBY": 2, "HGET": 1, "HMGET": 1, "HDEL": 1}
_LITERAL = re.compile(r"^'([^']*)'$")


def _scripts() -> dict[str, str]:
    return {e.name: e.read_text() for e in resources.files("rsched.lua").iterdir()
            if e.name.endswith(".lua")}


def _code(source: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in source.splitlines())


def _args(code: str, start: int) -> list[str]:
    """Top-level comma-separated arguments of the call whose '(' is at ``start``."""
    depth, out, cur, quote = 0, [], [], ""
    for ch in code[start:]:
        if quote or ch in "'\"":  # inside a string: no brackets, no commas
            quote = "" if ch == quote else quote or ch
            cur.append(ch)
            continue
        if ch in "({":
            depth += 1
            if depth == 1:
                continue
        elif ch in ")}":
            depth -= 1
            if depth == 0:
                out.append("".join(cur).strip())
                return out
        if ch == "," and depth == 1:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    raise AssertionError("unbalanced call")


def _literal(arg: str) -> str | None:
    m = _LITERAL.match(arg)
    return m.group(1) if m else None


def _pairs(args: list[str]) -> list[str]:
    return [n for n in (_literal(a) for a in args[::2]) if n is not None]


def fields_used(source: str) -> set[str]:
    code = _code(source)
    names: set[str] = set()
    for m in re.finditer(r"redis\.call\(", code):
        args = _args(code, m.end() - 1)
        cmd = (_literal(args[0]) or "").upper()
        if cmd in HASH_FIELDS:
            step = HASH_FIELDS[cmd]
            names |= {n for n in (_literal(a) for a in args[2::step]) if n is not None}
        elif cmd == "XADD" and "'*'" in args:
            names |= set(_pairs(args[args.index("'*'") + 1:]))
    for m in re.finditer(r"(?<![\w.])event\(", code):
        names |= set(_pairs(_args(code, m.end() - 1)))
    for m in re.finditer(r"=\s*\{\s*'", code):  # field lists: {'name', value, ...}
        items = _args(code, code.index("{", m.start()))
        if len(items) % 2 == 0 and all(_literal(a) for a in items[::2]):
            names |= set(_pairs(items))
    names |= set(re.findall(r"\bf\.(\w+)", code))
    return names


# Scripts write only the current spelling; older spellings are declared for reading.
DECLARED = frozenset().union(*(frozenset(r.by_wire) for r in schema.RECORDS))
LEGACY = frozenset().union(*(frozenset(r.legacy) for r in schema.RECORDS))


@pytest.mark.parametrize("name", sorted(_scripts()))
def test_every_field_a_script_uses_is_declared(name: str) -> None:
    source = _scripts()[name]
    used = fields_used(source)
    written = used - set(re.findall(r"\bf\.(\w+)", _code(source)))
    assert not written & LEGACY - DECLARED, f"{name} writes an old spelling"
    undeclared = used - DECLARED - LEGACY
    assert not undeclared, f"{name} uses fields missing from engine/schema.py: {undeclared}"


def test_the_parser_finds_the_fields_of_real_scripts() -> None:
    assert {"st", "att", "slot", "spec", "r"} <= fields_used(_scripts()["fire_due.lua"])


def test_the_parser_sees_fields_in_every_form() -> None:
    src = """
    local f = {}
    redis.call('HSET', k, 'a1', 1, 'a2', x)  -- 'comment' not a field
    redis.call('HMGET', k, 'b1', 'b2')
    redis.call('XADD', s, 'MAXLEN', '~', m, '*', 'c1', v, 'c2', 'value')
    event('d1', 1, 'd2', y)
    local set = {'e1', n, 'e2', id}
    return f.g1
    """
    assert fields_used(src) == {"a1", "a2", "b1", "b2", "c1", "c2", "d1", "d2", "e1", "e2",
                                "g1"}


def test_each_stream_spells_a_meaning_once() -> None:
    streams = (schema.QUEUE_ENTRY, schema.EVENT, schema.DEAD_LETTER)
    spelling: dict[str, str] = {}
    for record in streams:
        for f in record.fields:
            assert spelling.setdefault(f.name, f.wire) == f.wire, (
                f"{f.name} is {spelling[f.name]!r} in one stream, {f.wire!r} in {record.where}")
