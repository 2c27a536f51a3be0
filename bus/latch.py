"""A node's latch socket to the broker: how to enter the lanes (bus.access), and the latched snapshot, the
present of every latched topic it subscribes to, asked once its reliable lane is confirmed."""

from __future__ import annotations

import logging
import time

import msgpack
import zmq

from bus import keys
from bus.envelope import Message, stamp

log = logging.getLogger(__name__)

SNAPSHOT_RETRY_S = 0.5


class Latch:
    """A node's latch socket (a part of bus.node.Node, which holds the state)."""


    def _ensure_latch(self) -> None:
        if self._latch is None:
            self._latch = self._ctx.socket(zmq.DEALER)
            # Requests queue until the broker is there and go the moment it is: each carries an id, and an
            # answer to one retried since, or sent to a broker that died, is ignored.
            self._latch.setsockopt(zmq.LINGER, 0)
            keys.as_client(self._latch, *self._keys())
            self._latch.connect(self.runtime.latch_endpoint)
            self._poller = None

    def _send_latch(self, request: bytes) -> None:
        """A question to the broker's latch socket (asked again on its own schedule if it goes nowhere)."""
        try:
            self._latch.send_multipart([b"", request], zmq.NOBLOCK)
        except zmq.Again:
            pass  # the queue to a broker long gone is full
        # A send may consume the edge its file descriptor would have signalled a reply with.
        self._drain_latch()

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

    def _request_snapshot(self) -> None:
        self._snapshot_id += 1
        self._snapshot_waiting = True
        self._snapshot_live.clear()
        self._snapshot_retry_at = time.monotonic() + SNAPSHOT_RETRY_S
        self._send_latch(msgpack.packb([self._snapshot_id, sorted(self._snapshot_prefixes)]))

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
            msg = self.intake.accept([stamp(topic, sender), body], cached=True)
            if msg is not None:
                msg.latched = True
                present.append(msg)
        # In the order it came about (the broker keeps it by topic): by the wall clock, which, unlike the
        # monotonic one, a cache kept across a reboot shares with today's.
        present.sort(key=_written)
        self._pending.extend(present)
        self._snapshot_waiting = False
        self._announce_if_ready()


def _written(msg: Message) -> int:
    return msg.wall_ns
