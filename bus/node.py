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
a handler hears a topic of the table's from that topic's owner only (anyone
may ask a request or say a topic of ANY_NODE), whatever the broker let
through, so no handler checks msg.source against the table (subscribe);
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

import itertools
import os
import time
from collections import defaultdict, deque
from typing import Callable

import zmq

from bus import access, keys
from bus.calls import Call, Calls, result_of
from bus.envelope import MAX_SOURCE_LEN, Message, encode
from bus.errors import BusError, BusTimeout, RequestTimeout
from bus.intake import Intake
from bus.lane import PUB_LINGER_MS, Lane, send_frames
from bus.lanes import Lanes, lanes_for
from bus.latch import Latch
from bus.loop import Loop
from bus.outbox import MARK_EVERY, Outbox
from bus.pace import CENSUS_MIN_S, Pace
from bus.runtime import Runtime
from bus.tap import TAP_TOPIC, TapReader
from bus.timers import Timer, Timers
from bus.topics import ANY_NODE, LANE_HWM, TOPICS, Kind, Topic, lookup, matches
from bus.tracing import Tracing, new_trace
from bus.wakeup import Wakeup
from bus.watching import Watching

Handler = Callable[[Message], None]
__all__ = ["Node", "Handler", "lanes_for"]


class Node(Lanes, Outbox, Pace, Latch, Calls, Loop, Watching, Tracing):
    """The public API (this module's docstring); each of its jobs is a module of its own, whose part of the
    class it inherits: bus.lanes (lanes, keys, what it may publish), bus.outbox (sending, marks, sending
    again), bus.pace (READY, the watchdog, the heartbeat), bus.latch (how to enter, the latched snapshot),
    bus.calls (request and reply), bus.loop (the poll loop and dispatch), bus.watching (the tap),
    bus.tracing (the trace its work belongs to). The state they share is all set here, in __init__."""

    def __init__(self, name: str, runtime: Runtime | str | None = None, *, publish_any: bool = False,
                 heartbeat: float | None = None, key: str | os.PathLike | None = None, watcher: bool = False):
        if not name or len(name) > MAX_SOURCE_LEN or name == ANY_NODE:
            raise ValueError(f"node name must be 1-{MAX_SOURCE_LEN} characters, got {name!r}")
        self.name = name
        self.runtime = runtime if isinstance(runtime, Runtime) else Runtime.resolve(runtime)
        self.publish_any = publish_any  # development tools (lens bus pub) only
        self.watcher = watcher  # development tools that only watch (sniff, top): they read the tap (bus.tap)
        self.start_timeout = 5.0  # how long start() waits for the broker by default (bus.service: longer)
        self._key_path = key  # this process's CURVE key (bus.keys says where it is found without one)
        self._key: tuple[keys.KeyPair, bytes] | None = None
        self.heartbeat = heartbeat  # seconds between node.heartbeat; None for tools that come and go
        self._own_pace = heartbeat  # the pace it keeps unless the shell asks for a faster one
        self._beat_timer = None
        self.incarnation = int.from_bytes(os.urandom(8), "little") >> 2  # 62 bits: random per start
        self.intake = Intake(name)
        self.timers = Timers()
        self.handler_errors = 0
        self.trace = 0  # the trace what it publishes now is a hop of (bus.tracing); 0: none
        self.lost = 0  # messages accepted and never delivered (bus.outbox: its outbox full)
        self._unsaid_lost = 0  # of those, how many are still to be said on node.lost
        self.held_back = 0  # times the broker's pipe was full and messages waited in the outbox
        self.sent_again = 0  # messages sent again because the broker died before it was seen to forward them
        self._ctx = zmq.Context()
        self._lanes: dict[str, Lane] = {}
        self._subs: list[tuple[str, Handler, bool]] = []  # (prefix, handler, from anyone)
        self._routes: dict[str, tuple] = {}  # topic -> its owner to hold senders to and handlers (bus.loop)
        self._servers: dict[str, Callable[[Message], dict | None]] = {}
        self._seq: dict[str, int] = defaultdict(int)
        self._may_publish: dict[str, Topic] = {}
        self._latched_out: dict[str, list[bytes]] = {}
        self._outbox: dict[str, deque] = {"reliable": deque(), "stream": deque(maxlen=LANE_HWM["stream"])}
        self._pending: deque[Message] = deque()
        self._calls: dict[int, Call] = {}
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

    def subscribe(self, prefix: str, handler: Handler, *, from_anyone: bool = False) -> None:
        """Call ``handler(msg)`` for every valid message whose topic is under the dotted ``prefix`` and whose
        verified sender is the topic's owner in the table (anyone, for requests and topics of ANY_NODE); the
        rest are dropped and counted (stats: not_owner), so a handler never checks ``msg.source`` against
        the table. ``from_anyone``: every message, whoever sent it, for tools that watch all traffic (sniff,
        record); the broker lets only the developer's key speak as another (broker.gate)."""
        prefix = _normal(prefix)
        self._listen(prefix)
        self._subs.append((prefix, handler, from_anyone))
        self._routes.clear()
        self._tap_wants.clear()

    def unsubscribe(self, prefix: str, handler: Handler) -> None:
        """Undo one subscribe(); the broker stops sending the prefix once no handler wants it (a camera
        app that stops looking stops paying for 30 frames a second)."""
        prefix = _normal(prefix)
        self._subs = [(p, h, anyone) for p, h, anyone in self._subs if (p, h) != (prefix, handler)]
        self._routes.clear()
        self._tap_wants.clear()
        if not any(p == prefix for p, _, _ in self._subs):
            for lane_name in lanes_for(prefix):
                if lane_name in self._lanes:
                    self._lanes[lane_name].remove_prefix(prefix)
            # What is published while nobody here listens is no loss when it listens again.
            self.intake.forget(t for t in TOPICS if matches(prefix, t) and t not in self._reply_topics
                               and not any(matches(p, t) for p, _, _ in self._subs))

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
        """``callback()`` once, ``delay`` seconds from now, as a hop of the current trace (bus.tracing)."""
        return self.timers.after(delay, self.carry(callback))

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever ``fd`` is readable (a device, a netlink socket, or a ZeroMQ socket
        of the process's own, level-triggered), in the same loop."""
        self._fds[fd] = callback
        self._poller = None

    def unwatch(self, fd: int) -> None:
        self._fds.pop(fd, None)
        self._poller = None

    def publish(self, topic: str, **fields) -> None:
        spec = self._may_publish.get(topic) or self._admit(topic)
        if not spec.quick(fields):
            spec.validate(fields)
        seq = self._seq[topic] + 1
        trace = self.trace or (new_trace() if spec.starts_trace else 0)  # a root where the table says so
        frames = encode(spec, self.name, self.incarnation, seq, fields, trace)
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
        return result_of(call.reply)

    def request_async(self, topic: str, callback: Callable[[dict | None, BusError | None], None],
                      *, timeout: float = 2.0, **fields) -> int:
        """Ask without waiting; ``callback(result, None)`` or ``callback(None, error)`` runs exactly once."""
        cid, call = self._prepare_call(topic)
        call.callback = callback
        call.timer = self.timers.after(timeout, self.carry(lambda: self._expire(cid, timeout)))
        self.publish(topic, cid=cid, **fields)
        return cid

    @property
    def ready(self) -> bool:
        if not self._started or self._snapshot_waiting:
            return False
        for lane in self._lanes.values():
            if not lane.confirmed:
                return False
        return True

    def start(self, timeout: float | None = None) -> "Node":
        """Connect and return once every subscription is live and latched state delivered: within
        ``timeout`` seconds, else ``start_timeout``, else BusTimeout is raised."""
        timeout = self.start_timeout if timeout is None else timeout
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
            "lost": self.lost,
            "held_back": self.held_back,
            "handler_errors": self.handler_errors,
            **({"tap": {"reading": self._tap is not None,
                        "overruns": self._tap.overruns if self._tap is not None else 0}} if self.watcher else {}),
        }


def _normal(prefix: str) -> str:
    prefix = prefix.strip()
    return "" if prefix in ("", "*") else prefix.rstrip(".")
