"""The shell's crash checkpoint as data: JSON with a schema, checked like any message before it is used.

A shell that crashed and was restarted carries on from its checkpoint (focus
stacks, capture grants, the LED command, open audit sessions). The file is
read back at start, so it is input like any other: it is never unpickled
(a pickle runs whatever code it names), and every record in it is checked
against its schema (``bus.fields``, as the bus checks messages), every name
against the shell's own tables (states, resources, focus kinds) and every
latched payload against the topic table. Anything else is refused with
``CheckpointError`` saying where and why, and the shell starts afresh.

Version 1, one JSON object::

    version, boot_id, cmd, boot_s, sessions [{owner, resource, session, start}],
    published {topic: payload}, core {state, arbiter {resource: [claim]}, privacy {...},
    power {...}, ready, missing, boot_deadline, last_activity, resume_state, foreground,
    saved_state, notices [...], last_seen {name: t}, periods {name: s}, clock}
"""

from __future__ import annotations

import json

from bus.errors import PayloadError, UnknownTopic
from bus.fields import Schema
from bus.topics import lookup
from shell.core import LISTENER, Power
from shell.focus import KINDS, Arbiter, Claim, Notice
from shell.machine import STATES
from shell.privacy import CaptureNotice, Privacy

VERSION = 1
MAX_BYTES = 4 * 1024 * 1024  # far above any real shell's; a larger file is not read at all

TOP = Schema({"version": "int", "boot_id": "str", "cmd": "int", "boot_s": "float?", "sessions": "list[dict]",
              "published": "dict", "core": "dict"})
CORE = Schema({"state": "str", "arbiter": "dict", "privacy": "dict", "power": "dict", "ready": "list[str]",
               "missing": "list[str]", "boot_deadline": "float", "last_activity": "float", "resume_state": "str",
               "foreground": "str?", "saved_state": "dict?", "notices": "list[dict]", "last_seen": "dict",
               "periods": "dict", "clock": "float"})
CLAIM = Schema({"owner": "str", "resource": "str", "kind": "str", "priority": "int", "cls": "str", "reason": "str",
                "ducked": "bool", "behalf": "str?"})
PRIVACY = Schema({"led_on": "bool", "led_lit": "bool", "fault": "str?", "granted": "list[dict]",
                  "pending": "list[dict]", "hold_until": "float?", "listener": "str?"})
GRANT = Schema({"owner": "str", "resource": "str", "reason": "str", "behalf": "str?"})
PENDING = Schema({"owner": "str", "resource": "str", "reason": "str", "deadline": "float", "behalf": "str?"})
POWER = Schema({"present": "list[bool]", "percent": "float", "bridge_s": "float?"})
NOTICE = Schema({"capture": "bool", "owner": "str", "resource": "str", "status": "str", "reason": "str"})
SESSION = Schema({"owner": "str", "resource": "str", "session": "str", "start": "float"})
STATE_NAMES = {state["name"] for state in STATES}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: the message says where and why."""


def dump(core_data: dict, *, boot_id: str, cmd: int, boot_s: float | None, sessions: dict, published: dict) -> bytes:
    """``core_data`` is ``ShellCore.export()``; sessions are the daemon's open audit sessions."""
    arbiter, privacy, power = core_data["arbiter"], core_data["privacy"], core_data["power"]
    core = {
        "state": core_data["state"],
        "arbiter": {resource: [_claim(c) for c in stack] for resource, stack in arbiter.stacks.items()},
        "privacy": {"led_on": privacy.led_on, "led_lit": privacy.led_lit, "fault": privacy.fault,
                    "hold_until": privacy.hold_until, "listener": privacy.listener,
                    "granted": [{"owner": o, "resource": r, "reason": reason, "behalf": privacy.behalf.get((o, r))}
                                for (o, r), reason in privacy.granted.items()],
                    "pending": [{"owner": o, "resource": r, "reason": reason, "deadline": deadline,
                                 "behalf": privacy.behalf.get((o, r))}
                                for (o, r), (reason, deadline) in privacy.pending.items()]},
        "power": {"present": list(power.present), "percent": power.percent, "bridge_s": power.bridge_s},
        "ready": sorted(core_data["ready"]), "missing": list(core_data["missing"]),
        "notices": [{"capture": isinstance(n, CaptureNotice), "owner": n.owner, "resource": n.resource,
                     "status": n.status, "reason": n.reason} for n in core_data["notices"]],
        **{k: core_data[k] for k in ("boot_deadline", "last_activity", "resume_state", "foreground", "saved_state",
                                     "last_seen", "periods", "clock")},
    }
    return json.dumps({"version": VERSION, "boot_id": boot_id, "cmd": cmd, "boot_s": boot_s,
                       "sessions": [{"owner": o, "resource": r, **s} for (o, r), s in sessions.items()],
                       "published": published, "core": core}, sort_keys=True).encode()


