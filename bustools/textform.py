"""Messages as text for people and scripts, and ``key=value`` arguments as payloads.

JSON has no bytes type: bytes become {"$bytes": "<base64>"} so nothing is lost
when a script reads the sniffer's output.
"""

from __future__ import annotations

import base64
import json
import time

from bus.envelope import Message
from bus.errors import PayloadError
from bus.topics import Topic


def jsonable(value):
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def message_json(msg: Message) -> str:
    return json.dumps({
        "topic": msg.topic,
        "source": msg.source,
        "sender": msg.sender,  # the key's identity, as the broker verified it
        "seq": msg.seq,
        "incarnation": msg.incarnation,
        "mono_ns": msg.mono_ns,
        "wall_ns": msg.wall_ns,
        "trace": msg.trace,
        "latched": msg.latched,
        "size": msg.size,
        "payload": jsonable(msg.payload),
    }, separators=(",", ":"))


def _short(value, limit: int = 48) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"[{', '.join(_short(v) for v in value[:8])}, ... {len(value)} items]"
    text = json.dumps(jsonable(value)) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def message_line(msg: Message) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(msg.wall_ns / 1e9)) + f".{msg.wall_ns // 1_000_000 % 1000:03d}"
    fields = " ".join(f"{k}={_short(v)}" for k, v in msg.payload.items())
    tag = " [latched]" if msg.latched else ""
    # Who spoke for the source, when it is not the source itself (the developer's tools, a replay).
    via = f" (via {msg.sender})" if msg.sender and msg.sender != msg.source else ""
    return f"{clock} {msg.topic} {msg.source}#{msg.seq}{via}{tag} {fields}"


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_assignments(topic: Topic, assignments: list[str]) -> dict:
    """``['percent=80', 'charging=yes']`` -> a payload, each value read as its field's type."""
    kinds = {f.name: f.base for f in topic.schema.fields}
    payload = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise PayloadError(f"{topic.name}: expected key=value, got {item!r}")
        payload[key] = _parse_value(topic.name, key, kinds.get(key), text)
    return payload


def _parse_value(topic: str, key: str, kind: str | None, text: str):
    try:
        if kind == "str":
            return text
        if kind == "int":
            return int(text, 0)
        if kind == "float":
            return float(text)
        if kind == "bool":
            lowered = text.lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE
            raise ValueError(text)
        if kind == "bytes":
            return bytes.fromhex(text)
        return json.loads(text)  # list, dict, any, or a field the table does not know
    except ValueError:
        if kind is None:
            return text  # validation then names the unknown field
        raise PayloadError(f"{topic}: field '{key}' must be {kind}, got {text!r}") from None
