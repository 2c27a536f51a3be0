"""Recordings of the bus as MCAP files, readable by Foxglove and the `mcap` tools.

Every topic is a channel whose schema is the topic's JSON Schema from the
topic table (encoding ``jsonschema``, messages in JSON), so Foxglove shows
the fields by name. One channel per (topic, source): the channel's metadata
names the source. Each message also keeps the original header under
``_lens`` (source, incarnation, seq, mono_ns, wall_ns); MCAP's own sequence
and publish time carry seq and wall_ns. ``bytes`` fields are base64 (the
schema says so), and come back as bytes.

Camera frames are not descriptors of a shared memory that is gone at replay
time: with ``--include-capture`` every n-th one is stored as a JPEG on
``camera.image`` with Foxglove's ``foxglove.CompressedImage`` schema, and
photos on ``camera.photo``; without it, none (bustools.capture_content).

Reading never trusts the file: a truncated or corrupted file yields every
message before the damage and then says where it stopped (``Damage``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from bus.envelope import Message
from bus.topics import TOPICS, lookup

IMAGE_TOPIC = "camera.image"
PHOTO_TOPIC = "camera.photo"  # with --include-capture: a photo camerad wrote (bustools.capture_content)
_IMAGE_SCHEMA = {
    "title": "foxglove.CompressedImage", "type": "object",
    "properties": {
        "timestamp": {"type": "object", "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}}},
        "frame_id": {"type": "string"}, "format": {"type": "string"},
        "data": {"type": "string", "contentEncoding": "base64"},
    },
}
_HEADER_SCHEMA = {"type": "object", "properties": {
    "source": {"type": "string"}, "incarnation": {"type": "integer"}, "seq": {"type": "integer"},
    "mono_ns": {"type": "integer"}, "wall_ns": {"type": "integer"},
    "trace": {"type": "integer", "description": "the trace the message was a hop of (bus.tracing); absent: none"},
    "withheld": {"type": "object", "description": "capture content kept out: field -> bytes (bustools.capture_content)"}}}


class BagError(ValueError):
    """A recording that cannot be read at all (not MCAP, not a lensos recording)."""


class Recorded(Message):
    """A message as it was on the bus (its original header), and when the recorder received it."""

    __slots__ = ("log_ns", "withheld")

    def __init__(self, *fields, log_ns: int = 0, withheld: dict | None = None, **named):
        super().__init__(*fields, **named)
        self.log_ns = log_ns
        self.withheld = withheld  # capture content the recorder kept out: field -> bytes (bustools.capture_content)


@dataclass
class Damage:
    """Where reading stopped early, and why; everything before it was read."""
    messages_read: int
    why: str


def schema_for(topic: str) -> dict:
    if topic in (IMAGE_TOPIC, PHOTO_TOPIC):
        return _IMAGE_SCHEMA
    spec = lookup(topic)
    schema = dict(spec.schema.json_schema(), title=f"lensos.{topic}", description=spec.doc)
    schema["properties"] = dict(schema.get("properties", {}), _lens=_HEADER_SCHEMA)
    return schema


def _bytes_fields(topic: str) -> set[str]:
    spec = TOPICS.get(topic)
    return {f.name for f in spec.schema.fields if f.base == "bytes"} if spec else set()


def _tag_bytes(value):
    """bytes deeper than a declared field (a reply's result, a dict field): {"$bytes": base64}."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: _tag_bytes(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tag_bytes(v) for v in value]
    return value


def _untag_bytes(value):
    if isinstance(value, dict):
        if set(value) == {"$bytes"} and isinstance(value["$bytes"], str):
            return base64.b64decode(value["$bytes"])
        return {k: _untag_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untag_bytes(v) for v in value]
    return value


def encode(topic: str, payload: dict, header: dict) -> bytes:
    binary = _bytes_fields(topic)
    body = {k: (base64.b64encode(v).decode() if k in binary and isinstance(v, bytes) else _tag_bytes(v))
            for k, v in payload.items()}
    body["_lens"] = header
    return json.dumps(body, separators=(",", ":")).encode()


def decode(topic: str, data: bytes) -> tuple[dict, dict]:
    body = json.loads(data)
    header = body.pop("_lens", {})
    binary = _bytes_fields(topic)
    return {k: (base64.b64decode(v) if k in binary and isinstance(v, str) else _untag_bytes(v))
            for k, v in body.items()}, header


def iterate(path: str | Path) -> Iterator:
    """Recorded messages (camera.image too) and ("metadata", name, dict), streaming, then Damage if any."""
    from mcap.exceptions import McapError
    from mcap.records import Channel, Message, Metadata, Schema
    from mcap.stream_reader import StreamReader

    channels: dict[int, Channel] = {}
    count = 0
    try:
        with open(path, "rb") as stream:
            reader = StreamReader(stream, skip_magic=False, emit_chunks=False, validate_crcs=True)
            for record in reader.records:
                if isinstance(record, Schema):
                    continue
                if isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Metadata):
                    yield ("metadata", record.name, dict(record.metadata))
                elif isinstance(record, Message):
                    channel = channels.get(record.channel_id)
                    if channel is None:
                        raise McapError(f"message on unknown channel {record.channel_id}")
                    yield _recorded(channel, record)
                    count += 1
    except FileNotFoundError:
        raise BagError(f"{path}: no such file") from None
    except Exception as exc:  # any damage: truncation, bad CRC, garbage, a bad record length
        if count == 0 and not channels:
            raise BagError(f"{path}: not a readable MCAP recording ({type(exc).__name__}: {exc})") from None
        yield Damage(count, f"{type(exc).__name__}: {exc}".strip())


def _recorded(channel, record) -> Recorded:
    topic = channel.topic
    try:
        payload, header = decode(topic, record.data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"message {record.sequence} on {topic} is not lensos JSON: {exc}") from None
    return Recorded(topic, header.get("source", channel.metadata.get("source", "?")),
                    int(header.get("incarnation", 0)), int(header.get("seq", record.sequence)),
                    int(header.get("mono_ns", 0)), int(header.get("wall_ns", record.publish_time)),
                    payload, record.data, trace=int(header.get("trace", 0)), log_ns=record.log_time,
                    withheld=header.get("withheld") or None)
