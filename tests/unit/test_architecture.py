"""The layout's rules, checked on the source: who may talk to Redis and PostgreSQL, and
which way dependencies point (docs/architecture.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rsched"


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_only_the_engine_talks_to_redis(path: Path) -> None:
    if path.is_relative_to(PACKAGE / "engine"):
        return
    # redis.exceptions pass through the engine on purpose (roles back off on them)
    bad = {m for m in _imports(path) if (m == "redis" or m.startswith(("redis.", "hiredis")))
           and not m.startswith("redis.exceptions")}
    bad |= {m for m in _imports(path) if m.startswith(("rsched.engine.keys",
                                                        "rsched.engine.scripts",
                                                        "rsched.engine.fastredis",
                                                        "rsched.engine.connection"))}
    assert not bad, f"{_rel(path)} reaches past the engine: {sorted(bad)}"
    assert ".core.redis" not in path.read_text(), f"{_rel(path)} touches engine.core.redis"


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_only_the_archive_talks_to_postgresql(path: Path) -> None:
    if path.is_relative_to(PACKAGE / "archive") or path.name == "devservers.py" \
            or path.is_relative_to(PACKAGE / "cli"):
        return  # cli passes connections to the archive's functions; devservers runs initdb
    bad = {m for m in _imports(path) if m == "psycopg" or m.startswith("psycopg")}
    assert not bad, f"{_rel(path)} talks to PostgreSQL: {sorted(bad)}"


def _layer(module: str) -> int:
    parts = module.split(".")
    if parts[0] == "api":
        return 4
    if parts[0] != "rsched" or len(parts) < 2:
        return -1
    if parts[1] in {"engine", "archive"}:
        return 1
    if parts[1] == "roles":
        return 3 if parts[2:3] == ["runner"] else 2  # the runner wires roles for the cli
    if parts[1] in {"client", "claims", "cli", "devservers", "examples"}:
        return 3
    return 0  # models, errors, settings, codec, timing, names, clock, tasks, log


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_dependencies_point_one_way(path: Path) -> None:
    own = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    mine = _layer(own)
    for m in _imports(path):
        theirs = _layer(m)
        assert theirs <= mine or (mine == 1 and theirs == 1), (
            f"{own} (layer {mine}) imports {m} (layer {theirs})")


def test_roles_do_not_import_each_other() -> None:
    roles = {"scheduler", "worker"}
    for name in roles:
        imports = _imports(PACKAGE / "roles" / f"{name}.py")
        for other in roles - {name}:
            assert not any(m.startswith(f"rsched.roles.{other}") for m in imports)


def test_script_results_are_compared_by_name_outside_the_engine() -> None:
    bare = re.compile(r"\b(code|codes|res|c)\s*(==|!=)\s*-?\d")
    offenders = [f"{_rel(p)}:{n}" for p in [*_modules(), *sorted((ROOT / "api").rglob("*.py"))]
                 if not p.is_relative_to(PACKAGE / "engine")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if bare.search(line)]
    assert not offenders, f"compare with rsched.errors.Code: {offenders}"


def test_lua_readme_lists_every_script_and_its_codes() -> None:
    readme = (ROOT / "lua" / "README.md").read_text()
    for script in sorted((ROOT / "lua").glob("*.lua")):
        assert f"| `{script.stem}` |" in readme, f"lua/README.md lacks {script.stem}"
