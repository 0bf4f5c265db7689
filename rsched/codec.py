"""Encoders and decoders for stored blobs, created once.

Owns: the msgpack wire form of JobSpec and Trigger. Must not: know about Redis.
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

