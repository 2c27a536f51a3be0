"""What a node sends, kept until it has left: the outbox while the broker is away or its pipe is full, the
marks that say the broker forwarded what the reliable lane sent, and sending again what a broker that died
took with it (bus.lane says how marks work)."""

from __future__ import annotations

import logging
import time

import msgpack
import zmq

from bus.envelope import encode
from bus.lane import Lane, send_frames
from bus.timers import earliest
from bus.topics import TOPICS

log = logging.getLogger(__name__)

OUTBOX_MAX = 100_000
# While the broker's pipe is full, the outbox is tried again this often (a PUB socket is always
# "writable" to poll, so there is nothing to wait on). Only ever under load: idle nodes never hold.
HELD_RETRY_S = 0.002
# A mark (bus.lane) after this many reliable messages: what is kept to be sent again if the broker dies
# stays this small, and a node that publishes little sends no extra message for it.
MARK_EVERY = 1000
SEND_AGAIN_WITHIN_S = 60.0  # a broker hung this long is long dead: its watchdog kills it far sooner


class Outbox:
    """Node's sending side (a part of bus.node.Node, which holds the state)."""


    def _all_left(self) -> bool:
        for name, lane in self._lanes.items():
            if self._outbox[name] or lane.retry_at is not None:
                return False
            if lane.unconfirmed:
                if lane.open and lane.marked < lane.sent_total or not lane.marks:
                    self._send_mark(lane)  # a mark covering all of it, the last lost with a broker, or none yet
                return False
        return True

    def _queue(self, lane_name: str, frames: list[bytes]) -> None:
        """Hold a message until its lane is confirmed (creating the lane starts the probing)."""
        self._lane(lane_name)
        outbox = self._outbox[lane_name]
        if outbox.maxlen is None and len(outbox) >= OUTBOX_MAX:
            # Accepted and never to be delivered: counted, logged, and said on the bus (node.lost) once this
            # node is back on it, for the shell's count and whoever watches.
            self.lost += 1
            self._unsaid_lost += 1
            if self.lost == 1 or self.lost % 10_000 == 0:
                log.error("%s: outbox full while the broker is unreachable or behind; %d messages lost",
                          self.name, self.lost)
            return
        outbox.append(frames)

    def _tell_lost(self) -> None:
        if self._unsaid_lost:
            self.publish("node.lost", node=self.name, messages=self._unsaid_lost,
                         why=f"the outbox was full ({OUTBOX_MAX} held while the broker was away or behind)")
            self._unsaid_lost = 0

    def _send_probe(self, lane: Lane) -> None:
        spec = TOPICS[lane.probe_topic]
        self._seq[spec.name] += 1
        payload = {"node": self.name, "nonce": lane.nonce}
        try:
            send_frames(lane.pub, encode(spec, self.name, self.incarnation, self._seq[spec.name], payload))
        except zmq.Again:
            pass  # the pipe is full: the probe goes again on its own schedule

    def _on_lane_confirmed(self, lane: Lane) -> None:
        lane.confirmed = True
        outbox = self._outbox[lane.name]
        held = {frames[0] for frames in outbox}
        # Re-send the present of every latched topic we own: a restarted broker has lost it.
        outbox.extend(frames for topic, frames in self._latched_out.items()
                      if TOPICS[topic].lane == lane.name and frames[0] not in held)
        self._flush(lane)
        if lane.name == "reliable":
            self._tell_lost()
        if lane.name == "reliable" and self._snapshot_prefixes:
            self._request_snapshot()
        self._announce_if_ready()

    def _flush(self, lane: Lane) -> None:
        """Send what the outbox holds, in order, until the broker's pipe is full again (then hold on)."""
        outbox = self._outbox[lane.name]
        while outbox:
            try:
                send_frames(lane.pub, outbox[0])
            except zmq.Again:
                self._hold(lane)
                return
            self._sent(lane, outbox.popleft())
        lane.open, lane.retry_at = lane.confirmed, None

    def _sent(self, lane: Lane, frames: list[bytes]) -> None:
        """Keep what the reliable lane sent until a mark says the broker forwarded it (bus.lane)."""
        if lane.sent is not None:
            lane.sent.append(frames)
            lane.sent_total += 1
            if lane.sent_total - lane.marked >= MARK_EVERY:
                self._send_mark(lane)

    def _send_mark(self, lane: Lane) -> None:
        if not lane.open and not lane.confirmed:
            return  # confirming the lane again sends everything, then a mark may follow
        spec = TOPICS[lane.probe_topic]
        self._seq[spec.name] += 1
        payload = {"node": self.name, "nonce": lane.new_mark()}
        try:
            send_frames(lane.pub, encode(spec, self.name, self.incarnation, self._seq[spec.name], payload))
        except zmq.Again:
            lane.marks.clear()  # the pipe is full: the next message or flush() marks again
            lane.marked = 0

    def _send_again(self, lane: Lane) -> None:
        """The broker went away: what it was not seen to forward goes first when the lane is back, unless it
        is older than a hung broker lives (the watchdog kills one far sooner): that, it forwarded long ago."""
        items = lane.take_unforwarded()
        if not items:
            return
        oldest = time.monotonic_ns() - int(SEND_AGAIN_WITHIN_S * 1e9)
        # Not a loss: an idle node marks rarely (every MARK_EVERY messages), so what it sent minutes ago is
        # still unconfirmed, though a broker that lived that long forwarded it then.
        again = [frames for frames in items if msgpack.unpackb(frames[1])[4] >= oldest]
        if again:
            self.sent_again += len(again)
            self._outbox[lane.name].extendleft(reversed(again))
            log.info("%s: %d messages the broker was not seen to forward go again once it is back",
                     self.name, len(again))

    def _flush_held(self, deadline: float) -> None:
        """What full pipes held back goes out before the sockets close, as the PUB's linger lets what is
        queued in it go: until the broker takes it all or the deadline."""
        while (next_try := self._retry_held(time.monotonic())) is not None and next_try < deadline:
            time.sleep(max(0.0, next_try - time.monotonic()))

    def _retry_held(self, now: float) -> float | None:
        """Try again, where it is time, what full pipes held back; when to try next (None: nothing held)."""
        wake = None
        for lane in self._lanes.values():
            if lane.retry_at is not None:  # confirmed (unconfirm() clears it; confirming flushes anyway)
                if now >= lane.retry_at:
                    self._flush(lane)
                wake = earliest(wake, lane.retry_at)
        return wake

    def _hold(self, lane: Lane) -> None:
        """The broker's pipe is full (it is busy or stopped): keep messages back, try again shortly."""
        if lane.retry_at is None:
            self.held_back += 1
        lane.open = False
        lane.retry_at = time.monotonic() + HELD_RETRY_S
