"""Encoders and decoders for stored blobs, created once.

Owns: the msgpack wire form of JobSpec and Trigger, and the capped JSON form of a run's
result. Must not: know about Redis.
Lua never decodes these blobs; fields scripts need are separate hash fields.
"""

from __future__ import annotations

from typing import Any

import msgspec

from rsched.errors import SerializationError
from rsched.models import JobSpec, Trigger

_enc = msgspec.msgpack.Encoder()
_spec = msgspec.msgpack.Decoder(JobSpec)
_trigger = msgspec.msgpack.Decoder(Trigger)
_json = msgspec.json.Encoder()
_result_json = msgspec.json.Encoder(enc_hook=repr)  # what JSON lacks is shown as its repr
RESULT_MAX_BYTES = 64 * 1024  # a run's recorded result (docs/tasks.md, "Results")


def encode(obj: Any) -> bytes:
    try:
        return _enc.encode(obj)
    except (TypeError, OverflowError, msgspec.EncodeError) as exc:
        raise SerializationError(f"cannot encode {type(obj).__name__}: {exc}") from exc


def decode_spec(blob: bytes) -> JobSpec:
    try:
        return _spec.decode(blob)
    except msgspec.DecodeError as exc:
        raise SerializationError(f"corrupt job spec: {exc}") from exc


def decode_trigger(blob: bytes) -> Trigger:
    try:
        return _trigger.decode(blob)
    except msgspec.DecodeError as exc:
        raise SerializationError(f"corrupt trigger: {exc}") from exc



def encode_result(value: Any, limit: int = RESULT_MAX_BYTES) -> str:
    """A task's return value as the JSON text recorded on its run ("" for None). Past
    ``limit`` bytes it is replaced by {"truncated": true, "bytes": n, "head": "<first
    part of the JSON text>"}, so a recorded result is always valid JSON."""
    if value is None:
        return ""
    try:
        text = _result_json.encode(value).decode()
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        text = _result_json.encode(repr(value)).decode()
    size = len(text.encode())
    if size <= limit:
        return text
    head = text.encode()[:max(0, limit - 200)].decode(errors="ignore")
    return _json.encode({"truncated": True, "bytes": size, "head": head}).decode()


def decode_result(text: str) -> Any:
    """A recorded result; text written before results were JSON is returned as is."""
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text
