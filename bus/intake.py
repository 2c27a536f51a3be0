"""Everything a receiver does with raw frames before a handler sees them.

Decode and validate (bus.envelope), then check the sequence of the channel
it came on: a jump is a gap (messages meant for this receiver and lost,
counted as drops), a repeat is a duplicate (e.g. a latched value that arrives
both live and from the cache, or a message a publisher sent again after a
broker died: bus.node), dropped silently but counted. On a topic everyone may
hear the channel is (topic, source) and the publisher's sequence counts it; on
a personal channel the broker's count does, and the publisher's sequence only
tells duplicates (bus.envelope says why). A probe's sequence is not checked:
probes are sent to find out whether the broker is there, and those sent while
it is not are lost by design. Malformed frames are dropped, counted
per topic and logged at most once per LOG_EVERY_S per topic. So are
messages the node's handlers never see because their verified sender is not
the topic's owner in the table (bus.loop drops them: not_owner). Memory stays
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
from bus.slotted import Slotted
from bus.topics import TOPICS

UNCOUNTED = frozenset({"bus.probe", "bus.probe.stream"})  # bus.lane's probes: their losses are expected

log = logging.getLogger(__name__)

LOG_EVERY_S = 10.0
MAX_TRACKED_SOURCES = 4096
MAX_UNKNOWN_NAMES = 64
OTHER_UNKNOWN = "<other unknown topics>"


class TopicCounters(Slotted):
    __slots__ = ("received", "malformed", "drops", "duplicates", "not_owner", "last_error", "reasons")

    def __init__(self):
        self.received = 0  # valid messages delivered
        self.malformed = 0
        self.drops = 0  # messages missing from sequence gaps
        self.duplicates = 0
        self.not_owner = 0  # of those received, kept from the handlers: not from the topic's owner (bus.loop)
        self.last_error = ""
        self.reasons: dict[str, int] = defaultdict(int)

    def as_dict(self) -> dict:
        return {
            "received": self.received,
            "malformed": self.malformed,
            "drops": self.drops,
            "duplicates": self.duplicates,
            "not_owner": self.not_owner,
            "last_error": self.last_error,
        }


class Intake:
    def __init__(self, owner: str = ""):
        self.owner = owner  # for log lines: whose intake complained
        self.forged = 0
        self.counters: dict[str, TopicCounters] = defaultdict(TopicCounters)
        self._last_seq: dict[tuple[str, str], tuple[int, int]] = {}
        # (topic, sender) -> (source, incarnation, seq, the broker's count) of the last on a personal channel; the
        # count is None when the last came from the broker's cache
        self._channels: dict[tuple[str, str], tuple[str, int, int, int | None]] = {}
        self._unknown_names: set[str] = set()
        self._last_log: dict[str, float] = {}
        self._unlogged: dict[str, int] = defaultdict(int)

    def accept(self, frames: list[bytes], cached: bool = False) -> Message | None:
        """The decoded message, or None when it was malformed or a duplicate (and counted). ``cached``: from the
        broker's last-value cache (bus.latch's snapshot), not from a channel."""
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
        if cached and TOPICS[msg.topic].personal:
            return msg if self._cached_for_channel(msg) else None
        return msg if self.in_sequence(msg) else None

    def _cached_for_channel(self, msg: Message) -> bool:
        """A personal topic's value from the broker's cache. Its channel brings the same messages live, counted;
        the cache's comes without a count, so it tells no gap, and it is a duplicate when the channel already
        brought it or a later one. (Checked as a topic everyone hears, against the snapshot before, the
        messages heard live in between read as lost, and a value already heard came again.)"""
        key = (msg.topic, msg.sender)
        counters = self.counters[msg.topic]
        last = self._channels.get(key)
        if last is None:
            if len(self._channels) >= MAX_TRACKED_SOURCES:
                del self._channels[next(iter(self._channels))]
            count = None  # not known until the channel brings one: the next live one tells no gap
        elif _had(last, msg):
            counters.duplicates += 1
            return False
        else:
            count = last[3]
        # A live copy still on its way (sent after the subscription, before the cache was read) is then a duplicate.
        self._channels[key] = (msg.source, msg.incarnation, msg.seq, count)
        counters.received += 1
        return True

    def in_sequence(self, msg: Message) -> bool:
        if msg.count:
            return self._in_channel(msg)
        key = (msg.topic, msg.source)
        counters = self.counters[msg.topic]
        last = self._last_seq.get(key)
        if last is not None and last[0] == msg.incarnation:
            expected = last[1] + 1
            if msg.seq < expected:
                counters.duplicates += 1
                return False
            if msg.seq > expected and msg.topic not in UNCOUNTED:
                self._gap(counters, msg, msg.seq - expected, f"seq {msg.seq} after {last[1]}")
        elif last is None and len(self._last_seq) >= MAX_TRACKED_SOURCES:
            del self._last_seq[next(iter(self._last_seq))]
        self._last_seq[key] = (msg.incarnation, msg.seq)
        counters.received += 1
        return True

    def _in_channel(self, msg: Message) -> bool:
        """A message on a personal channel: gaps by the broker's count, duplicates by the publisher's sequence."""
        key = (msg.topic, msg.sender)
        counters = self.counters[msg.topic]
        last = self._channels.get(key)
        self._channels[key] = (msg.source, msg.incarnation, msg.seq, msg.count)
        if last is None:
            if len(self._channels) > MAX_TRACKED_SOURCES:
                del self._channels[next(iter(self._channels))]
        else:
            source, incarnation, seq, count = last
            if _had(last, msg):
                # Had already; the count it came with is kept, for the next one's gap.
                self._channels[key] = (source, incarnation, seq, msg.count)
                counters.duplicates += 1
                return False
            # A count at or below the last: the broker restarted and counts afresh, so there is nothing to
            # compare it with.
            if count is not None and msg.count > count + 1:
                self._gap(counters, msg, msg.count - count - 1, f"message {msg.count} after {count} on its channel")
        counters.received += 1
        return True

    def _gap(self, counters: TopicCounters, msg: Message, lost: int, where: str) -> None:
        counters.drops += lost
        self._log_limited(msg.topic, "gap of %d from %s (%s)", lost, msg.source, where)

    def not_from_owner(self, msg: Message, owner: str) -> None:
        """Count (and log, rate-limited) a message kept from the handlers: its verified sender is not the
        topic's owner. Only the developer's key gets one past the broker (broker.gate), speaking as another."""
        self.counters[msg.topic].not_owner += 1
        self._log_limited(msg.topic, "dropped a message from %r (key %r): the table's owner is %r", msg.source,
                          msg.sender, owner)

    def forget(self, topics) -> None:
        """Stop following the sequences of ``topics`` (no longer subscribed): when they are heard again,
        what was published meanwhile was never meant for this receiver, and is no gap."""
        topics = set(topics)
        for table in (self._last_seq, self._channels):
            for key in [k for k in table if k[0] in topics]:
                del table[key]

    def totals(self) -> dict[str, int]:
        out = {"received": 0, "malformed": 0, "drops": 0, "duplicates": 0, "not_owner": 0}
        for c in self.counters.values():
            out["received"] += c.received
            out["malformed"] += c.malformed
            out["drops"] += c.drops
            out["duplicates"] += c.duplicates
            out["not_owner"] += c.not_owner
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


def _had(last: tuple[str, int, int, int | None], msg: Message) -> bool:
    """Whether a channel whose last message was ``last`` already brought ``msg`` (or a later one): the same
    publisher's same incarnation, at or past its sequence."""
    return last[0] == msg.source and last[1] == msg.incarnation and msg.seq <= last[2]
