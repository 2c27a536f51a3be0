"""Who may map the frame ring: a ticket asked over the bus, the ring's descriptor handed over a unix socket.

The ring is a sealed memfd (frames.ring) that nobody can open by name, so
seeing frames takes its file descriptor, and only the writer gives that
out. A process asks for a ticket with ``camera.ring.request``: the broker
stamps the request with the caller's verified identity and sends the reply
to the caller alone, and the writer says no unless that identity may see
frames now (the developer's tools always may: the broker hands them every
frame descriptor too, broker.gate). The ticket is shown once, within TICKET_S, at the door (a
SOCK_SEQPACKET socket in the runtime directory), which answers with the
descriptor (SCM_RIGHTS) and closes. Every capture session gets a new ring,
so whoever held the last one's descriptor sees nothing of the next.

The door sits in the writer's poll loop: a caller that connects and says
nothing holds one of MAX_WAITING places until newer callers push it out.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable

from bus.envelope import Message
from bus.errors import BusError, RequestRefused
from bus.keys import DEVELOPER
from frames.ring import Ring

log = logging.getLogger(__name__)

TOPIC = "camera.ring.request"
DOOR = "camera.door"  # the socket's name in the runtime directory
TICKET_S = 5.0
MAX_TICKETS = 64
MAX_WAITING = 8
_OK = b"ok"


class RingRefused(BusError):
    """The door kept the ring: no ticket, a used or stale one, or the ring changed meanwhile."""


class Door:
    """The writer's side: tickets for the developer and those ``refusal`` lets through, the ring's descriptor
    for a ticket."""

    def __init__(self, node, refusal: Callable[[Message], str | None]):
        self.node, self.refusal = node, refusal
        self.path = node.runtime.path(DOOR)
        self.ring: Ring | None = None
        self.epoch = 0
        self.tickets: dict[str, tuple[str, float, int]] = {}  # ticket -> (identity, expiry, epoch)
        self.waiting: dict[int, socket.socket] = {}
        self.handed = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK)
        self.path.unlink(missing_ok=True)  # a dead writer's; the runtime directory is ours
        old_umask = os.umask(0o117)  # like the bus sockets: owner and group, never world
        try:
            self.sock.bind(str(self.path))
        finally:
            os.umask(old_umask)
        self.sock.listen(MAX_WAITING)
        node.watch(self.sock.fileno(), self._accept)
        node.serve(TOPIC, self._on_request)

    def offer(self, ring: Ring) -> int:
        """``ring`` is the one handed out from now on; the tickets for the last one are void."""
        self.epoch += 1
        ring.epoch, self.ring = self.epoch, ring
        self.tickets.clear()
        return self.epoch

    def withdraw(self) -> None:
        self.ring = None
        self.tickets.clear()

    def _on_request(self, msg: Message) -> dict:
        if self.ring is None:
            raise RequestRefused("there is no frame ring now")
        why = None if msg.sender == DEVELOPER else self.refusal(msg)
        if why:
            raise RequestRefused(why)
        now = time.monotonic()
        for ticket, (_, expiry, _) in list(self.tickets.items()):
            if expiry < now or len(self.tickets) >= MAX_TICKETS:
                del self.tickets[ticket]
        # os.urandom is what secrets.token_hex reads; the secrets module would bring hmac and with it
        # OpenSSL's libcrypto: 3.4 MiB in camerad and audiod for one random string.
        ticket = os.urandom(16).hex()
        self.tickets[ticket] = (msg.sender or msg.source, now + TICKET_S, self.epoch)
        return {"door": str(self.path), "ticket": ticket, "ring": self.epoch}

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            while len(self.waiting) >= MAX_WAITING:  # the oldest silent caller makes room
                self._hang_up(next(iter(self.waiting)))
            self.waiting[conn.fileno()] = conn
            self.node.watch(conn.fileno(), lambda fd=conn.fileno(): self._admit(fd))

    def _admit(self, fd: int) -> None:
        conn = self.waiting.get(fd)
        if conn is None:
            return
        try:
            ticket = conn.recv(64).decode("ascii", "replace")
        except BlockingIOError:
            return
        except OSError:
            ticket = ""
        entry = self.tickets.pop(ticket, None)
        try:
            if entry is None or entry[1] < time.monotonic() or entry[2] != self.epoch or self.ring is None:
                conn.send(b"no: that ticket is unknown, used, stale or for an older ring")
            else:
                socket.send_fds(conn, [_OK], [self.ring.fd])
                self.handed += 1
                log.info("frame ring %d handed to %s", self.epoch, entry[0])
        except OSError:
            pass  # the caller hung up first
        self._hang_up(fd)

    def _hang_up(self, fd: int) -> None:
        conn = self.waiting.pop(fd)
        self.node.unwatch(fd)
        conn.close()

    def close(self) -> None:
        for fd in list(self.waiting):
            self._hang_up(fd)
        self.node.unwatch(self.sock.fileno())
        self.sock.close()
        self.path.unlink(missing_ok=True)


def fetch(door: str, ticket: str, timeout: float = 3.0) -> int:
    """The ring's descriptor for ``ticket`` (the caller closes it); RingRefused with the door's word."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(door)
            sock.send(ticket.encode("ascii"))
            data, fds, _, _ = socket.recv_fds(sock, 256, 1)
        except OSError as exc:
            raise RingRefused(f"the frame ring's door {door}: {exc}") from None
    if data != _OK or not fds:
        for fd in fds:
            os.close(fd)
        raise RingRefused(data.decode("utf-8", "replace") or "the door closed without a word")
    return fds[0]


