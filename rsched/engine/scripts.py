"""Loads the Lua scripts shipped in ``lua/`` and calls them by name with named arguments.

Owns: header parsing, SCRIPT LOAD with SHA check, EVALSHA with one reload on NOSCRIPT.
Must not: build key names or interpret return values (the engine parts do).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from rsched.errors import ScriptError

_HEADER = re.compile(r"^--\s+(KEYS|ARGV)\[(\d+)(\.\.\.)?\]\s+(\w+)")

Arg = str | bytes | int | float


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str
    keys: tuple[str, ...]
    args: tuple[str, ...]
    variadic: str | None  # name of the flat tail of ARGV, if any

    @cached_property
    def _key_names(self) -> frozenset[str]:
        return frozenset(self.keys)

    @cached_property
    def _arg_names(self) -> frozenset[str]:
        return frozenset(self.args) | ({self.variadic} if self.variadic else frozenset())

    def order(self, keys: Mapping[str, str], args: Mapping[str, Any]) -> list[Arg]:
        """KEYS then ARGV in header order; raises before any round trip on a bad name.
        (Called once per script call, thousands of times a second: the name checks
        compare key views with precomputed sets instead of building sets.)"""
        if keys.keys() != self._key_names:
            raise ScriptError(f"{self.name}: keys {sorted(keys)} != header {list(self.keys)}",
                              script=self.name)
        if args.keys() != self._arg_names:
            raise ScriptError(f"{self.name}: args {sorted(args)} != header "
                              f"{sorted(self._arg_names)}", script=self.name)
        out: list[Arg] = [keys[k] for k in self.keys]
        out += [args[a] for a in self.args]
        if self.variadic:
            out += args[self.variadic]
        return out


def parse(name: str, source: str) -> Script:
    keys: dict[int, str] = {}
    args: dict[int, str] = {}
    variadic: str | None = None
    for line in source.splitlines():
        if not line.startswith("--"):
            break
        m = _HEADER.match(line)
        if not m:
            continue
        kind, idx, dots, ident = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        if dots:
            variadic = ident
            if idx != len(args) + 1:
                raise ScriptError(f"{name}: variadic ARGV[{idx}...] must follow the others",
                                  script=name)
        else:
            (keys if kind == "KEYS" else args)[idx] = ident
    for table, label in ((keys, "KEYS"), (args, "ARGV")):
        if sorted(table) != list(range(1, len(table) + 1)):
            raise ScriptError(f"{name}: {label} indices not contiguous", script=name)
    sha = hashlib.sha1(source.encode()).hexdigest()
    return Script(name, source, sha, tuple(keys[i] for i in sorted(keys)),
                  tuple(args[i] for i in sorted(args)), variadic)


def load_all() -> dict[str, Script]:
    out: dict[str, Script] = {}
    for entry in resources.files("rsched.lua").iterdir():
        if entry.name.endswith(".lua"):
            name = entry.name.removesuffix(".lua")
            out[name] = parse(name, entry.read_text())
    return out


class Scripts:
    """The script set of one process; ``load`` before pipelines."""

    def __init__(self) -> None:
        self.by_name = load_all()

    def __getitem__(self, name: str) -> Script:
        return self.by_name[name]

    async def load(self, redis: Any) -> None:
        for script in self.by_name.values():
            sha = await redis.script_load(script.source)
            if sha != script.sha:
                raise ScriptError(f"{script.name}: server SHA {sha} != {script.sha}",
                                  script=script.name)

    async def call(self, redis: Any, name: str, keys: Mapping[str, str],
                   args: Mapping[str, Any]) -> Any:
        script = self.by_name[name]
        flat = script.order(keys, args)
        try:
            return await redis.evalsha(script.sha, len(script.keys), *flat)
        except NoScriptError:
            await self.load(redis)
            return await redis.evalsha(script.sha, len(script.keys), *flat)

    def queue(self, pipe: Any, name: str, keys: Mapping[str, str],
              args: Mapping[str, Any]) -> None:
        """Add a call to a pipeline; the caller runs it through ``execute``."""
        script = self.by_name[name]
        pipe.evalsha(script.sha, len(script.keys), *script.order(keys, args))

    async def execute(self, redis: Any, build: Any) -> Sequence[Any]:
        """Run a pipeline built by ``build(pipe)``; reload and rebuild once on NOSCRIPT."""
        for attempt in (0, 1):
            pipe = redis.pipeline(transaction=False)
            build(pipe)
            try:
                return list(await pipe.execute())
            except NoScriptError:
                if attempt:
                    raise
                await self.load(redis)
        raise AssertionError("unreachable")

