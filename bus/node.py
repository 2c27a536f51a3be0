"""A node: one process's presence on the bus, and the only API daemons, apps and tools use.

    node = Node("powerd")
    node.subscribe("shell.", on_shell)            # handler(msg: Message)
    node.serve("power.pull.request", on_pull)     # handler(msg) -> dict, or raise RequestRefused
    node.every(1.0, sample)
    node.start()                                  # returns once subscriptions are confirmed and
                                                  # latched state has been delivered
    node.publish("power.state", percent=80.0, ...)
    answer = node.request("shell.focus.request", resource="camera", timeout=1.0)
    node.flush(timeout=5.0)                       # until what was published has left (BusTimeout)
    node.run()                                    # until SIGTERM/SIGINT or node.stop()

Guarantees: a publish is validated against the table before anything is sent;
while the broker is unreachable (not yet up, or restarting) reliable messages
wait in an outbox and are sent in order once the lane is confirmed again,
and the node's latched topics are re-sent unchanged, so a restarted broker
learns the present without anyone publishing anew. What the reliable lane
sent and the broker was not seen to forward (a broker hung, then killed) is
sent again when it is back (bus.lane's marks); node.flush() waits until all
of it has left. Duplicates that this causes are dropped by receivers'
sequence checks. The loop blocks in one
poll until a message, a timer or a signal: an idle node costs no CPU.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import os
import signal
import time
from collections import defaultdict, deque
from typing import Callable

import msgpack
import zmq

from bus import access, keys, sdnotify
from bus.envelope import ACK, MAX_SOURCE_LEN, Message, encode, stamp
from bus.errors import (BusError, BusTimeout, NotOwner, RequestFailed, RequestRefused,
                        RequestTimeout, UnknownTopic)
from bus.intake import Intake
from bus.lane import PUB_LINGER_MS, Lane, recv_frames, send_frames
from bus.slotted import Slotted
from bus.runtime import Runtime
from bus.tap import TAP_TOPIC, TapReader
from bus.timers import Timer, Timers
from bus.topics import ANY_NODE, LANE_HWM, LANES, LATCHED, TOPICS, Kind, Topic, lookup, matches
from bus.wakeup import Wakeup

log = logging.getLogger(__name__)

Handler = Callable[[Message], None]
OUTBOX_MAX = 100_000
# A node that has asked for focus beats this often: a third of the shell's liveness timeout (1 s,
# policies/focus.toml), so one late beat is not yet a death. Only nodes without a key of their own (the
# developer's, shared by many): one with its own key keeps its slow pace, since the broker says the moment
# its last connection goes (bus.departed) and the shell then allows a hang three of its periods, unless
# the shell's reply asks for a faster beat (beat_s: while it holds the camera or the mic).
WATCHED_HEARTBEAT_S = 0.3
CENSUS_MIN_S = 0.1  # a node answers node.census with a beat unless it answered one this recently
SNAPSHOT_RETRY_S = 0.5
DRAIN_BATCH = 1000  # messages read from one socket before timers get a turn
BACKLOG_AGE_NS = 1_000_000  # a message older than this on arrival means more are queued behind it
# While the broker's pipe is full, the outbox is tried again this often (a PUB socket is always
# "writable" to poll, so there is nothing to wait on). Only ever under load: idle nodes never hold.
HELD_RETRY_S = 0.002
# A mark (bus.lane) after this many reliable messages: what is kept to be sent again if the broker dies
# stays this small, and a node that publishes little sends no extra message for it.
MARK_EVERY = 1000
SEND_AGAIN_WITHIN_S = 60.0  # a broker hung this long is long dead: its watchdog kills it far sooner
TAP_PERIOD_S = 0.02  # how often a watching tool reads the tap: 50 wake-ups a second, however busy the bus
_LATCHED = frozenset(LATCHED)


def lanes_for(prefix: str) -> set[str]:
    """The lanes carrying any topic under ``prefix``; UnknownTopic when the table has none."""
    if not prefix:
        return set(LANES)
    lanes = {t.lane for t in TOPICS.values() if matches(prefix, t.name)}
    if not lanes:
        raise UnknownTopic(f"no topic in bus/topics.py matches the prefix {prefix!r}")
    return lanes


class _Call(Slotted):
    __slots__ = ("topic", "reply", "callback", "timer")

    def __init__(self, topic: str):
        self.topic = topic
        self.reply: Message | None = None
        self.callback: Callable[[dict | None, BusError | None], None] | None = None
        self.timer: Timer | None = None


class Node:
    def __init__(self, name: str, runtime: Runtime | str | None = None, *, publish_any: bool = False,
                 heartbeat: float | None = None, key: str | os.PathLike | None = None, watcher: bool = False):
        if not name or len(name) > MAX_SOURCE_LEN or name == ANY_NODE:
            raise ValueError(f"node name must be 1-{MAX_SOURCE_LEN} characters, got {name!r}")
        self.name = name
        self.runtime = runtime if isinstance(runtime, Runtime) else Runtime.resolve(runtime)
        self.publish_any = publish_any  # development tools (lens bus pub) only
        self.watcher = watcher  # development tools that only watch (sniff, top): they read the tap (bus.tap)
        self._key_path = key  # this process's CURVE key (bus.keys says where it is found without one)
        self._key: tuple[keys.KeyPair, bytes] | None = None
        self.heartbeat = heartbeat  # seconds between node.heartbeat; None for tools that come and go
        self._own_pace = heartbeat  # the pace it keeps unless the shell asks for a faster one
        self._beat_timer = None
        self.incarnation = int.from_bytes(os.urandom(8), "little") >> 2  # 62 bits: random per start
        self.intake = Intake(name)
        self.timers = Timers()
        self.handler_errors = 0
        self.outbox_drops = 0
        self.held_back = 0  # times the broker's pipe was full and messages waited in the outbox
        self.sent_again = 0  # messages sent again because the broker died before it was seen to forward them
        self._ctx = zmq.Context()
        self._lanes: dict[str, Lane] = {}
        self._subs: list[tuple[str, Handler]] = []
        self._routes: dict[str, list[Handler]] = {}  # topic -> its handlers, worked out once
        self._servers: dict[str, Callable[[Message], dict | None]] = {}
        self._seq: dict[str, int] = defaultdict(int)
        self._may_publish: dict[str, Topic] = {}
        self._latched_out: dict[str, list[bytes]] = {}
        self._outbox: dict[str, deque] = {"reliable": deque(), "stream": deque(maxlen=LANE_HWM["stream"])}
        self._pending: deque[Message] = deque()
        self._calls: dict[int, _Call] = {}
        self._cids = itertools.count(1)
        self._reply_topics: set[str] = set()
        self._latch: zmq.Socket | None = None
        self._admission = access.LaneAdmission(name, self.runtime, self._keys)
        self._snapshot_prefixes: set[str] = set()
        self._snapshot_id = 0
        self._snapshot_waiting = False
        self._snapshot_retry_at = 0.0
        self._snapshot_live: set[str] = set()
        self._poller: tuple[zmq.Poller, dict] | None = None
        self._fds: dict[int, Callable[[], None]] = {}  # plain file descriptors the loop also waits on
        self._wakeup = Wakeup()
        self._stop = False
        self._started = False
        self._announced = False
        self._closed = False
        self._last_census = -CENSUS_MIN_S  # when it last answered a census
        self._tap: TapReader | None = None
        self._tap_timer: Timer | None = None
        self._tap_wants: dict[bytes, bool] = {}  # topic on the wire -> whether a handler wants it
        self._tap_held: list[Message] = []  # from the socket, waiting to be put in order with the tap's
        if watcher:
            self._listen(TAP_TOPIC)  # asks the broker for the tap (bus.tap)
        if heartbeat:
            self.subscribe("node.census", self._on_census)

    # --- declaring -----------------------------------------------------------
    def subscribe(self, prefix: str, handler: Handler) -> None:
        """Call ``handler(msg)`` for every valid message whose topic is under the dotted ``prefix``."""
        prefix = _normal(prefix)
        self._listen(prefix)
        self._subs.append((prefix, handler))
        self._routes.clear()
        self._tap_wants.clear()

    def unsubscribe(self, prefix: str, handler: Handler) -> None:
        """Undo one subscribe(); the broker stops sending the prefix once no handler wants it (a camera
        app that stops looking stops paying for 30 frames a second)."""
        prefix = _normal(prefix)
        self._subs = [(p, h) for p, h in self._subs if (p, h) != (prefix, handler)]
        self._routes.clear()
        self._tap_wants.clear()
        if not any(p == prefix for p, _ in self._subs):
            for lane_name in lanes_for(prefix):
                if lane_name in self._lanes:
                    self._lanes[lane_name].remove_prefix(prefix)
            # What is published while nobody here listens is no loss when it listens again.
            self.intake.forget(t for t in TOPICS if matches(prefix, t) and t not in self._reply_topics
                               and not any(matches(p, t) for p, _ in self._subs))

    def serve(self, topic: str, handler: Callable[[Message], dict | None]) -> None:
        """Answer requests on ``topic``: return the result dict, or raise RequestRefused(why)."""
        spec = lookup(topic)
        if spec.kind is not Kind.REQUEST:
            raise BusError(f"{topic} is a {spec.kind.value} topic, not a request")
        self._check_owner(spec.reply_topic)
        self._servers[topic] = handler
        self.subscribe(topic, self._on_request)

    def every(self, period: float, callback: Callable[[], None]) -> Timer:
        return self.timers.every(period, callback)

    def after(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.timers.after(delay, callback)

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever ``fd`` is readable (a device, a netlink socket, or a ZeroMQ socket
        of the process's own, level-triggered), in the same loop."""
        self._fds[fd] = callback
        self._poller = None

    def unwatch(self, fd: int) -> None:
        self._fds.pop(fd, None)
        self._poller = None

    # --- talking ---------------------------------------------------------------
    def publish(self, topic: str, **fields) -> None:
        spec = self._may_publish.get(topic) or self._admit(topic)
        if not spec.quick(fields):
            spec.validate(fields)
        seq = self._seq[topic] + 1
        frames = encode(spec, self.name, self.incarnation, seq, fields)
        self._seq[topic] = seq
        if spec.latched:
            self._latched_out[topic] = frames
        lane = self._lanes.get(spec.lane)
        if lane is not None and lane.open:
            try:
                send_frames(lane.pub, frames)
            except zmq.Again:
                self._hold(lane)
            else:
                sent = lane.sent
                if sent is not None:  # _sent(), written out: this runs for every message
                    sent.append(frames)
                    lane.sent_total += 1
                    if lane.sent_total - lane.marked >= MARK_EVERY:
                        self._send_mark(lane)
                return
        self._queue(spec.lane, frames)

    def flush(self, timeout: float = 5.0) -> None:
        """Return once everything published so far has left: out of the outbox, and, on the reliable lane,
        forwarded by the broker (a mark sent after it came back); BusTimeout when not within ``timeout``.
        Handlers are not called meanwhile (their messages wait, in order). A tool that publishes and
        exits, or a benchmark that must know when its burst is out, calls this."""
        self._wait(self._all_left, time.monotonic() + timeout, "what was published to leave")

    def _all_left(self) -> bool:
        for name, lane in self._lanes.items():
            if self._outbox[name] or lane.retry_at is not None:
                return False
            if lane.unconfirmed:
                if lane.open and lane.marked < lane.sent_total or not lane.marks:
                    self._send_mark(lane)  # a mark covering all of it, the last lost with a broker, or none yet
                return False
        return True

    def request(self, topic: str, *, timeout: float = 2.0, **fields) -> dict:
        """Ask the topic's owner and wait for the answer; RequestTimeout or RequestFailed otherwise.

        Messages that arrive meanwhile are kept and handed to their handlers
        afterwards, in order: a handler is never re-entered from here.
        """
        deadline = time.monotonic() + timeout
        cid, call = self._prepare_call(topic)
        self._wait(lambda: self._lanes["reliable"].confirmed, deadline, f"reply subscription for {topic}")
        self.publish(topic, cid=cid, **fields)
        try:
            self._wait(lambda: call.reply is not None, deadline, None)
        except BusTimeout:
            raise RequestTimeout(f"no reply to {topic} from {lookup(topic).owner} within {timeout:g} s") from None
        finally:
            self._calls.pop(cid, None)
        return _result_of(call.reply)

    def request_async(self, topic: str, callback: Callable[[dict | None, BusError | None], None],
                      *, timeout: float = 2.0, **fields) -> int:
        """Ask without waiting; ``callback(result, None)`` or ``callback(None, error)`` runs exactly once."""
        cid, call = self._prepare_call(topic)
        call.callback = callback
        call.timer = self.timers.after(timeout, lambda: self._expire(cid, timeout))
        self.publish(topic, cid=cid, **fields)
        return cid

    # --- running ---------------------------------------------------------------
    @property
    def ready(self) -> bool:
        if not self._started or self._snapshot_waiting:
            return False
        for lane in self._lanes.values():
            if not lane.confirmed:
                return False
        return True

    def start(self, timeout: float = 5.0) -> "Node":
        """Connect and return once every subscription is live and latched state delivered."""
        self._started = True
        if not self._lanes:
            self._lane("reliable")  # even a silent node proves it reached the broker
        self._wait(lambda: self.ready, time.monotonic() + timeout, "the broker's confirmation", dispatch=True)
        return self

    def run(self) -> None:
        """The loop: until stop(), SIGTERM or SIGINT."""
        if not self._started:
            self.start()
        restore = self._install_signals()
        try:
            while not self._stop:
                self.run_once(None)
        finally:
            restore()

    def run_once(self, timeout: float | None = 0.0) -> None:
        """One turn of the loop: wait up to ``timeout`` seconds (None: until something happens)."""
        self._poll(timeout, dispatch=True)

    def stop(self) -> None:
        self._stop = True
        self._wakeup.wake()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stop()
        if self.heartbeat and self._announced:
            self.publish("node.bye", node=self.name, pid=os.getpid())  # the PUB's linger flushes it
        self._flush_held(time.monotonic() + PUB_LINGER_MS / 1000)
        for lane in self._lanes.values():
            lane.close()
        if self._latch is not None:
            self._latch.close(0)
        if self._tap is not None:
            self._tap.close()
        self._ctx.term()
        self._wakeup.close()

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stats(self) -> dict:
        return {
            "node": self.name,
            "ready": self.ready,
            "topics": self.intake.stats(),
            "totals": self.intake.totals(),
            "outbox": sum(len(q) for q in self._outbox.values()),
            "unconfirmed": sum(lane.unconfirmed for lane in self._lanes.values()),
            "sent_again": self.sent_again,
            "outbox_drops": self.outbox_drops,
            "held_back": self.held_back,
            "handler_errors": self.handler_errors,
            **({"tap": {"reading": self._tap is not None,
                        "overruns": self._tap.overruns if self._tap is not None else 0}} if self.watcher else {}),
        }

    # --- internals: subscriptions and sending -------------------------------------
    def _admit(self, topic: str) -> Topic:
        """The row for a topic this node may publish (remembered), or UnknownTopic / NotOwner."""
        spec = lookup(topic)
        if spec.kind is not Kind.REQUEST:  # anyone may ask; the owner answers
            self._check_owner(topic)
        self._may_publish[topic] = spec
        return spec

    def _check_owner(self, topic: str) -> None:
        owner = TOPICS[topic].owner
        if owner not in (ANY_NODE, self.name) and not self.publish_any:
            raise NotOwner(f"{topic} is published by {owner}, not by {self.name} (bus/topics.py)")

    def _listen(self, prefix: str) -> None:
        for lane_name in sorted(lanes_for(prefix)):
            self._lane(lane_name).add_prefix(prefix)
        if prefix not in self._snapshot_prefixes and any(matches(prefix, t) for t in _LATCHED):
            self._snapshot_prefixes.add(prefix)
            self._ensure_latch()
            self._snapshot_waiting = True  # requested once the reliable lane is confirmed

    def _lane(self, name: str) -> Lane:
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = Lane(self._ctx, name, self.identity, watcher=self.watcher)
            self._poller = None
            if self._admission.enter is not None:
                lane.connect(self.runtime, self._admission.enter)
            else:
                self._admission.ask()
                self._ensure_latch()
        return lane

    def _rebuild_lanes(self) -> None:
        """The broker refused a lane's handshake: build every lane anew, with its subscriptions, to connect
        once the broker says how to enter now (bus.access); the outbox keeps what waits to be sent."""
        self._admission.refused()
        old_lanes, self._lanes = self._lanes, {}
        for name, old in old_lanes.items():
            self._send_again(old)
            old.close()
            lane = self._lane(name)
            lane.tapped = old.tapped
            for prefix in sorted(old.prefixes):
                lane.add_prefix(prefix)

    def _keys(self) -> tuple[keys.KeyPair, bytes]:
        """This node's key pair and the broker's public key, read once."""
        if self._key is None:
            self._key = (keys.own_pair(self.runtime, self.name, self._key_path), keys.broker_public(self.runtime))
        return self._key

    @property
    def key_pair(self) -> keys.KeyPair:
        return self._keys()[0]

    @property
    def broker_key(self) -> bytes:
        """The broker's public key, as this node checks the broker with it."""
        return self._keys()[1]

    @property
    def _shared_key(self) -> bool:
        """On the developer's key, shared by many: the bus cannot tell when this node dies."""
        return self.identity != self.name

    @property
    def identity(self) -> str:
        """The name the broker knows this node by (its key's), which subscribers trust over self.name."""
        return self._keys()[0].identity

    def _ensure_latch(self) -> None:
        if self._latch is None:
            self._latch = self._ctx.socket(zmq.DEALER)
            # Requests queue until the broker is there and go the moment it is: each carries an id, and an
            # answer to one retried since, or sent to a broker that died, is ignored.
            self._latch.setsockopt(zmq.LINGER, 0)
            keys.as_client(self._latch, *self._keys())
            self._latch.connect(self.runtime.latch_endpoint)
            self._poller = None

    def _queue(self, lane_name: str, frames: list[bytes]) -> None:
        """Hold a message until its lane is confirmed (creating the lane starts the probing)."""
        self._lane(lane_name)
        outbox = self._outbox[lane_name]
        if outbox.maxlen is None and len(outbox) >= OUTBOX_MAX:
            self.outbox_drops += 1
            if self.outbox_drops == 1 or self.outbox_drops % 10_000 == 0:
                log.error("%s: outbox full while the broker is unreachable or behind; %d messages dropped",
                          self.name, self.outbox_drops)
            return
        outbox.append(frames)

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
                wake = _earliest(wake, lane.retry_at)
        return wake

    def _hold(self, lane: Lane) -> None:
        """The broker's pipe is full (it is busy or stopped): keep messages back, try again shortly."""
        if lane.retry_at is None:
            self.held_back += 1
        lane.open = False
        lane.retry_at = time.monotonic() + HELD_RETRY_S

    def _announce_if_ready(self) -> None:
        """READY=1 (and the watchdog timer) once, the first time every lane and the snapshot are in."""
        if self._announced or not self.ready:
            return
        self._announced = True
        sdnotify.notify("READY=1", f"STATUS={self.name} on the bus")
        period = sdnotify.watchdog_period()
        if period:
            self.timers.every(period, lambda: sdnotify.notify("WATCHDOG=1"))
        if self.heartbeat:
            self._keep_beating()

    def heartbeat_faster(self, period: float) -> None:
        """Beat at least this often from now on (a focus owner, whose silence costs it its focus)."""
        if self.heartbeat and period < self.heartbeat:
            self._set_pace(period)

    def _follow_pace(self, result: dict) -> None:
        """A reply of the shell's that names the pace it now expects (``beat_s``: while this node captures):
        keep it, or go back to this node's own. Nodes on the developer's key keep beating fast."""
        if "beat_s" not in result or not self._own_pace or self._shared_key:
            return
        beat = result["beat_s"]
        if beat is not None and not beat > 0:
            log.warning("%s: a pace of %r s named by the shell ignored", self.name, beat)
            return  # no pace at all, or a beat loop that never sleeps
        self._set_pace(self._own_pace if beat is None else min(self._own_pace, beat))

    def _set_pace(self, period: float) -> None:
        if period == self.heartbeat:
            return
        self.heartbeat = period
        if self._beat_timer is not None:  # announced: say so now, then keep the new pace
            # Slower too: the shell allows silence by the pace it last heard, and would take a slower
            # one's first gap for a hang.
            self._beat_timer.cancel()
            self._keep_beating()

    def _keep_beating(self) -> None:
        """Beat now, then every ``self.heartbeat`` seconds."""
        self._beat()
        self._beat_timer = self.timers.every(self.heartbeat, self._beat)

    def _on_census(self, msg: Message) -> None:
        # At most one answer per census period, however many censuses arrive: no amplifier. Limited by
        # the last answer, not the last beat: a beat sent just before the shell's subscription was live
        # (a boot, where both start together) is one the census's sender never heard.
        now = time.monotonic()
        if self._announced and now - self._last_census > CENSUS_MIN_S:
            self._last_census = now
            self._beat()

    def _beat(self) -> None:
        self.publish("node.heartbeat", node=self.name, pid=os.getpid(), incarnation=self.incarnation,
                     period_s=self.heartbeat)

    # --- internals: the latched snapshot ---------------------------------------------
    def _request_snapshot(self) -> None:
        self._snapshot_id += 1
        self._snapshot_waiting = True
        self._snapshot_live.clear()
        self._snapshot_retry_at = time.monotonic() + SNAPSHOT_RETRY_S
        self._send_latch(msgpack.packb([self._snapshot_id, sorted(self._snapshot_prefixes)]))

    def _send_latch(self, request: bytes) -> None:
        """A question to the broker's latch socket (asked again on its own schedule if it goes nowhere)."""
        try:
            self._latch.send_multipart([b"", request], zmq.NOBLOCK)
        except zmq.Again:
            pass  # the queue to a broker long gone is full
        # A send may consume the edge its file descriptor would have signalled a reply with.
        self._drain_latch()

    def _on_snapshot(self, snapshot_id, items) -> None:
        try:
            if snapshot_id != self._snapshot_id:
                return  # an answer to a request we already retried
            triples = [(bytes(t), bytes(b), bytes(s)) for t, b, s in items]
        except (ValueError, TypeError, msgpack.UnpackException):
            log.warning("%s: malformed snapshot from the broker ignored", self.name)
            return
        present = []
        for topic, body, sender in triples:
            # Anything that arrived live since the request is at least as new as the cache.
            if topic.decode(errors="replace") in self._snapshot_live:
                continue
            msg = self.intake.accept([stamp(topic, sender), body])
            if msg is not None:
                msg.latched = True
                present.append(msg)
        # In the order it came about (the broker keeps it by topic): by the wall clock, which, unlike the
        # monotonic one, a cache kept across a reboot shares with today's.
        present.sort(key=_written)
        self._pending.extend(present)
        self._snapshot_waiting = False
        self._announce_if_ready()

    # --- internals: requests -------------------------------------------------------
    def _prepare_call(self, topic: str) -> tuple[int, _Call]:
        spec = lookup(topic)
        if spec.kind is not Kind.REQUEST:
            raise BusError(f"{topic} is a {spec.kind.value} topic, not a request")
        if spec.reply_topic not in self._reply_topics:
            self._reply_topics.add(spec.reply_topic)
            self._listen(spec.reply_topic)
        if spec.watched and self._shared_key:
            self.heartbeat_faster(WATCHED_HEARTBEAT_S)
        cid = next(self._cids)
        call = self._calls[cid] = _Call(topic)
        return cid, call

    def _on_reply(self, msg: Message) -> None:
        if msg.payload["to"] != self.name:
            return
        call = self._calls.get(msg.payload["cid"])
        if call is None or call.topic != msg.topic[: -len(".reply")] + ".request":
            return  # a late answer to a request that timed out
        call.reply = msg
        if isinstance(msg.payload.get("result"), dict):
            self._follow_pace(msg.payload["result"])
        if call.callback is not None:
            del self._calls[msg.payload["cid"]]
            call.timer.cancel()
            try:
                result, error = _result_of(msg), None
            except RequestFailed as exc:
                result, error = None, exc
            self._call_handler(call.callback, result, error)

    def _expire(self, cid: int, timeout: float) -> None:
        call = self._calls.pop(cid, None)
        if call is not None:
            error = RequestTimeout(f"no reply to {call.topic} from {lookup(call.topic).owner} within {timeout:g} s")
            self._call_handler(call.callback, None, error)

    def _on_request(self, msg: Message) -> None:
        spec = TOPICS[msg.topic]
        cid = msg.payload["cid"]
        try:
            result = self._servers[msg.topic](msg) or {}
            self.publish(spec.reply_topic, to=msg.source, cid=cid, ok=True, result=result)
        except RequestRefused as exc:
            self.publish(spec.reply_topic, to=msg.source, cid=cid, ok=False, error=str(exc) or "refused")
        except Exception as exc:  # a bug in the server must still answer the caller
            self.handler_errors += 1
            log.exception("%s: handler for %s failed", self.name, msg.topic)
            self.publish(spec.reply_topic, to=msg.source, cid=cid, ok=False,
                         error=f"internal error in {self.name}: {type(exc).__name__}: {exc}")

    # --- internals: the loop -----------------------------------------------------------
    def _wait(self, condition: Callable[[], bool], deadline: float, what: str | None,
              dispatch: bool = False) -> None:
        if not self._started:
            self.start(timeout=max(deadline - time.monotonic(), 0.001))
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BusTimeout(f"{self.name}: timed out waiting for {what} from the broker at "
                                 f"{self.runtime.dir} ({self._admission.error or 'is `lens bus broker` running?'})")
            self._poll(remaining, dispatch=dispatch)

    def _poll(self, timeout: float | None, dispatch: bool) -> None:
        if dispatch and self._pending:
            self._drain_pending()
        now = time.monotonic()
        wake = None if timeout is None else now + timeout
        if not self.ready:
            wake = self._keep_connecting(now, wake)
        wake = _earliest(wake, self._retry_held(now))
        if dispatch:
            wake = _earliest(wake, self.timers.next_deadline())
        wait_ms = -1 if wake is None else max(0, int((wake - now) * 1000 + 0.999))
        current = self._get_poller()
        poller, actions = current
        for sock, _ in poller.poll(wait_ms):
            if self._poller is not current:
                break  # an action built the lanes anew, closing sockets polled here; the next poller reads all
            actions[sock]()
        if dispatch:
            if self._pending:
                self._drain_pending()
            self.timers.run_due()

    def _keep_connecting(self, now: float, wake: float | None) -> float | None:
        """Ask how to enter the lanes, probe unconfirmed ones and retry the snapshot; each has deadlines of
        its own."""
        if self._admission.due is not None:
            if now >= self._admission.due:
                self._send_latch(self._admission.question(now))
            wake = _earliest(wake, self._admission.due)
        for lane in self._lanes.values():
            if lane.probe_due(now):
                self._send_probe(lane)
            wake = _earliest(wake, lane.next_wake())
        if self._snapshot_waiting and self._latch is not None and self._lanes["reliable"].confirmed:
            if now >= self._snapshot_retry_at:
                self._request_snapshot()
            wake = _earliest(wake, self._snapshot_retry_at)
        return wake

    def _read_monitor(self, lane: Lane) -> None:
        while (event := lane.read_monitor()) is not None:
            if event == "disconnected":
                log.info("%s: lost the broker on the %s lane; reconnecting", self.name, lane.name)
                self._send_again(lane)
            elif event == "refused" and self._admission.enter is not None:
                log.warning("%s: the broker refused the %s lane's handshake; asking it again how to enter",
                            self.name, lane.name)
                self._rebuild_lanes()
                return  # that lane's monitor is closed

    def _drain_latch(self) -> None:
        """Answers on the latch socket: a snapshot (a list) or how to enter the lanes (a dict)."""
        while True:
            try:
                frames = self._latch.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply_id, answer = msgpack.unpackb(frames[-1])
            except (ValueError, TypeError, msgpack.UnpackException):
                log.warning("%s: malformed answer from the broker's latch socket ignored", self.name)
                continue
            if type(answer) is dict:
                if self._admission.take(reply_id, answer):
                    for lane in self._lanes.values():
                        if not lane.connected:
                            lane.connect(self.runtime, self._admission.enter)
            else:
                self._on_snapshot(reply_id, answer)

    def _drain_lane(self, lane: Lane) -> None:
        """Read what is waiting, up to DRAIN_BATCH messages.

        Every ZeroMQ call costs a system call or two, and those dominate the
        cost of a small message; asking whether more is waiting is such a call.
        So the message's age decides instead: a fresh one means this node is
        keeping up, and it goes back to poll (level-triggered for sockets, so
        nothing waiting is missed); an old one means a backlog, read on until
        zmq.Again. Publishers share this machine's monotonic clock.
        """
        sock = lane.sub
        for _ in range(DRAIN_BATCH):
            try:
                frames = recv_frames(sock)
            except zmq.Again:
                return
            if frames[0][:1] == ACK:  # the broker's answer to a marker (bus.lane); an old round's is late
                if frames[0] == lane.marker:
                    lane.acked = True
                    if lane.answered():
                        self._on_lane_confirmed(lane)
                continue
            msg = self.intake.accept(frames)
            if msg is None:
                continue
            self._route(lane, msg)
            if time.monotonic_ns() - msg.mono_ns < BACKLOG_AGE_NS:
                return

    def _route(self, lane: Lane, msg: Message) -> None:
        """Probes and replies are the node's own business; everything else waits for the handlers."""
        topic = msg.topic
        if topic == lane.probe_topic:
            if msg.payload["node"] == self.name:
                if msg.payload["nonce"] == lane.nonce and not lane.probed:
                    lane.probed = True
                    if lane.answered():
                        self._on_lane_confirmed(lane)
                elif lane.marks:
                    lane.mark_returned(msg.payload["nonce"])
            return
        if topic == TAP_TOPIC and self.watcher:
            self._open_tap()
        if self._snapshot_waiting and topic in _LATCHED:
            self._snapshot_live.add(topic)
        if topic in self._reply_topics:
            self._on_reply(msg)
        elif self._tap is not None:
            self._tap_held.append(msg)
        else:
            self._pending.append(msg)

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
        except (OSError, ValueError) as exc:
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
                wanted = wants[topic] = any(matches(prefix, name) for prefix, _ in self._subs)
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

    def _drain_pending(self) -> None:
        pending, routes = self._pending, self._routes
        while pending:
            msg = pending.popleft()
            handlers = routes.get(msg.topic)
            if handlers is None:
                handlers = routes[msg.topic] = [h for prefix, h in self._subs if matches(prefix, msg.topic)]
            for handler in handlers:
                try:  # _call_handler's work, written out: this runs for every message
                    handler(msg)
                except Exception:
                    self._handler_failed(handler)

    def _call_handler(self, handler: Callable, *args) -> None:
        try:
            handler(*args)
        except Exception:
            self._handler_failed(handler)

    def _handler_failed(self, handler: Callable) -> None:
        """One handler's bug must not stop the node: it is logged (with the exception) and counted."""
        self.handler_errors += 1
        log.exception("%s: handler %s failed", self.name, getattr(handler, "__qualname__", handler))

    def _get_poller(self) -> tuple[zmq.Poller, dict]:
        """The poller and, for each thing it watches, what to do when it is readable."""
        if self._poller is None:
            actions: dict = {}
            for lane in self._lanes.values():
                actions[lane.sub] = functools.partial(self._drain_lane, lane)
                # Rare events, watched through the sockets' own file descriptors: a
                # socket in zmq_poll costs system calls on every poll, a plain fd none.
                # Such an fd is edge-triggered, hence each action reads until zmq.Again.
                actions[lane.monitor.getsockopt(zmq.FD)] = functools.partial(self._read_monitor, lane)
            if self._latch is not None:
                actions[self._latch.getsockopt(zmq.FD)] = self._drain_latch
            actions[self._wakeup.fileno()] = self._wakeup.drain
            zmq_fds = [fd for fd in actions if type(fd) is int and fd != self._wakeup.fileno()]
            for fd, callback in self._fds.items():
                actions[fd] = functools.partial(self._call_handler, callback)
            poller = zmq.Poller()
            for pollable in actions:
                poller.register(pollable, zmq.POLLIN)
            self._poller = (poller, actions)
            # A ZeroMQ fd signals only once its socket has been found empty: read
            # each now, or an event queued since it was created would never wake us.
            for fd in zmq_fds:
                actions[fd]()
        return self._poller

    def _install_signals(self) -> Callable[[], None]:
        def on_signal(signum: int) -> None:
            log.info("%s: %s, stopping", self.name, signal.Signals(signum).name)
            self._stop = True
        return self._wakeup.on_signals(on_signal)


def _published(msg: Message) -> int:
    return msg.mono_ns


def _written(msg: Message) -> int:
    return msg.wall_ns


def _earliest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _normal(prefix: str) -> str:
    prefix = prefix.strip()
    return "" if prefix in ("", "*") else prefix.rstrip(".")


def _result_of(reply: Message) -> dict:
    payload = reply.payload
    if not payload["ok"]:
        owner = reply.source
        raise RequestFailed(f"{reply.topic[:-len('.reply')]}.request refused by {owner}: {payload['error']}")
    return payload.get("result") or {}
