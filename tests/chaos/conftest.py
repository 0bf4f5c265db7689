"""Fixtures of the chaos suite: role subprocesses reaped after each test, marker dirs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import Roles


@pytest.fixture
def roles(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Roles]:
    """Starts `rsched` role subprocesses on this test's prefix (4 shards)."""
    r = Roles(redis_url, prefix, 4, tmp_path)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def marker_dir(tmp_path: Path) -> str:
    d = tmp_path / "markers"
    d.mkdir()
    return str(d)