def load(data: bytes, core_template: dict) -> dict:
    """The checkpoint checked and turned back into what ``ShellCore.restore`` and the daemon take:
    {boot_id, cmd, boot_s, sessions, published, core}. ``core_template`` is the fresh core's export
    (its resources and LED timings are this shell's, not the file's)."""
    if len(data) > MAX_BYTES:
        raise CheckpointError(f"{len(data)} bytes, more than a checkpoint ever takes ({MAX_BYTES})")
    try:
        top = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"not JSON: {exc}") from None
    _check(TOP, "checkpoint", top)
    if top["version"] != VERSION:
        raise CheckpointError(f"version {top['version']}, this shell reads {VERSION}")
    core = top["core"]
    _check(CORE, "core", core)
    if core["state"] not in STATE_NAMES or core["resume_state"] not in STATE_NAMES:
        raise CheckpointError(f"core: unknown state {core['state']!r} or {core['resume_state']!r}")
    for name in ("last_seen", "periods"):
        _times(f"core.{name}", core[name])
    for topic, payload in top["published"].items():
        try:
            lookup(topic).schema.validate(topic, payload)
        except (UnknownTopic, PayloadError) as exc:
            raise CheckpointError(f"published: {exc}") from None
    sessions = {}
    for i, session in enumerate(top["sessions"]):
        _check(SESSION, f"sessions[{i}]", session)
        sessions[(session["owner"], session["resource"])] = {"session": session["session"], "start": session["start"]}
    out = dict(core_template)
    out.update({k: core[k] for k in ("state", "missing", "boot_deadline", "last_activity", "resume_state",
                                     "foreground", "saved_state", "last_seen", "periods", "clock")})
    out["ready"] = set(core["ready"])
    out["arbiter"] = _arbiter(core["arbiter"], core_template["arbiter"])
    out["privacy"] = _privacy(core["privacy"], core_template["privacy"])
    _check(POWER, "core.power", core["power"])
    out["power"] = Power(**core["power"])
    out["notices"] = []
    for i, notice in enumerate(core["notices"]):
        _check(NOTICE, f"core.notices[{i}]", notice)
        kind = CaptureNotice if notice.pop("capture") else Notice
        out["notices"].append(kind(**notice))
    return {"boot_id": top["boot_id"], "cmd": top["cmd"], "boot_s": top["boot_s"], "sessions": sessions,
            "published": top["published"], "core": out}


def _claim(claim: Claim) -> dict:
    return {"owner": claim.owner, "resource": claim.resource, "kind": claim.kind, "priority": claim.priority,
            "cls": claim.cls, "reason": claim.reason, "ducked": claim.ducked, "behalf": claim.behalf}


def _arbiter(stacks: dict, template: Arbiter) -> Arbiter:
    arbiter = Arbiter(list(template.stacks))
    for resource, stack in stacks.items():
        if resource not in arbiter.stacks or type(stack) is not list:
            raise CheckpointError(f"core.arbiter: {resource!r} is not a resource of this model with a stack")
        for i, claim in enumerate(stack):
            where = f"core.arbiter.{resource}[{i}]"
            _check(CLAIM, where, claim)
            if claim["resource"] != resource or claim["kind"] not in KINDS:
                raise CheckpointError(f"{where}: a {claim['kind']!r} claim on {claim['resource']!r} in this stack")
            arbiter.stacks[resource].append(Claim(**claim))
    return arbiter


def _privacy(data: dict, template: Privacy) -> Privacy:
    _check(PRIVACY, "core.privacy", data)
    privacy = Privacy(template.hold_s, template.confirm_timeout_s)
    privacy.led_on, privacy.led_lit, privacy.fault = data["led_on"], data["led_lit"], data["fault"]
    privacy.hold_until = data["hold_until"]
    # Only the spotter's own name: a checkpoint naming any other process never lets that one hear the mic.
    privacy.listener = LISTENER if data.get("listener") == LISTENER else None
    for i, grant in enumerate(data["granted"]):
        _check(GRANT, f"core.privacy.granted[{i}]", grant)
        key = (grant["owner"], grant["resource"])
        privacy.granted[key] = grant["reason"]
        if grant["behalf"]:
            privacy.behalf[key] = grant["behalf"]
    for i, pending in enumerate(data["pending"]):
        _check(PENDING, f"core.privacy.pending[{i}]", pending)
        key = (pending["owner"], pending["resource"])
        privacy.pending[key] = (pending["reason"], pending["deadline"])
        if pending["behalf"]:
            privacy.behalf[key] = pending["behalf"]
    return privacy


def _times(where: str, values: dict) -> None:
    for name, value in values.items():
        if type(value) not in (int, float):
            raise CheckpointError(f"{where}: {name!r} is {type(value).__name__}, not a time")


def _check(schema: Schema, where: str, value: object) -> None:
    try:
        schema.validate(where, value)
    except PayloadError as exc:
        raise CheckpointError(str(exc)) from None
