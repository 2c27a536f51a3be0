"""How a watching tool (sniff, top) hears the bus: from the broker's tap (bus.tap), read at its own pace,
with what only its sockets bring (replies, restricted topics) put in among it by publish time."""

from __future__ import annotations

import heapq
import logging

from bus.envelope import Message
from bus.tap import TapReader
from bus.topics import LATCHED, matches

log = logging.getLogger(__name__)

TAP_PERIOD_S = 0.02  # how often a watching tool reads the tap: 50 wake-ups a second, however busy the bus
_LATCHED = frozenset(LATCHED)


def _published(msg: Message) -> int:
    return msg.mono_ns


class Watching:
    """A watching node's tap (a part of bus.node.Node, which holds the state)."""


    def _open_tap(self) -> None:
        """bus.tap says the ring has a new reader: read it from its head on, unless already reading it.
        Where it cannot be read (another user's), hear everything through the broker's sockets instead."""
        if self._tap is not None:
            if not self._tap.replaced():
                return
            self._tap.close()  # the broker restarted and made a new ring
            self._tap = None
        try:
            self._tap = TapReader(self.runtime.tap_path)
        except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: bus.seqlock.NoFences
            log.warning("%s: cannot read the broker's tap (%s); watching through its sockets", self.name, exc)
            for lane in self._lanes.values():
                lane.untap()
            self._pending.extend(self._tap_held)
            self._tap_held.clear()
            return
        if self._tap_timer is None:
            self._tap_timer = self.every(TAP_PERIOD_S, self._read_tap)

    def _read_tap(self) -> None:
        """What the tap took in since the last read, for the handlers whose prefixes it matches."""
        if self._tap is None:
            return
        wants, accept, got = self._tap_wants, self.intake.accept, []
        for head, body in self._tap.read():
            topic = head.partition(b"\0")[0]
            wanted = wants.get(topic)
            if wanted is None:  # bounded by the table: the broker forwards no topic outside it
                name = topic.decode("ascii", "replace")
                wanted = wants[topic] = any(matches(prefix, name) for prefix, _, _ in self._subs)
            if not wanted:
                continue
            msg = accept([head, body])
            if msg is None:
                continue
            if self._snapshot_waiting and msg.topic in _LATCHED:
                self._snapshot_live.add(msg.topic)
            got.append(msg)
        # What came by the socket meanwhile (a reply, a restricted topic) goes in among the tap's by when it
        # was published: a request is in the ring before its reply can be sent, so it is shown first.
        if self._tap_held:
            got = list(heapq.merge(got, self._tap_held, key=_published))
            self._tap_held.clear()
        self._pending.extend(got)
