"""The broker's ZAP handler (RFC 27): admits a CURVE client only if its public key is in the key directory,
and a PLAIN client (an unsealed lane, bus.access) only with the pass of a key there, for its own uid and pid.

Served from the broker's own poll loop rather than pyzmq's authenticator
thread: that one runs an asyncio loop (8 MiB and a thread in a process that
otherwise has neither) to answer a handful of handshakes per boot. The
identity returned here becomes the ``User-Id`` of every frame the client
sends, which is what broker.gate checks.
"""

from __future__ import annotations

import zmq
from zmq.utils import z85

from bus import access
from bus.keys import ZAP_DOMAIN, Directory

ENDPOINT = "inproc://zeromq.zap.01"  # fixed by the RFC: libzmq asks whoever binds it


class ZapHandler:
    def __init__(self, ctx: zmq.Context, directory: Directory, on_refused, lane_key: bytes | None = None):
        self.directory = directory
        self.lane_key = lane_key  # None: no PLAIN at all (the bridge's TCP peers)
        self._on_refused = on_refused  # on_refused(address, why): the gate counts and reports it
        self.admitted = 0
        self.refused = 0
        self.sock = ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(ENDPOINT)  # before any CURVE server socket binds: an unanswered handshake is refused

    def serve(self) -> None:
        while True:
            try:
                request = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.sock.send_multipart(self._answer(request))

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6:
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, domain, address, _routing_id, mechanism, *credentials = request
        identity, why = None, "unknown key"
        if version == b"1.0" and domain == ZAP_DOMAIN:
            if mechanism == b"CURVE" and len(credentials) == 1:
                identity = self.directory.identity(z85.encode(credentials[0]))
            elif mechanism == b"PLAIN" and len(credentials) == 2 and self.lane_key is not None:
                identity, why = self._passed(address.decode(errors="replace"), *credentials), "wrong pass"
        if identity is None:
            self.refused += 1
            self._on_refused(address.decode(errors="replace"), why)
            return [b"1.0", request_id, b"400", why.encode(), b"", b""]
        self.admitted += 1
        return [b"1.0", request_id, b"200", b"OK", identity.encode(), b""]

    def _passed(self, address: str, username: bytes, password: bytes) -> str | None:
        """The identity whose pass, for the uid and pid the kernel gives for this connection, was shown."""
        who = access.peer(address)
        identity = username.decode("ascii", "replace")
        public = self.directory.public(identity)
        if who is None or public is None:
            return None
        expected = access.pass_for(self.lane_key, identity, public, *who)
        return identity if access.same(expected, password) else None

    def close(self) -> None:
        self.sock.close(0)
