"""The bus's edge: a paired phone or a laptop sees, and says, what privacy.toml [bridge] allows.

The glasses listen (``lens bus bridge --listen tcp://...``): a ROUTER socket
that is a CURVE server with the bridge's key, behind a ZAP handler of its own
that admits only the peers' public keys (``<keys dir>/peers/*.key``). The
link is encrypted and both ends are authenticated. A peer (``RemoteBus``:
``lens bus sniff --remote``, or ``lens bus bridge --connect``) speaks a small
protocol over a DEALER:

    peer -> glasses  HELLO  [prefixes]      what it wants to see; resent every HELLO_EVERY_S
                     PUB    topic, payload  a message for the glasses' bus (or a request)
    glasses -> peer  WELCOME [prefixes]     what it will see: its prefixes within the out list
                     MSG    topic, body     the topic frame stamped with its sender
                                            (bus.envelope), as the bus delivered it
                     REPLY  topic, token, result, error
                     REFUSED topic, why

Out: the bridge subscribes to the out list (a bus node like any other, so
restricted topics and others' replies never even reach it) and forwards what
each peer asked for. In: a topic must be in the in list, which the policy
check keeps to topics anyone on the bus may publish (never one that drives
the simulated hardware); the payload is checked against the table exactly
like any message (its keys are fields of the topic, never arguments of the
call that publishes it) and published by the bridge under its own identity,
``bridge``, whose key is its own (never the developer's), so whoever serves it
judges it by the same rules as an app with no permissions. A request is asked
by the bridge, and the answer goes back to the peer that asked. A frame that
is not of this protocol's shape is refused, counted and told to the peer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import msgpack
import zmq

from bus import keys
from bus.envelope import Message, decode, stamp
from bus.errors import BusError, MalformedMessage, PayloadError
from bus.node import Node
from bus.topics import TOPICS, Kind, lookup, matches
from broker.zap import ZapHandler

log = logging.getLogger(__name__)

HELLO_EVERY_S = 2.0
PEER_TIMEOUT_S = 3 * HELLO_EVERY_S  # a peer that stopped saying hello is gone
PEER_HWM = 10_000
MAX_PREFIXES = 64
# The largest frame a peer may send: the largest message the table allows, plus room for the frame's own
# packing. A bigger one is dropped by libzmq with the connection, before it takes any memory here.
MAX_PEER_FRAME = max(t.max_size for t in TOPICS.values()) + 4096
_SHAPES = {b"HELLO": (2, 2), b"PUB": (3, 4)}  # frames each message has (kind included): (least, most)


def within(prefixes: list[str], allowed: list[str]) -> list[str]:
    """The part of what a peer asks for that the allow-list lets it see, as prefixes."""
    out = set()
    for prefix in prefixes[:MAX_PREFIXES]:
        for allow in allowed:
            if matches(allow, prefix):
                out.add(prefix)  # inside an allowed prefix: as asked
            elif matches(prefix, allow):
                out.add(allow)  # wider than allowed: narrowed to what is allowed
    return sorted(out)


@dataclass
class _Peer:
    identity: str
    prefixes: list[str] = field(default_factory=list)
    seen: float = 0.0


class Bridge:
    """The glasses' side: serves peers from ``node`` (this process's bus node)."""

    def __init__(self, node: Node, address: str, out: list[str], into: list[str], peers_dir):
        self.node, self.out, self.into = node, out, into
        self.refused = 0
        self.peers: dict[bytes, _Peer] = {}
        self.ctx = zmq.Context()
        directory = keys.Directory(peers_dir)
        directory.reload()
        self.zap = ZapHandler(self.ctx, directory,
                              lambda address, why: log.warning("refused a peer at %s: %s", address, why))
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.SNDHWM, PEER_HWM)
        self.router.setsockopt(zmq.MAXMSGSIZE, MAX_PEER_FRAME)
        self.router.setsockopt(zmq.LINGER, 0)
        keys.as_server(self.router, node.key_pair)
        self.router.bind(address)
        self.address = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        node.watch(self.zap.sock, self.zap.serve)
        node.watch(self.router, self._on_peer)
        node.every(HELLO_EVERY_S, self._expire)
        for prefix in out:
            node.subscribe(prefix, self._on_local, from_anyone=True)

    @property
    def public_key(self) -> str:
        return self.node.key_pair.public.decode()

    def close(self) -> None:
        self.router.close(0)
        self.zap.close()
        self.ctx.term()

    # --- from the peers ------------------------------------------------------------------
    def _on_peer(self) -> None:
        while True:
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            rid, parts = frames[0].bytes, [f.bytes for f in frames[1:]]
            identity = (keys.verified(frames[1]) if len(frames) > 1 else "") or "?"
            try:
                self._handle(rid, identity, parts)
            except (ValueError, msgpack.UnpackException) as exc:  # UnicodeDecodeError is a ValueError
                self._refuse(rid, b"", f"malformed {parts[0][:16] if parts else b''!r} from {identity}: {exc}")

    def _handle(self, rid: bytes, identity: str, parts: list[bytes]) -> None:
        kind = parts[0] if parts else b""
        if kind not in _SHAPES:
            self._refuse(rid, b"", f"unknown message {kind[:16]!r} from {identity}")
            return
        least, most = _SHAPES[kind]
        if not least <= len(parts) <= most:
            raise ValueError(f"{len(parts)} frames; {kind.decode()} has {least}" + (f" to {most}" if most > least else ""))
        if kind == b"HELLO":
            asked = msgpack.unpackb(parts[1])
            if type(asked) is not list:
                raise ValueError("HELLO's prefixes must be a list")
            asked = [p for p in asked if type(p) is str]
            peer = self.peers.get(rid) or _Peer(identity)
            sees = within(asked, self.out)
            fresh = rid not in self.peers or peer.prefixes != sees
            peer.prefixes, peer.seen = sees, time.monotonic()
            self.peers[rid] = peer
            if fresh:
                log.info("peer %s sees %s", identity, ", ".join(peer.prefixes) or "nothing")
            self.router.send_multipart([rid, b"WELCOME", msgpack.packb(peer.prefixes)])
        else:
            self._publish(rid, identity, parts[1].decode(), msgpack.unpackb(parts[2]), parts[3:])

    def _publish(self, rid: bytes, identity: str, topic: str, payload: object, token: list[bytes]) -> None:
        if not any(matches(allow, topic) for allow in self.into):
            self._refuse(rid, topic.encode(), f"{topic} may not come in over the bridge (privacy.toml [bridge] in)")
            return
        spec = lookup(topic)
        try:
            # The payload is the topic's fields and nothing else, checked here as the table says: it is never
            # spread into the call that publishes it, where a key such as timeout would be an argument.
            if type(payload) is not dict or not all(type(key) is str for key in payload):
                raise PayloadError(f"{topic}: the payload must be a map of field names")
            if spec.kind is Kind.REQUEST and "cid" in payload:
                raise PayloadError(f"{topic}: 'cid' is the bridge's to choose")
            spec.validate({**payload, "cid": 1} if spec.kind is Kind.REQUEST else payload)
            if spec.kind is Kind.REQUEST:
                def answer(result, error, topic=topic, token=token[:1] or [b""]):
                    self.router.send_multipart([rid, b"REPLY", topic.encode(), *token, msgpack.packb(result),
                                                (str(error) if error else "").encode()])
                self.node.request_async(topic, answer, **payload)
            else:
                self.node.publish(topic, **payload)
        except BusError as exc:
            self._refuse(rid, topic.encode(), str(exc))
            return
        log.info("peer %s published %s", identity, topic)

    def _refuse(self, rid: bytes, topic: bytes, why: str) -> None:
        self.refused += 1
        log.warning("bridge: %s", why)
        self.router.send_multipart([rid, b"REFUSED", topic, why.encode()])

    def _expire(self) -> None:
        now = time.monotonic()
        for rid in [rid for rid, peer in self.peers.items() if now - peer.seen > PEER_TIMEOUT_S]:
            log.info("peer %s went quiet", self.peers.pop(rid).identity)

    # --- to the peers --------------------------------------------------------------------
    def _on_local(self, msg: Message) -> None:
        for rid, peer in self.peers.items():
            if any(matches(p, msg.topic) for p in peer.prefixes):
                try:
                    self.router.send_multipart([rid, b"MSG", stamp(msg.topic.encode(), msg.sender.encode()),
                                                msg.body], zmq.NOBLOCK)
                except zmq.Again:
                    pass  # that peer is this far behind: it sees the gap in the sequence numbers


class RemoteBus:
    """The peer's side: the glasses' bus, as much of it as they let out."""

    def __init__(self, address: str, pair: keys.KeyPair, server_public: bytes, prefixes: list[str]):
        self.prefixes = prefixes
        self.welcome: list[str] | None = None
        self.refusals: list[tuple[str, str]] = []
        self.replies: dict[bytes, tuple] = {}
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        keys.as_client(self.sock, pair, server_public)
        self.sock.connect(address)
        self._next_hello = 0.0

    def poll(self, timeout: float) -> list[Message]:
        """Say hello when due, wait up to ``timeout`` s, and return the messages that came."""
        now = time.monotonic()
        if now >= self._next_hello:
            self.hello()
        if not self.sock.poll(int(min(timeout, max(0.0, self._next_hello - now)) * 1000)):
            return []
        return self.drain()

    def hello(self) -> None:
        """What this peer wants to see; also how the bridge knows it is still there."""
        try:  # never blocks: a bridge that refused our key leaves no connection to queue on
            self.sock.send_multipart([b"HELLO", msgpack.packb(self.prefixes)], zmq.NOBLOCK)
        except zmq.Again:
            pass
        self._next_hello = time.monotonic() + HELLO_EVERY_S

    def drain(self) -> list[Message]:
        """What has come, without waiting: messages returned, the rest kept (welcome, refusals, replies)."""
        out = []
        while True:
            try:
                kind, *rest = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return out
            try:
                if kind == b"MSG":
                    out.append(decode(rest))
                elif kind == b"WELCOME":
                    self.welcome = [p for p in msgpack.unpackb(rest[0]) if type(p) is str]
                elif kind == b"REFUSED":
                    self.refusals.append((rest[0].decode(errors="replace"), rest[1].decode(errors="replace")))
                elif kind == b"REPLY":
                    self.replies[rest[1]] = (msgpack.unpackb(rest[2]), rest[3].decode(errors="replace"))
            except (MalformedMessage, ValueError, TypeError, IndexError, msgpack.UnpackException) as exc:
                log.warning("remote: dropped a malformed %r: %s", kind[:16], exc)

    def publish(self, topic: str, token: bytes = b"", **payload) -> None:
        spec = lookup(topic)
        spec.validate({**payload, **({"cid": 1} if spec.kind is Kind.REQUEST else {})})
        try:
            self.sock.send_multipart([b"PUB", topic.encode(), msgpack.packb(payload), token], zmq.NOBLOCK)
        except zmq.Again:
            raise BusError(f"not connected to the bridge; {topic} not sent") from None

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()
