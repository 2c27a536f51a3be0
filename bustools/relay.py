"""`lens bus bridge --connect`: the glasses' bus carried onto this machine's own bus, and back what is let in.

A laptop (or phone) runs its own broker and connects to the glasses'
bridge as a paired peer (bustools.bridge.RemoteBus). Every message the glasses
let out is published here again by a node named for its source, with the
developer's key (which may speak as anyone, as replay does): a sniffer, a
recorder, the web view or a test on this machine sees powerd's
`power.state` as if powerd ran here, latched state included.

The other way, what is published here under the ``send`` prefixes goes to
the glasses, whose [bridge] in list and topic table judge it. A request is
carried with a token naming who asked here; its answer comes back as the
reply of the request's server, to that asker only (the broker's personal
channels). The glasses' own processes, republished here, are never sent
back: no echo, no loop.
"""

from __future__ import annotations

import logging
from typing import Callable

import msgpack

from bus import keys
from bustools.bridge import HELLO_EVERY_S, RemoteBus
from bus.envelope import Message
from bus.errors import BusError
from bus.node import Node
from bus.topics import TOPICS, Kind

log = logging.getLogger(__name__)

SPEAKER_START_S = 10.0


class Relay:
    def __init__(self, node: Node, remote: RemoteBus, send: list[str],
                 on_welcome: Callable[[list[str]], None] | None = None):
        self.node, self.remote = node, remote
        self.on_welcome = on_welcome  # called once, with what the glasses let out, when they first say it
        self.speakers: dict[str, Node] = {}  # a glasses process -> its node on this bus
        self.republished = self.sent = self.dropped = 0
        self._refusals_seen = 0
        self._developer = keys.own_pair(node.runtime, keys.DEVELOPER).path
        node.watch(remote.sock, self._on_remote)
        node.every(HELLO_EVERY_S, self._hello)
        for prefix in send:
            node.subscribe(prefix, self._on_local, from_anyone=True)
        remote.hello()

    def stats(self) -> dict:
        return {"republished": self.republished, "sent": self.sent, "dropped": self.dropped,
                "refused": len(self.remote.refusals), "sources": sorted(self.speakers),
                "sees": self.remote.welcome}

    def close(self) -> None:
        self.node.unwatch(self.remote.sock)
        for speaker in self.speakers.values():
            speaker.close()

    # --- glasses -> here -----------------------------------------------------------------
    def _hello(self) -> None:
        self.remote.hello()
        for topic, why in self.remote.refusals[self._refusals_seen:]:
            log.warning("the glasses refused %s: %s", topic, why)
        self._refusals_seen = len(self.remote.refusals)

    def _on_remote(self) -> None:
        messages = self.remote.drain()
        if self.on_welcome is not None and self.remote.welcome is not None:
            self.on_welcome(self.remote.welcome)
            self.on_welcome = None
        for msg in messages:
            spec = TOPICS.get(msg.topic)
            if spec is None or spec.kind in (Kind.REQUEST, Kind.REPLY):
                self.dropped += 1  # the bridge never lets these out; nor does this side take them in
                continue
            self._say(msg.source, msg.topic, msg.payload)
        for token in list(self.remote.replies):
            self._answer(token, *self.remote.replies.pop(token))
        for speaker in self.speakers.values():
            speaker.run_once(0)

    def _say(self, source: str, topic: str, payload: dict) -> None:
        try:
            self._speaker(source).publish(topic, **payload)
            self.republished += 1
        except (BusError, ValueError) as exc:  # another version's table, or a name this bus refuses
            self.dropped += 1
            log.warning("not republished: %s from %s: %s", topic, source, exc)

    def _speaker(self, source: str) -> Node:
        speaker = self.speakers.get(source)
        if speaker is None:
            speaker = Node(source, self.node.runtime, key=self._developer)
            speaker.start(timeout=SPEAKER_START_S)
            self.speakers[source] = speaker
        return speaker

    def _answer(self, token: bytes, result: dict | None, error: str) -> None:
        try:
            topic, asker, cid = msgpack.unpackb(token)
            server = TOPICS[topic].owner
        except (ValueError, TypeError, KeyError, msgpack.UnpackException):
            self.dropped += 1
            return
        self._say(server, TOPICS[topic].reply_topic,
                  {"to": asker, "cid": cid, "ok": not error, "result": result if not error else None,
                   "error": error or None})

    # --- here -> glasses -------------------------------------------------------------------
    def _on_local(self, msg: Message) -> None:
        if msg.source in self.speakers:
            return  # the glasses' own words, republished here: never sent back
        payload = dict(msg.payload)
        token = b""
        if TOPICS[msg.topic].kind is Kind.REQUEST:
            token = msgpack.packb([msg.topic, msg.source, payload.pop("cid")])
        try:
            self.remote.publish(msg.topic, token, **payload)
            self.sent += 1
        except BusError as exc:
            self.dropped += 1
            log.warning("%s not sent to the glasses: %s", msg.topic, exc)
