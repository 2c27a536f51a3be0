"""One lane of a node's connection to the broker: a PUB and a SUB socket and a monitor.

A lane is *confirmed* when two things came back. The broker's answer to a
marker subscription (``ACK``, this round's nonce in it), which the broker
sends when it applies that subscription: a socket's subscriptions reach the
broker in the order they were made, so every earlier one is applied by then.
And a probe the node published on the lane, back through the broker to its
own SUB socket: the publish path is open. Readiness without sleep(). A probe
alone proved nothing of the subscriptions: the broker may forward it before
it has read the subscriptions sent just before, and an old probe
subscription lets it through. When a monitor reports a disconnect (broker
restarted), the lane is unconfirmed and both are asked for again; on
reconnecting, a SUB sends its subscriptions in byte order, and the marker's
first byte sorts after every other's.

A lane connects only once the node knows how to enter it (bus.access: with a
pass, or sealed); until then its subscriptions wait in its SUB socket, and
what it publishes in the node's outbox. A handshake the broker refuses is
reported, for the node to ask again and build the lane anew.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from typing import Callable

import zmq

from bus.envelope import ACK, BODY_START, CHANNEL, PERSONAL, STATS_WANTED, TRACED_START, channel, presence, stamp
from bus.runtime import Runtime
from bus.tap import TAP_TOPIC
from bus.topics import LANE_HWM, TOPICS, matches

# A monitor message's first frame: event (u16) and value (i32). Unpacked here rather than with
# zmq.utils.monitor, which imports zmq.asyncio and with it asyncio and ssl: 8 MiB in every process.
_MONITOR_EVENT = struct.Struct("=Hi")
_REFUSED = int(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
               | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)  # the broker did not let the lane in

PROBE_TOPIC = {"reliable": "bus.probe", "stream": "bus.probe.stream"}
PROBE_FIRST_S = 0.001
PROBE_MAX_S = 0.25
RECONNECT_IVL_MS = 50
RECONNECT_IVL_MAX_MS = 500
PUB_LINGER_MS = 2000  # flush what is queued on a clean shutdown

# Plain ints: pyzmq's Flag enums cost microseconds per message in `|` and conversions.
_SNDMORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = _SNDMORE | _NOBLOCK


# pyzmq's C send itself: the Python method in front of it (routing ids, groups) costs a third of a
# microsecond a frame. recv has no such wrapper.
c_send = zmq.backend.Socket.send


def send_frames(sock: zmq.Socket, frames: list[bytes]) -> None:
    """send_multipart for the two-frame envelope, without its per-frame flag arithmetic; zmq.Again when
    the reliable lane's pipe to the broker is full (nothing was sent: libzmq judges a message by its first
    frame, and once that is in, the rest of it goes in too)."""
    c_send(sock, frames[0], _SNDMORE_NOBLOCK)
    c_send(sock, frames[1])


def recv_frames(sock: zmq.Socket) -> list[bytes]:
    """The next message's frames, as recv_multipart(NOBLOCK) would give them; zmq.Again when none waits.

    A node's SUB hears only the broker, which sends two-frame messages and
    nothing else (it refuses any other count from publishers). So the two
    frames are read without asking between them whether more follow: that
    question is a getsockopt, as dear as a read (a Frame's own flag, the
    other way to know, costs an object per frame). A count gone wrong shows
    in the second frame, which is then no envelope body (bus.envelope's
    array of seven or eight): the rest of that message is read off with it, to be
    refused whole, and the next one starts on its first frame again.
    """
    head = sock.recv(_NOBLOCK)
    try:
        body = sock.recv(_NOBLOCK)
    except zmq.Again:  # a lone frame, last in the queue
        return [head]
    first = body[:1]
    if first == BODY_START or first == TRACED_START:
        return [head, body]
    frames = [head, body]
    while sock.getsockopt(zmq.RCVMORE):
        frames.append(sock.recv(_NOBLOCK))
    return frames


class Lane:
    def __init__(self, ctx: zmq.Context, name: str, identity: str, watcher: bool = False):
        self.name = name
        self.watcher = watcher  # a tool that only watches: it reads the tap, or is served last (_wire_prefixes)
        self.tapped = watcher
        self.probe_topic = PROBE_TOPIC[name]
        hwm = LANE_HWM[name]
        self.pub = ctx.socket(zmq.PUB)
        self.sub = ctx.socket(zmq.SUB)
        for sock in (self.pub, self.sub):
            sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        self.pub.setsockopt(zmq.SNDHWM, hwm)
        if name == "reliable":
            # A PUB drops silently at its high-water mark, and libzmq learns how far its reader got only
            # every HWM-1024 messages: a burst of a few thousand can meet a 'full' pipe of 100,000. Here
            # a full pipe says zmq.Again instead, and the node holds the rest in its outbox (bus.node).
            # The stream lane drops as it should: an old frame is worth nothing.
            self.pub.setsockopt(zmq.XPUB_NODROP, 1)
        self.pub.setsockopt(zmq.LINGER, PUB_LINGER_MS)
        self.sub.setsockopt(zmq.RCVHWM, hwm)
        self.sub.setsockopt(zmq.LINGER, 0)
        # The SUB side's monitor is enough: both sockets talk to the same broker
        # process, and a probe sent before the PUB side reconnects is simply retried.
        self.monitor = self.sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
                                                   | _REFUSED)
        self.connected = False
        self._identity = identity.encode()
        self._own_channel = channel(self._identity, b"")
        # Never unsubscribed while the socket lives: when the last of an identity's goes, the broker says so.
        self.sub.setsockopt(zmq.SUBSCRIBE, presence(self._identity))
        # Its own probes only, as the broker stamps them (bus.envelope): a probe is this lane's question to
        # itself, and another node's are nobody else's business (every node hearing every probe was one
        # message per node per probe, and their gaps while the broker was away read as losses).
        self.sub.setsockopt(zmq.SUBSCRIBE, stamp(self.probe_topic.encode(), self._identity))
        self.prefixes: set[str] = set()
        self.confirmed = False
        self.acked = False  # the broker answered this round's marker: it applied every subscription before it
        self.probed = False  # this round's probe came back: what the lane publishes reaches the broker
        self.marker: bytes | None = None
        self.open = False  # confirmed, and nothing held back: publish may send at once
        self.retry_at: float | None = None  # while the broker's pipe is full: when to try again
        self.nonce = 0
        self.next_probe = 0.0
        self._backoff = PROBE_FIRST_S
        # What the reliable lane sent that the broker has not yet been seen to forward: sent again if the
        # broker dies (receivers drop what they had by its sequence). A mark is a probe whose return says
        # the broker forwarded everything sent before it: the broker reads a publisher's pipe in order.
        self.sent: deque[list[bytes]] | None = deque() if name == "reliable" else None
        self.sent_total = 0  # messages ever put in `sent`
        self.marked = 0  # sent_total when the last mark went out
        self.marks: dict[int, int] = {}  # a mark's nonce -> sent_total when it went out
        self.unconfirm()  # the first round's marker

    @property
    def unconfirmed(self) -> int:
        return len(self.sent) if self.sent is not None else 0

    def new_mark(self) -> int:
        """The nonce of a mark to send now, covering everything sent so far."""
        nonce = int.from_bytes(os.urandom(6), "little")
        self.marks[nonce] = self.marked = self.sent_total
        return nonce

    def mark_returned(self, nonce: int) -> bool:
        """A mark came back: what was sent before it has been forwarded; False when it is no mark of ours."""
        total = self.marks.pop(nonce, None)
        if total is None:
            return False
        for _ in range(total - (self.sent_total - len(self.sent))):
            self.sent.popleft()
        self.marks = {n: t for n, t in self.marks.items() if t > total}
        return True

    def take_unforwarded(self) -> list[list[bytes]]:
        """The broker went away: what it was not seen to forward, oldest first, to be sent again."""
        if self.sent is None:
            return []
        items = list(self.sent)
        self.sent.clear()
        self.marks.clear()
        self.marked = self.sent_total
        return items

    def connect(self, runtime: Runtime, enter: Callable[[zmq.Socket], None]) -> None:
        """Connect both sockets, each first made ready by ``enter`` to be let in (bus.access.enter)."""
        for sock in (self.pub, self.sub):
            enter(sock)
        self.pub.connect(runtime.publish_endpoint(self.name))
        self.sub.connect(runtime.subscribe_endpoint(self.name))
        self.connected = True
        self._probe_now()  # the probes so far went nowhere

    def add_prefix(self, prefix: str) -> bool:
        """Subscribe (once per prefix); True when it is new and the lane needs re-confirming."""
        if prefix in self.prefixes:
            return False
        self.prefixes.add(prefix)
        for wire in self._wire_prefixes(prefix):
            self.sub.setsockopt(zmq.SUBSCRIBE, wire)
        self.unconfirm()  # a new marker, after them
        return True

    def remove_prefix(self, prefix: str) -> None:
        """Stop receiving a prefix (nothing to confirm: at worst a few more arrive, and are not routed)."""
        if prefix in self.prefixes:
            self.prefixes.discard(prefix)
            for wire in self._wire_prefixes(prefix):
                self.sub.setsockopt(zmq.UNSUBSCRIBE, wire)

    def _wire_prefixes(self, prefix: str) -> list[bytes]:
        """The prefix, and this node's own channel of each personal topic under it (broker.gate).

        A watcher reading the tap (bus.tap) takes only its own channels from the broker's socket: what
        everyone may hear, it reads from the ring. One that cannot read the ring subscribes to each topic
        under the prefix with the NUL that follows every topic on the wire (the broker's stamp), one byte
        deeper than any process subscribes: the broker's XPUB matches its subscriptions shallow first and
        writes each message to the pipes in that order, so the processes that wait on it come first."""
        raw = prefix.encode()
        own = [self._own_channel + topic for topic in PERSONAL if topic.startswith(raw)]
        if not self.watcher or prefix == TAP_TOPIC:
            return [raw] + own
        # Neither the tap's reader nor a deep subscription tells the broker that someone wants its stats.
        wanted = [STATS_WANTED] if self.name == TOPICS["bus.broker.stats"].lane and \
            matches(prefix, "bus.broker.stats") else []
        return ([] if self.tapped else self._deep(prefix)) + own + wanted

    def _deep(self, prefix: str) -> list[bytes]:
        return [topic.wire + CHANNEL for topic in TOPICS.values() if topic.lane == self.name
                and topic.wire not in PERSONAL and matches(prefix, topic.name)]

    def untap(self) -> None:
        """The tap cannot be read: hear what everyone may hear through the broker's socket instead."""
        if self.tapped:
            self.tapped = False
            for prefix in self.prefixes - {TAP_TOPIC}:
                for wire in self._deep(prefix):
                    self.sub.setsockopt(zmq.SUBSCRIBE, wire)
            self.unconfirm()  # ready again once they are live

    def unconfirm(self) -> None:
        self.confirmed = self.open = self.acked = self.probed = False
        self.retry_at = None  # held messages wait for the confirmation, which sends them
        self.nonce = int.from_bytes(os.urandom(6), "little")
        old, self.marker = self.marker, ACK + self._identity + CHANNEL + self.nonce.to_bytes(6, "little")
        if old is not None:
            self.sub.setsockopt(zmq.UNSUBSCRIBE, old)
        self.sub.setsockopt(zmq.SUBSCRIBE, self.marker)
        self._probe_now()

    def _probe_now(self) -> None:
        """Probe at the next turn, then at the probes' quickest pace again."""
        self.next_probe, self._backoff = 0.0, PROBE_FIRST_S

    def probe_due(self, now: float) -> bool:
        """Whether to send a probe now. Until the broker has answered the marker too, this also asks it
        again, on the probes' schedule: an answer dropped (a subscriber far behind) must not strand the lane."""
        if self.confirmed or now < self.next_probe:
            return False
        self.next_probe = now + self._backoff
        self._backoff = min(self._backoff * 2, PROBE_MAX_S)
        if self.probed and not self.acked:
            self.sub.setsockopt(zmq.UNSUBSCRIBE, self.marker)
            self.sub.setsockopt(zmq.SUBSCRIBE, self.marker)
        return not self.probed

    def answered(self) -> bool:
        """Both halves came back this round and the lane is not yet confirmed: confirm it now."""
        return self.acked and self.probed and not self.confirmed

    def read_monitor(self) -> str | None:
        """'connected', 'disconnected' or 'refused' (the handshake failed) for one pending monitor event,
        None when there is none."""
        try:
            event = _MONITOR_EVENT.unpack_from(self.monitor.recv_multipart(zmq.NOBLOCK)[0])[0]
        except zmq.Again:
            return None
        if event & _REFUSED:
            return "refused"
        if event == zmq.EVENT_DISCONNECTED:
            self.unconfirm()
            return "disconnected"
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED and not self.confirmed:
            self._probe_now()  # the broker is back, and has let the lane in
        return "connected"

    def next_wake(self) -> float | None:
        return None if self.confirmed else self.next_probe

    def close(self) -> None:
        self.sub.disable_monitor()
        self.monitor.close(0)
        self.pub.close()
        self.sub.close()
