"""What the glasses did after a button of the live view: who took a gesture, or that nothing did.

A gesture is an event, not a request: inputd publishes it and nobody answers, so inputd's reply says only
that the finger was played, not that anything on the glasses cared. The view therefore watches the bus from
the gesture on and reports what changed because of it (the shell woke, the foreground app posted a card,
the assistant began to listen), until nothing more has happened for QUIET_S; or that nothing reacted.

What changed is told apart from what always changes: a latched state counts only where the wearer would
notice (NOTICED: a battery's falling percent is not a reaction), periodic topics, streams and replies never
count, nor anything published before the gesture was. Who took a gesture is one of the processes that act on
gestures (GESTURE_TAKERS and the apps), not displayd drawing what they asked for. This is the bus's order in
time, not a trace of causes: something an app does on its own in that second is listed too.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable

from bus.envelope import Message
from bus.topics import TOPICS, Kind, from_owner

QUIET_S = 1.5  # a reaction follows the gesture, or the reaction before it, within this; then the list is done
LONGEST_S = 6.0  # a chain of reactions is cut here (a card that animates would never be quiet)
FINGER_S = 4.0  # a simulated finger takes at most this long to make its gesture (a long press, a double tap)
NEVER_REACTIONS = ("node.", "bus.")  # liveness and the bus's own bookkeeping
# Besides the apps (apps/sdk/app.py), the processes that subscribe to input.gesture and act on it: the shell
# wakes the glasses (shell/daemon.py), the assistant listens on its trigger gestures (daemons/assistant).
GESTURE_TAKERS = ("shell", "assistantd")

# The fields of a latched state that a wearer (or a developer at the view) would notice changing.
NOTICED: dict[str, Callable[[dict], dict]] = {
    "shell.state": lambda p: {"state": p["state"], "foreground": p.get("foreground"),
                              **{f"{r} focus": f.get("owner") for r, f in p["focus"].items()}},
    "power.state": lambda p: {b["name"]: "in" if b["present"] else "out" for b in p["batteries"]},
    "display.state": lambda p: {"panel": "on" if p["on"] else "off", "brightness": p["brightness"],
                                "alert": (p.get("alert") or "").split(":")[0] or None},  # not its countdown
    "assistant.state": lambda p: {"phase": p["phase"]},
    "audio.state": lambda p: {"playing": ", ".join(f"{s['owner']}:{s['id']}" for s in p["streams"]) or None,
                              "mic": p["mic"].get("owner")},
    "camera.state": lambda p: {"camera": p["mode"], "for": p.get("owner")},
    "led.state": lambda p: {"capture LED": "lit" if p["lit"] else "off"},
    "notifications.state": lambda p: {"unread": p.get("unread")},
    "privacy.indicator": lambda p: {"indicator": "on" if p["on"] else "off"},
    "privacy.capture": lambda p: {"capture": ", ".join(p["grants"]) or None},
    "shell.apps": lambda p: {app: a["state"] for app, a in p["apps"].items()},
}


@dataclass(frozen=True)
class Aftermath:
    """What to watch after a button: from which message on (None: at once), and whose doing counts."""
    starts: Callable[[Message], bool] | None
    gesture: bool  # only the doing of the processes that take gestures (not displayd drawing it)


AT_ONCE = Aftermath(None, gesture=False)


def of_gesture(name: str) -> Aftermath:
    """From the gesture as inputd made it of the simulated finger; then whoever took it."""
    return Aftermath(lambda msg: msg.topic == "input.gesture" and from_owner(msg.topic, msg.source)
                     and msg.payload["gesture"] == name, gesture=True)


def counts(topic: str) -> bool:
    """Whether a message on this topic can be a reaction at all."""
    spec = TOPICS.get(topic)
    return (spec is not None and spec.kind not in (Kind.STREAM, Kind.REPLY) and not spec.rate_hz
            and not topic.startswith(NEVER_REACTIONS))


def short(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


def changes(old: dict | None, new: dict) -> str | None:
    """'state sleep → active, foreground – → home', or None when nothing noticed changed (or it is the first
    word on it: what it was before is not known)."""
    if old is None:
        return None
    said = [f"{key} {short(old.get(key)) if old.get(key) is not None else '–'} → "
            f"{short(new.get(key)) if new.get(key) is not None else '–'}"
            for key in dict.fromkeys([*old, *new]) if old.get(key) != new.get(key)]
    return ", ".join(said) or None


def event(msg: Message) -> str:
    """An event or request in a few words: its topic and what it is about."""
    p = msg.payload
    about = next((p[k] for k in ("title", "text", "event", "action", "resource", "app") if p.get(k)), None)
    return msg.topic + (f" “{short(about)}”" if about is not None else "")


class Watch:
    """One button's aftermath, kept by the node thread: started by a message (the gesture as inputd saw it)
    or at once, finished by a quiet bus, a cut-off, or a gesture that never came."""

    def __init__(self, node, starts: Callable[[Message], bool] | None, takers: Callable[[str], bool],
                 done: Callable[[dict], None]):
        self.node, self.starts, self.takers, self.done = node, starts, takers, done
        self.reactions: list[str] = []
        self.started = starts is None
        self.since_ns = time.monotonic_ns()  # the publisher's clock: the same machine's monotonic one
        self.finished = False
        self.cutoff = None
        self.timer = node.after(QUIET_S if self.started else FINGER_S, self.finish)
        if self.started:
            self.cutoff = node.after(LONGEST_S, self.finish)

    def on_message(self, msg: Message, reaction: str | None) -> None:
        if not self.started:
            if self.starts(msg):
                self.started, self.since_ns = True, msg.mono_ns
                self.cutoff = self.node.after(LONGEST_S, self.finish)
                self._quiet_from_now()
            return
        if reaction is not None and msg.mono_ns >= self.since_ns and self.takers(msg.source):
            line = f"{msg.source}: {reaction}"
            if line not in self.reactions:
                self.reactions.append(line)
            self._quiet_from_now()

    def _quiet_from_now(self) -> None:
        self.timer.cancel()
        self.timer = self.node.after(QUIET_S, self.finish)

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        for timer in (self.timer, self.cutoff):
            if timer is not None:
                timer.cancel()
        self.done({"arrived": self.started, "reactions": self.reactions})


class Reactions:
    """Every open watch, and what each latched state looked like last, to tell a change from a repeat."""

    def __init__(self, node, ignore: tuple[str, ...]):
        self.node, self.ignore = node, ignore
        self.watches: list[Watch] = []
        self.noticed: dict[tuple[str, str], dict] = {}
        self.apps: set[str] = set()  # the shell's word on which processes are apps

    def watch(self, aftermath: Aftermath, done: Callable[[dict], None]) -> None:
        """Report to ``done`` what follows: {"arrived": the start came, "reactions": ["who: what", ...]}."""
        def finished(result: dict, watch_done=done) -> None:
            self.watches = [w for w in self.watches if not w.finished]
            watch_done(result)
        takers = self.takes_gestures if aftermath.gesture else (lambda source: True)
        self.watches.append(Watch(self.node, aftermath.starts, takers, finished))

    def takes_gestures(self, source: str) -> bool:
        return source in GESTURE_TAKERS or source in self.apps

    def on_message(self, msg: Message) -> None:
        if msg.topic == "shell.apps" and from_owner(msg.topic, msg.source):
            self.apps = set(msg.payload["apps"])
        reaction = self.reaction(msg)
        for watch in list(self.watches):
            watch.on_message(msg, reaction)

    def reaction(self, msg: Message) -> str | None:
        """What this message says happened, if it can be a reaction; keeps the state it reports."""
        if not counts(msg.topic) or msg.source in self.ignore:
            return None
        if msg.topic in TOPICS and TOPICS[msg.topic].kind is Kind.STATE:
            noticed = NOTICED.get(msg.topic, lambda p: p)(msg.payload)
            key = (msg.source, msg.topic)
            before = self.noticed.get(key)
            self.noticed[key] = noticed
            what = changes(before, noticed)
            return None if what is None else (what if msg.topic in NOTICED else f"{msg.topic} {what}")
        return event(msg)
