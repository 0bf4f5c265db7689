"""The job options of `rsched jobs add` and `jobs update`, and the JobDef they build.

Owns: the option table (declared once, added to both commands' signatures), and turning
the options given into changes of a JobDef section by section: schedule, task, retry,
policy, metadata. Options not given leave the base definition alone, so `update` changes
only what is named. Must not: talk to Redis (the commands pass the result to the Client).

Extension point: a new task kind (HTTP, shell) adds its options to OPTIONS and one
section function to SECTIONS that maps them onto the JobDef fields of that kind.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
import typer

from rsched.cli import parse
from rsched.errors import ValidationError
from rsched.models import (
    At,
    Cron,
    Every,
    HookOn,
    Immediate,
    JobDef,
    Misfire,
    Overlap,
    Schedule,
    Webhook,
)

_S, _T, _R, _P, _M = "Schedule", "Task", "Retry", "Policy", "Metadata"
_C, _W = "Execution controls", "Completion webhook"
# name -> (type, help, panel); every option defaults to None ("not given"), a flag to False
OPTIONS: dict[str, tuple[Any, str, str]] = {
    "cron": (str | None, "cron expression, 5 fields or 6 with seconds first", _S),
    "tz": (str | None, "IANA time zone of --cron (default UTC)", _S),
    "every": (str | None, "interval: 30s, 5m, 1h30m", _S),
    "start": (str | None, "first slot of --every (ISO 8601)", _S),
    "end": (str | None, "no slots after this (ISO 8601), --every or --cron", _S),
    "at": (str | None, "run once at this instant (ISO 8601)", _S),
    "now": (bool, "run once, at once", _S),
    "args": (str | None, "positional arguments, a JSON list", _T),
    "kwargs": (str | None, "keyword arguments, a JSON object", _T),
    "queue": (str | None, "queue (default: default)", _T),
    "timeout": (str | None, "per attempt: 5m, or 'none' (default 5m)", _T),
    "max_attempts": (int | None, "attempts before dead-lettering (default 3)", _R),
    "backoff": (str | None, "first retry delay (default 1s)", _R),
    "backoff_factor": (float | None, "delay multiplier per attempt (default 2)", _R),
    "backoff_max": (str | None, "longest retry delay (default 5m)", _R),
    "jitter": (float | None, "+- fraction of each delay (default 0.2)", _R),
    "misfire": (Misfire | None, "missed slots: fire_once, skip, catch_up", _P),
    "grace": (str | None, "a slot this late is still on time (default 1m)", _P),
    "catch_up_max": (int | None, "catch_up fires at most this many missed slots", _P),
    "overlap": (Overlap | None, "allow, or forbid (skip a slot while a run is unfinished)", _P),
    "name": (str | None, "unique name in the tenant (apply/export match on it)", _M),
    "label": (list[str] | None, "key=value (repeat); with update, key- removes", _M),
    "fire_jitter": (str | None, "fire each slot up to this much late, stable per slot: 2m"
                    " (--jitter is the retry delays')", _C),
    "max_runs": (int | None, "the job is done after this many runs; 0 removes", _C),
    "concurrency": (int | None, "runs of the job at once, at most; 0 removes", _C),
    "unique_key": (str | None, "add: a key the tenant already holds returns that job", _C),
    "webhook": (str | None, "POST JSON here when a run ends (http/https); 'none' removes",
                _W),
    "webhook_on": (HookOn | None, "success, failure or always (default)", _W),
    "webhook_secret": (str | None, "the workers' environment variable holding the HMAC"
                       " key (X-Rsched-Signature)", _W),
}


def job_options(fn: Callable[..., None]) -> Callable[..., None]:
    """Add OPTIONS to a command; it receives them as one dict ``opts``."""
    own = [p for p in inspect.signature(fn, eval_str=True).parameters.values()
           if p.name != "opts"]
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=False if t is bool
                               else None,
                               annotation=Annotated[t, typer.Option(help=h, rich_help_panel=p)])
             for n, (t, h, p) in OPTIONS.items()]

    @functools.wraps(fn)
    def command(**kw: Any) -> None:
        fn(opts={n: kw.pop(n) for n in OPTIONS}, **kw)

    params = sorted(own + extra, key=lambda p: p.kind != inspect.Parameter.POSITIONAL_OR_KEYWORD)
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    del command.__wrapped__  # typer must read the new signature, not fn's
    return command


def build(base: JobDef, opts: dict[str, Any]) -> JobDef:
    """``base`` with the given options applied (bad values raise ValidationError)."""
    changes: dict[str, Any] = {}
    for section in SECTIONS:
        changes.update(section(base, opts))
    return msgspec.structs.replace(base, **changes)


def _schedule(base: JobDef, o: dict[str, Any]) -> dict[str, Any]:
    kinds = [k for k in ("cron", "every", "at", "now") if o[k]]
    if len(kinds) > 1:
        raise ValidationError(f"give one schedule, not {' and '.join('--' + k for k in kinds)}")
    cur = base.schedule
    kind = kinds[0] if kinds else type(cur).__name__.lower().replace("immediate", "now")
    end = parse.instant_ms(o["end"], "--end") if o["end"] else getattr(cur, "end_ms", None)
    if o["tz"] and kind != "cron":
        raise ValidationError("--tz applies to a --cron schedule")
    if o["start"] and kind != "every":
        raise ValidationError("--start applies to an --every schedule")
    if o["end"] and kind not in ("cron", "every"):
        raise ValidationError("--end applies to a --cron or --every schedule")
    sched: Schedule
    if kind == "cron":
        expr = o["cron"] or (cur.expr if isinstance(cur, Cron) else "")
        tz = o["tz"] or (cur.tz if isinstance(cur, Cron) else "UTC")
        sched = Cron(expr=expr, tz=tz, end_ms=end)
    elif kind == "every":
        start = parse.instant_ms(o["start"], "--start") if o["start"] else (
            cur.start_ms if isinstance(cur, Every) else None)
        sched = Every(every_ms=parse.every_ms(o["every"]) if o["every"] else
                      cur.every_ms if isinstance(cur, Every) else 0, start_ms=start, end_ms=end)
    elif kind == "at":
        sched = At(at_ms=parse.instant_ms(o["at"], "--at")) if o["at"] else cur
    else:
        sched = Immediate()
    return {"schedule": sched} if sched != cur else {}


def _task(base: JobDef, o: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if o["args"] is not None:
        out["args"] = parse.json_value(o["args"], "--args", list)
    if o["kwargs"] is not None:
        out["kwargs"] = parse.json_value(o["kwargs"], "--kwargs", dict)
    if o["queue"] is not None:
        out["queue"] = o["queue"]
    if o["timeout"] is not None:
        t = o["timeout"]
        out["timeout_s"] = None if t.lower() == "none" else parse.duration_s(t, "--timeout")
    return out


def _retry(base: JobDef, o: dict[str, Any]) -> dict[str, Any]:
    given = {"max_attempts": o["max_attempts"], "backoff_factor": o["backoff_factor"],
             "jitter": o["jitter"]}
    for opt, field in (("backoff", "backoff_s"), ("backoff_max", "backoff_max_s")):
        if o[opt] is not None:
            given[field] = parse.duration_s(o[opt], "--" + opt.replace("_", "-"))
    given = {k: v for k, v in given.items() if v is not None}
    return {"retry": msgspec.structs.replace(base.retry, **given)} if given else {}


def _policy(base: JobDef, o: dict[str, Any]) -> dict[str, Any]:
    out = {k: o[k] for k in ("misfire", "catch_up_max", "overlap") if o[k] is not None}
    if o["grace"] is not None:
        out["grace_s"] = parse.duration_s(o["grace"], "--grace")
    return out


def _metadata(base: JobDef, o: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if o["name"] is not None:
        out["name"] = o["name"] or None
    if o["label"]:
        labels = dict(base.labels)
        for item in o["label"]:
            if "=" not in item and item.endswith("-"):
                labels.pop(item[:-1], None)
        labels.update(parse.labels([i for i in o["label"] if "=" in i or not i.endswith("-")]))
        out["labels"] = labels
    return out


def _controls(base: JobDef, o: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if o["fire_jitter"] is not None:
        out["jitter_s"] = parse.duration_s(o["fire_jitter"], "--fire-jitter")
    for k in ("max_runs", "concurrency"):
        if o[k] is not None:
            out[k] = o[k] or None  # 0: no limit
    if o["unique_key"] is not None:
        out["unique_key"] = o["unique_key"]
    return out


def _webhook(base: JobDef, o: dict[str, Any]) -> dict[str, Any]:
    url, on, secret = o["webhook"], o["webhook_on"], o["webhook_secret"]
    if url is None and on is None and secret is None:
        return {}
    if url is not None and url.lower() == "none":
        return {"webhook": None}
    cur = base.webhook
    if url is None and cur is None:
        raise ValidationError("--webhook-on and --webhook-secret need --webhook <url>")
    return {"webhook": Webhook(
        url=url or (cur.url if cur else ""), on=on or (cur.on if cur else HookOn.ALWAYS),
        secret=(secret or None) if secret is not None else (cur.secret if cur else None))}


SECTIONS: tuple[Callable[[JobDef, dict[str, Any]], dict[str, Any]], ...] = (
    _schedule, _task, _retry, _policy, _metadata, _controls, _webhook)