def open_ring(node, timeout: float = 3.0) -> Ring:
    """A read-only map of the writer's ring of the moment, for a node allowed to see frames.
    RequestFailed when the writer says no, RingRefused when the door does."""
    return _through_door(node.request(TOPIC, timeout=timeout), timeout)


def open_ring_later(node, callback: Callable[[Ring | None, BusError | None], None], timeout: float = 3.0) -> None:
    """open_ring without waiting in the caller's handler: ``callback(ring, None)`` or ``(None, error)``."""
    def answered(reply: dict | None, error: BusError | None) -> None:
        if error is not None:
            callback(None, error)
            return
        try:
            ring = _through_door(reply, timeout)
        except RingRefused as exc:
            callback(None, exc)
            return
        callback(ring, None)
    node.request_async(TOPIC, answered, timeout=timeout)


class RingFollower:
    """The ring of camerad's current session, for a watching tool (the recorder with --include-capture, the
    Foxglove view): asked for through the door once per ring camerad names, without waiting in a handler;
    the previous one closed when the next is open."""

    def __init__(self, node):
        self.node = node
        self.ring: Ring | None = None
        self.asked = 0  # the number of the ring last asked camerad for

    def on_camera(self, msg: Message) -> None:
        """camera.state: the ring it names."""
        self.want(msg.payload.get("ring") or 0)

    def want(self, epoch: int) -> None:
        if not epoch or epoch == self.asked:
            return
        self.asked = epoch

        def opened(ring: Ring | None, error: BusError | None) -> None:
            if error is not None:
                log.warning("cannot read camera frames of ring %d: %s", epoch, error)
                return
            if self.ring is not None:
                self.ring.close()
            self.ring = ring
        open_ring_later(self.node, opened)

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
            self.ring = None


def _through_door(reply: dict, timeout: float) -> Ring:
    fd = fetch(reply["door"], reply["ticket"], timeout)
    try:
        ring = Ring.from_fd(fd, f"ring {reply['ring']}")
    except ValueError as exc:  # not a ring at all: the door's word cannot be taken
        raise RingRefused(str(exc)) from None
    finally:
        os.close(fd)
    ring.epoch = reply["ring"]
    return ring
