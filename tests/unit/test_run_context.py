"""Which parameter of a task takes the RunContext (found once, at registration)."""

from __future__ import annotations

from typing import Any

from rsched.tasks import RunContext, TaskRegistry, context_arg


def test_a_parameter_annotated_run_context_is_found_by_annotation_not_name() -> None:
    def plain(a: int, context: dict[str, Any]) -> None: ...
    async def asks(a: int, *, job: RunContext) -> None: ...
    def quoted(ctx: "RunContext") -> None: ...  # noqa: UP037
    def unresolvable(x: "NoSuchType", c: "rsched.tasks.RunContext") -> None: ...  # type: ignore[name-defined]  # noqa: F821, UP037

    assert context_arg(plain) is None
    assert context_arg(asks) == "job"
    assert context_arg(quoted) == "ctx"
    assert context_arg(unresolvable) == "c"


def test_the_registry_records_it_per_task() -> None:
    reg = TaskRegistry()

    @reg.task(name="with")
    def with_ctx(n: int, run: RunContext) -> None: ...

    @reg.task(name="without")
    async def without(n: int) -> None: ...

    asking, other = reg.get("with"), reg.get("without")
    assert asking is not None and asking.context_arg == "run"
    assert other is not None and other.context_arg is None
