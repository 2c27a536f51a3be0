"""Everything a receiver does with raw frames before a handler sees them.

Decode and validate (bus.envelope), then check the per-(topic, source)
sequence: a jump is a gap (messages lost upstream, counted as drops), a repeat
is a duplicate (e.g. a latched value that arrives both live and from the
cache), dropped silently but counted. Malformed frames are dropped, counted
per topic and logged at most once per LOG_EVERY_S per topic. Memory stays
bounded whatever arrives: the number of tracked sources and of distinct
unknown topic names is capped.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

from bus.envelope import Message, decode
from bus.errors import MalformedMessage
from bus.keys import DEVELOPER
from bus.plain import Plain
from bus.topics import TOPICS

log = logging.getLogger(__name__)

LOG_EVERY_S = 10.0
MAX_TRACKED_SOURCES = 4096
MAX_UNKNOWN_NAMES = 64
OTHER_UNKNOWN = "<other unknown topics>"


class TopicCounters(Plain):
    __slots__ = ("received", "malformed", "drops", "duplicates", "last_error", "reasons")

    def __init__(self):
        self.received = 0  # valid messages delivered
        self.malformed = 0
        self.drops = 0  # messages missing from sequence gaps
        self.duplicates = 0
        self.last_error = ""
        self.reasons: dict[str, int] = defaultdict(int)

    def as_dict(self) -> dict:
        return {
            "received": self.received,
            "malformed": self.malformed,
            "drops": self.drops,
            "duplicates": self.duplicates,
            "last_error": self.last_error,
        }


class Intake:
    def __init__(self, owner: str = ""):
        self.owner = owner  # for log lines: whose intake complained
        self.forged = 0
        self.counters: dict[str, TopicCounters] = defaultdict(TopicCounters)
        self._last_seq: dict[tuple[str, str], tuple[int, int]] = {}
        self._unknown_names: set[str] = set()
        self._last_log: dict[str, float] = {}
        self._unlogged: dict[str, int] = defaultdict(int)

    def accept(self, frames: list[bytes]) -> Message | None:
        """The decoded message, or None when it was malformed or a duplicate (and counted)."""
        try:
            msg = decode(frames)
        except MalformedMessage as exc:
            self._count_malformed(exc)
            return None
        if msg.sender != msg.source and msg.sender != DEVELOPER:
            # The header's name is a claim; the broker's stamp is the CURVE key's. Only the developer's tools
            # may speak for others (a replayed recording, a hand-made message).
            self.forged += 1
            self._count_malformed(MalformedMessage(f"claims to be {msg.source!r:.40} but is {msg.sender!r}",
                                                   msg.topic))
            return None
        return msg if self.in_sequence(msg) else None

    def in_sequence(self, msg: Message) -> bool:
        key = (msg.topic, msg.source)
        counters = self.counters[msg.topic]
        last = self._last_seq.get(key)
        if last is not None and last[0] == msg.incarnation:
            expected = last[1] + 1
            if msg.seq < expected:
                counters.duplicates += 1
                return False
            if msg.seq > expected:
                counters.drops += msg.seq - expected
                self._log_limited(msg.topic, "gap of %d from %s (seq %d after %d)",
                                  msg.seq - expected, msg.source, msg.seq, last[1])
        elif last is None and len(self._last_seq) >= MAX_TRACKED_SOURCES:
            del self._last_seq[next(iter(self._last_seq))]
        self._last_seq[key] = (msg.incarnation, msg.seq)
        counters.received += 1
        return True

    def totals(self) -> dict[str, int]:
        out = {"received": 0, "malformed": 0, "drops": 0, "duplicates": 0}
        for c in self.counters.values():
            out["received"] += c.received
            out["malformed"] += c.malformed
            out["drops"] += c.drops
            out["duplicates"] += c.duplicates
        return out

    def stats(self) -> dict[str, dict]:
        return {topic: c.as_dict() for topic, c in sorted(self.counters.items())}

    def _count_malformed(self, exc: MalformedMessage) -> None:
        name = exc.topic
        if name not in TOPICS and name != "<undecodable>" and name not in self._unknown_names:
            if len(self._unknown_names) >= MAX_UNKNOWN_NAMES:
                name = OTHER_UNKNOWN
            else:
                self._unknown_names.add(name)
        counters = self.counters[name]
        counters.malformed += 1
        counters.last_error = exc.reason
        if len(counters.reasons) < 32 or exc.reason in counters.reasons:
            counters.reasons[exc.reason] += 1
        self._log_limited(name, "dropped malformed message: %s", exc.reason)

    def _log_limited(self, key: str, fmt: str, *args) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, -LOG_EVERY_S) < LOG_EVERY_S:
            self._unlogged[key] += 1
            return
        if len(self._last_log) > MAX_UNKNOWN_NAMES * 4:
            self._last_log.clear()
        self._last_log[key] = now
        suppressed = self._unlogged.pop(key, 0)
        more = f" (+{suppressed} similar since last report)" if suppressed else ""
        log.warning("%s: %s: " + fmt + "%s", self.owner or "intake", key, *args, more)
