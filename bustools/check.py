"""The privacy and safety rules the shell's model check proves, checked over what really happened on a bus.

`lens bus check FILE.mcap` reads a recording; `lens bus check --live` watches the running bus. Both feed
the same ``Checker``, message by message, in publish order (each message's own monotonic time: one clock
on one machine), and each rule says what it saw:

- ``led``: no camera frame and no mic block unless the capture LED was confirmed lit (ledd's read-back,
  ``led.state``) when it was taken, and no fault since;
- ``exclusive``: at most one owner holds a resource at any moment (the shell's focus notices; a holder
  leaves on ``lost``, ``suspended``, ``ducked``, ``denied`` or when the shell's state shows it gone);
- ``answered``: every request recorded with its server's replies is answered within ``reply_s``;
- ``checkpoint``: a recording open when the shell enters ``battery_swap`` or ``critical`` is checkpointed
  (camerad's ``camera.segment``, why ``checkpoint: ...``) within ``checkpoint_s``;
- ``permission``: nobody captures (frames, mic blocks, capture grants) but an app whose manifest has the
  permission, or a process of the table;
- ``listen``: the mic while nobody captures it (``audio.wake.mic``) goes only to the listener the shell
  names in ``privacy.capture`` (the wake-phrase spotter), never after the shell named none (a capture
  began) beyond the blocks already in flight.

A rule whose evidence is not in the recording (no ``led.state``, no replies of a server) says so as
unchecked instead of guessing. Messages from different lanes can reach a recorder slightly out of publish
order, so they are put back in order within ``REORDER_S`` before they are judged.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Iterable

from bus.envelope import Message
from bus.topics import TOPICS

REORDER_S = 0.5  # lanes deliver out of publish order by far less than this
# A capture daemon stops on its own when it sees the LED report a fault (measured: within 7 ms), so frames
# already on their way when ledd published the fault are in flight, counted, not violations; beyond this
# they are. A normal LED-off comes only after the hold time after capture ended, so no frame is near it.
LED_GRACE_S = 0.25
CAPTURE_DATA = {"camera.frame": "camera", "audio.mic": "mic"}
SHELL = TOPICS["shell.focus.notice"].owner  # who decides focus: its other words end a batch of notices
HOLDING, LEAVING = ("granted", "restored"), ("lost", "suspended", "ducked", "denied")


@dataclass
class Violation:
    rule: str
    mono_ns: int
    wall_ns: int
    what: str
    messages: list[str] = field(default_factory=list)  # "topic from source seq N" of the messages involved

    def as_dict(self) -> dict:
        return {"rule": self.rule, "mono_ns": self.mono_ns, "wall_ns": self.wall_ns, "what": self.what,
                "messages": self.messages}


def cite(msg: Message) -> str:
    return f"{msg.topic} from {msg.source} seq {msg.seq}"


class Checker:
    def __init__(self, may_capture: dict[str, set[str]] | None = None, system: set[str] | None = None,
                 reply_s: float = 10.0, checkpoint_s: float = 5.0):
        self.may_capture = may_capture if may_capture is not None else app_permissions()
        self.system = system if system is not None else _system_identities()
        self.reply_ns, self.checkpoint_ns = int(reply_s * 1e9), int(checkpoint_s * 1e9)
        self.violations: list[Violation] = []
        self.seen: set[str] = set()  # topics seen: what a rule can and cannot judge
        # void: requests whose asker or server restarted before the answer (no one left to answer or to hear)
        self.counts = {"messages": 0, "frames": 0, "mic_blocks": 0, "listen_blocks": 0, "requests": 0,
                       "in_flight": 0, "void": 0}
        self._heap: list = []
        self._order = itertools.count()
        self._now = 0
        self._led: Message | None = None  # the latest led.state
        self._capture: Message | None = None  # the latest privacy.capture (who listens)
        self._listened_before: str | None = None  # who the one before it named
        self._holders: dict[str, dict[str, Message]] = {}  # resource -> owner -> the notice that made it hold
        self._pending: list[tuple[str, Message]] = []  # grants judged once the shell's batch of notices is in
        self._asked: dict[tuple[str, str, int], Message] = {}  # (reply topic, asker, cid) -> the request
        self._answered_topics: set[str] = set()
        self._incarnations: dict[str, int] = {}  # source -> the incarnation last heard from it
        self._recording: str | None = None
        self._checkpoint_due: tuple[int, Message] | None = None

    # --- in ------------------------------------------------------------------------------------
    def feed(self, msg: Message) -> list[Violation]:
        """Take one message; the violations this made certain (judged up to REORDER_S behind)."""
        before = len(self.violations)
        heapq.heappush(self._heap, (msg.mono_ns, next(self._order), msg))
        while self._heap and self._heap[0][0] <= msg.mono_ns - REORDER_S * 1e9:
            self._judge(heapq.heappop(self._heap)[2])
        return self.violations[before:]

    def finish(self) -> list[Violation]:
        """The end of the recording: judge what is held back, then what was still waiting."""
        before = len(self.violations)
        while self._heap:
            self._judge(heapq.heappop(self._heap)[2])
        self._settle_grants()
        self._expire()  # deadlines that passed before the recording ended
        return self.violations[before:]

    def unchecked(self) -> list[str]:
        """Rules this recording holds no evidence for."""
        missing = []
        if self.counts["frames"] + self.counts["mic_blocks"] and "led.state" not in self.seen:
            missing.append("led: frames or mic blocks but no led.state in the recording")
        if self.counts["listen_blocks"] and "privacy.capture" not in self.seen:
            missing.append("listen: idle mic blocks but no privacy.capture in the recording")
        if self.counts["requests"] and not self._answered_topics:
            missing.append("answered: requests but none of their replies in the recording")
        if "shell.focus.notice" not in self.seen:
            missing.append("exclusive: no shell.focus.notice in the recording")
        if "camera.segment" not in self.seen and "shell.state" not in self.seen:
            missing.append("checkpoint: neither shell.state nor camera.segment in the recording")
        return missing

    # --- the rules -----------------------------------------------------------------------------
    def _judge(self, msg: Message) -> None:
        self._now = max(self._now, msg.mono_ns)
        self.counts["messages"] += 1
        self.seen.add(msg.topic)
        if msg.source == SHELL and msg.topic != "shell.focus.notice":
            self._settle_grants()  # the shell finished a batch of notices: judge the grants in it
        self._expire()
        if self._incarnations.setdefault(msg.source, msg.incarnation) != msg.incarnation:
            self._restarted(msg.source, msg.incarnation)
        topic = msg.topic
        if topic == "led.state":
            self._led = msg
        elif topic in CAPTURE_DATA:
            self.counts["frames" if topic == "camera.frame" else "mic_blocks"] += 1
            self._captured(msg, CAPTURE_DATA[topic], msg.payload.get("owner", ""))
        elif topic == "audio.wake.mic":
            self.counts["listen_blocks"] += 1
            self._listened(msg, msg.payload.get("owner", ""))
        elif topic == "privacy.capture":
            self._listened_before = (self._capture or msg).payload.get("listening")
            self._capture = msg
            for grant in msg.payload.get("grants", []):  # "owner:resource"
                owner, _, resource = str(grant).rpartition(":")
                self._permitted(msg, owner, resource)
        elif topic == "shell.focus.notice":
            self._notice(msg)
        elif topic == "shell.state":
            self._shell_state(msg)
        elif topic == "camera.state":
            self._recording = msg.payload.get("recording")
        elif topic == "camera.segment":
            if str(msg.payload.get("why", "")).startswith("checkpoint"):
                self._checkpoint_due = None
        elif topic.endswith(".request") and "cid" in msg.payload:
            self.counts["requests"] += 1
            self._asked[(topic[:-len("request")] + "reply", msg.source, msg.payload["cid"])] = msg
        elif topic.endswith(".reply"):
            self._answered_topics.add(topic)
            self._asked.pop((topic, msg.payload.get("to", ""), msg.payload.get("cid")), None)

    def _restarted(self, source: str, incarnation: int) -> None:
        """``source`` is a new process (killed and started again): what its old self asked or was asked and
        had not answered dies with it. The asker was told by its timeout; it is no broken rule."""
        self._incarnations[source] = incarnation
        void = [key for key, request in self._asked.items()
                if source in (request.source, getattr(TOPICS.get(request.topic), "owner", None))]
        for key in void:
            del self._asked[key]
        self.counts["void"] += len(void)

    def _captured(self, msg: Message, resource: str, owner: str) -> None:
        led = self._led
        if led is None and "led.state" in self.seen:
            self._flag("led", msg, f"{resource} data for {owner or '?'} before any LED state", [])
        elif led is not None and not (led.payload.get("lit") and not led.payload.get("fault")):
            if led.payload.get("fault") and msg.mono_ns - led.mono_ns <= LED_GRACE_S * 1e9:
                self.counts["in_flight"] += 1
            else:
                why = f"LED fault: {led.payload['fault']}" if led.payload.get("fault") else "LED dark"
                self._flag("led", msg, f"{resource} data for {owner or '?'} while the {why}", [cite(led)])
        self._permitted(msg, owner, resource)

    def _listened(self, msg: Message, owner: str) -> None:
        capture = self._capture
        if capture is None:
            return  # nothing to judge it by (unchecked says so)
        named = capture.payload.get("listening")
        if owner and owner == named:
            return
        if owner == self._listened_before and msg.mono_ns - capture.mono_ns <= LED_GRACE_S * 1e9:
            # sent before audiod heard the withdrawal
            self.counts["in_flight"] += 1
            return
        self._flag("listen", msg, f"the idle mic for {owner or '?'} while the shell names "
                                  f"{named or 'no listener'}", [cite(capture)])

    def _permitted(self, msg: Message, owner: str, resource: str) -> None:
        if not owner or owner in self.system:
            return
        allowed = self.may_capture.get(owner)
        if allowed is None:
            self._flag("permission", msg, f"{resource} capture for {owner!r}, neither an app nor a process of "
                                          "the table", [])
        elif resource not in allowed:
            self._flag("permission", msg, f"{resource} capture for {owner}, whose manifest lacks the {resource} "
                                          "permission", [])

    def _notice(self, msg: Message) -> None:
        p = msg.payload
        holders = self._holders.setdefault(p.get("resource", ""), {})
        if p.get("status") in HOLDING:
            holders[p.get("owner", "")] = msg
            self._pending.append((p.get("resource", ""), msg))
        elif p.get("status") in LEAVING:
            holders.pop(p.get("owner", ""), None)

    def _settle_grants(self) -> None:
        for resource, grant in self._pending:
            holders = self._holders.get(resource, {})
            if len(holders) > 1 and grant.payload.get("owner") in holders:
                others = [m for owner, m in holders.items() if owner != grant.payload.get("owner")]
                self._flag("exclusive", grant, f"{resource} held by {', '.join(sorted(holders))} at once",
                           [cite(m) for m in others])
        self._pending.clear()

    def _shell_state(self, msg: Message) -> None:
        p = msg.payload
        for resource, info in (p.get("focus") or {}).items():
            stack = {claim.get("owner") for claim in (info or {}).get("stack", [])}
            holders = self._holders.get(resource, {})
            for owner in [o for o in holders if o not in stack]:  # released: gone from the shell's stack
                holders.pop(owner)
        # The shell says when the power may go (its power_at_risk: a battery out, or critical): not state names,
        # but for a recording made before it said so (2026-12-07), whose states were these two
        at_risk = p.get("power_at_risk") if "power_at_risk" in p else p.get("state") in ("battery_swap", "critical")
        if at_risk and self._recording and self._checkpoint_due is None:
            self._checkpoint_due = (msg.mono_ns + self.checkpoint_ns, msg)

    def _expire(self) -> None:
        """Deadlines that passed by now (the newest message judged)."""
        if self._checkpoint_due and self._now > self._checkpoint_due[0]:
            _, state = self._checkpoint_due
            self._flag("checkpoint", state, f"recording {self._recording} not checkpointed within "
                                            f"{self.checkpoint_ns / 1e9:g} s of {state.payload['state']}",
                       [cite(state)])
            self._checkpoint_due = None
        late = [key for key, request in self._asked.items()
                if self._now > request.mono_ns + self.reply_ns and key[0] in self._answered_topics]
        for key in late:
            request = self._asked.pop(key)
            self._flag("answered", request, f"{request.topic} from {request.source} not answered within "
                                            f"{self.reply_ns / 1e9:g} s", [cite(request)])

    def _flag(self, rule: str, msg: Message, what: str, involved: list[str]) -> None:
        self.violations.append(Violation(rule, msg.mono_ns, msg.wall_ns, what, [cite(msg), *involved]))


def app_permissions(directory=None) -> dict[str, set[str]]:
    """Each app's permissions, from the manifests of ``directory`` (default: the apps directory, $LENS_APPS_DIR)."""
    from apps.sdk.manifest import load_all

    manifests, _ = load_all(directory)
    return {app: set(m.permissions) for app, m in manifests.items()}


def _system_identities() -> set[str]:
    from bus.keys import DEVELOPER
    from manager.processes import PROCESSES

    return {p.name for p in PROCESSES} | {DEVELOPER}


def check_all(messages: Iterable[Message], checker: Checker | None = None) -> Checker:
    checker = checker or Checker()
    for msg in messages:
        checker.feed(msg)
    checker.finish()
    return checker
