"""A node's loop: one poll over its lanes, monitors, latch socket, watched descriptors and timers; what
arrives decoded (bus.intake), routed, and handed to the handlers in order."""

from __future__ import annotations

import functools
import logging
import signal
import time
from typing import Callable

import zmq

from bus.envelope import ACK, Message
from bus.errors import BusTimeout
from bus.lane import Lane, recv_frames
from bus.tap import TAP_TOPIC
from bus.timers import earliest
from bus.topics import ANY_NODE, LATCHED, TOPICS, Kind, matches

log = logging.getLogger(__name__)

DRAIN_BATCH = 1000  # messages read from one socket before timers get a turn
BACKLOG_AGE_NS = 1_000_000  # a message older than this on arrival means more are queued behind it
_LATCHED = frozenset(LATCHED)


class Loop:
    """A node's loop (a part of bus.node.Node, which holds the state)."""


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
        wake = earliest(wake, self._retry_held(now))
        if dispatch:
            wake = earliest(wake, self.timers.next_deadline())
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
            wake = earliest(wake, self._admission.due)
        for lane in self._lanes.values():
            if lane.probe_due(now):
                self._send_probe(lane)
            wake = earliest(wake, lane.next_wake())
        if self._snapshot_waiting and self._latch is not None and self._lanes["reliable"].confirmed:
            if now >= self._snapshot_retry_at:
                self._request_snapshot()
            wake = earliest(wake, self._snapshot_retry_at)
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

    def _drain_pending(self) -> None:
        pending, routes = self._pending, self._routes
        before = self.trace
        while pending:
            msg = pending.popleft()
            route = routes.get(msg.topic)
            if route is None:
                route = routes[msg.topic] = self._route_for(msg.topic)
            owner, handlers, from_anyone = route
            if owner is not None and msg.source != owner:
                # The table's owner column, applied once here so that no handler restates it: a message of
                # an owned topic from anyone else reaches only the subscriptions that asked for everyone's.
                if len(from_anyone) != len(handlers):
                    self.intake.not_from_owner(msg, owner)
                handlers = from_anyone
            self.trace = msg.trace  # what the handlers publish is a hop of the same trace (bus.tracing)
            for handler in handlers:
                try:  # _call_handler's work, written out: this runs for every message
                    handler(msg)
                except Exception:
                    self._handler_failed(handler)
        self.trace = before

    def _route_for(self, topic: str) -> tuple[str | None, list[Callable], list[Callable]]:
        """A topic's route: the owner its senders are held to (None: anyone may send it, as for requests,
        which anyone asks, and topics of ANY_NODE), its handlers in the order they subscribed, and those of
        them that take a message from anyone (subscribe's from_anyone: tools that watch all traffic).

        A request or reply reaches a handler only by its own name (serve() subscribes that way) or a tool's
        from_anyone: "audio.mic" names the mic's blocks, and audio.mic.request under it is another's question,
        whose payload a handler of blocks cannot read (assistantd's on_mic raised KeyError 'owner' on it)."""
        spec = TOPICS[topic]
        owner = None if spec.owner == ANY_NODE or spec.kind is Kind.REQUEST else spec.owner
        asks = spec.kind in (Kind.REQUEST, Kind.REPLY)
        handlers = [(h, anyone) for prefix, h, anyone in self._subs
                    if matches(prefix, topic) and (anyone or not asks or prefix == topic)]
        return owner, [h for h, _ in handlers], [h for h, anyone in handlers if anyone]

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
