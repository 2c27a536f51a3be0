"""Every connection the broker's sockets accepted, by the uid and pid the kernel gives for its peer; the
ones beyond their caps shed before the broker runs out of file descriptors.

libzmq accepts every unix connection to a bound socket, keyed or not, and
holds a descriptor for it until the handshake ends; at the process's limit its
ipc listener aborts the whole broker (``Too many open files``). Anyone in the
bus group could do that by connecting and saying nothing. So:

- a handshake must end within ``HANDSHAKE_S`` (ZMQ_HANDSHAKE_IVL, set on each
  socket by the broker): an idle connection is closed by libzmq then;
- the broker raises its own soft RLIMIT_NOFILE as far as the hard limit lets
  it (``raise_limit``; the units set ``LimitNOFILE``), and no uid may hold more
  than ``PER_UID`` connections, nor all of them together more than the limit
  less a reserve (the broker's own, and what its monitors may tell of late).
  Beyond a cap, the connection shed is the newest of the pid holding the most
  (in development every process shares one uid: the one flooding is the one
  that loses);
- shedding is ``shutdown()`` of the socket libzmq holds, which it then closes as
  it would a peer that hung up. The descriptor number comes from the socket
  monitor (ZMQ_EVENT_ACCEPTED) and may have been reused since: it is shed only
  while the kernel still names the same peer for it.

Each connection refused at its handshake (no key, the wrong mechanism, silence
past the deadline) is reported with the uid and pid of its peer: libzmq
reports the failure and then, from the same I/O thread, the descriptor's
disconnection, so the one names the other. A failed ZAP check is left to the
ZAP handler, which reports it with its reason.
"""

from __future__ import annotations

import logging
import os
import resource
import select
import socket
import struct
import threading
import time
from typing import Callable

import zmq

log = logging.getLogger(__name__)

# A peer that has not finished its handshake by then is disconnected by libzmq. 3 s was too short for a
# process on a busy board: under TCG, a daemon's CURVE handshake was cut and reported as a refusal
HANDSHAKE_S = 10.0
PER_UID = 256  # connections one uid may hold (a node holds five; in development, every node is one uid)
# How many events a monitor holds before libzmq's I/O thread waits for the broker to read them (its internal
# end's SNDHWM, 1000, and this end's RCVHWM): no more connections than that are accepted ahead of the broker.
MONITOR_HWM = 64
# Events read from one monitor per turn of the broker's loop. Under a flood libzmq refills a monitor as fast as
# it is read, so reading "until empty" never ended: the loop stopped pinging systemd's watchdog and was killed
# (a 22,500-connection flood in the board's VM, four times). Bounded, the loop turns: it forwards, pings, and
# reads more next turn (a monitor is level-triggered).
READ_BATCH = 256
# Connections libzmq may accept on one socket before the broker reads of them: its monitor's pipe holds the
# internal end's 1000 events, this end's MONITOR_HWM and one in flight (1065, measured by
# tests/broker/test_connections.py). Every bound socket has its own monitor, so they add up (5 of them: 5325).
MONITOR_BACKLOG = 1000 + MONITOR_HWM + 1
OWN_FDS = 128  # the broker's own descriptors: its sockets' mailboxes, the ZAP handler, logs, the tap
WANTED_LIMIT = 65536  # the soft RLIMIT_NOFILE the broker asks for (the units' LimitNOFILE)
_EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
           | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_EVENT = struct.Struct("=HI")  # a monitor event's first frame: the event, its value (zmq_socket_monitor, v1)


def handshake_ivl(sock: zmq.Socket) -> None:
    """Before bind: a connection must finish its handshake within HANDSHAKE_S."""
    sock.setsockopt(zmq.HANDSHAKE_IVL, int(HANDSHAKE_S * 1000))


def raise_limit(wanted: int = WANTED_LIMIT) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (never past the hard limit); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def peer_of(fd: int) -> tuple[int, int] | None:
    """(uid, pid) of the peer of unix socket ``fd``, or None (not a socket, or not connected)."""
    try:
        sock = socket.socket(fileno=fd)  # wraps the descriptor itself: no dup, which could fail at the limit
    except OSError:
        return None
    try:
        pid, uid, _ = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
        return (uid, pid) if pid > 0 else None
    except OSError:
        return None
    finally:
        sock.detach()


def _peer_stays(fd: int) -> bool:
    """Whether the peer of unix socket ``fd`` still holds its end (it did not hang up: libzmq dropped it)."""
    poller = select.poll()
    poller.register(fd, select.POLLRDHUP)
    return not poller.poll(0)


def _shutdown(fd: int) -> None:
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.detach()


class _Conn:
    __slots__ = ("uid", "pid", "at", "shed", "where", "twin")

    def __init__(self, uid: int, pid: int, at: float, where: str, twin: int | None):
        self.uid, self.pid, self.at, self.where = uid, pid, at, where
        self.shed = False
        self.twin = twin  # a descriptor of our own on the same socket (publishers' sockets): who hung up


class Connections:
    """The monitors of the broker's bound sockets, and the connections they tell of."""

    def __init__(self, sockets: dict[str, zmq.Socket], refuse: Callable[..., None], limit: int,
                 publishers: tuple[str, ...] = ()):
        # refuse(reason, uid, pid): the gate counts and reports it (bus.security)
        self._refuse = refuse
        self.publishers = publishers  # sockets whose connections are twinned (at most two descriptors each)
        # Descriptors held: OWN_FDS, the connections the broker knows of (``open``, at most total_cap and those
        # shed but not closed yet), their twins (as many again at most), and each monitor's backlog unread.
        self.reserve = len(sockets) * MONITOR_BACKLOG + OWN_FDS
        self.total_cap = (limit - self.reserve if limit > 2 * self.reserve else limit // 2) // 2
        if limit <= 2 * self.reserve:
            log.warning("only %d file descriptors (RLIMIT_NOFILE): a flood of connections may take the broker down",
                        limit)
        self.per_uid = min(PER_UID, self.total_cap)
        self.open: dict[int, _Conn] = {}  # descriptor -> its connection
        self._by_uid: dict[int, int] = {}
        # (uid, pid) -> its connections not shed, oldest first (a dict as an ordered set: shedding the newest
        # and forgetting a closed one are O(1); lists scanned per accept made a flood quadratic)
        self._live: dict[tuple[int, int], dict[int, None]] = {}
        self._shedding: dict[int, int] = {}  # uid -> its connections shed and not closed yet
        self.shed = 0
        self.dropped = 0  # connections libzmq closed after their handshake while the peer held on (too big a frame)
        self.failed = 0  # handshakes that failed (no key, wrong mechanism, silence): ZAP refusals not included
        self.monitors: dict[zmq.Socket, tuple[str, bool]] = {}  # monitor -> (socket's name, a failure pending)
        for name, sock in sockets.items():  # each bound with handshake_ivl(): the listener copies it then
            monitor = sock.get_monitor_socket(_EVENTS)
            # Small: libzmq's I/O thread waits (it sends blocking) rather than accept faster than they are read.
            monitor.setsockopt(zmq.RCVHWM, MONITOR_HWM)
            self.monitors[monitor] = (name, "")
        self._sockets = list(sockets.values())

    def read(self, monitor: zmq.Socket) -> None:
        """Up to READ_BATCH of the events the monitor holds, in order."""
        name, failure = self.monitors[monitor]
        for _ in range(READ_BATCH):
            try:
                # Read here rather than by zmq.utils.monitor, whose import brings asyncio (tests/test_imports.py).
                kind, value = _EVENT.unpack(monitor.recv_multipart(zmq.NOBLOCK)[0])
            except zmq.Again:
                break
            if kind == zmq.EVENT_ACCEPTED:
                self._accepted(value, name)
            elif kind == zmq.EVENT_DISCONNECTED:
                conn = self._closed(value)
                if failure and conn is not None and not conn.shed:
                    if failure != "zap":
                        self._failed(conn, failure)
                elif conn is not None and conn.twin is not None and not conn.shed and _peer_stays(conn.twin):
                    self.dropped += 1
                    self._refuse(f"dropped: a frame over the size limit, or not ZMTP ({conn.where})",
                                 conn.uid, conn.pid)
                if conn is not None and conn.twin is not None:
                    os.close(conn.twin)  # now the peer hears that it was dropped
                failure = ""
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                failure = "zap"  # the ZAP handler said who and why
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                failure = "no key" if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH \
                    else f"a broken handshake (protocol error {value:#x})"
            else:  # HANDSHAKE_FAILED_NO_DETAIL: silence past the deadline, or a peer gone mid-handshake
                failure = "silent"
        self.monitors[monitor] = (name, failure)

    def _failed(self, conn: _Conn, failure: str) -> None:
        if failure == "silent":
            if time.monotonic() - conn.at < HANDSHAKE_S * 0.9:
                return  # hung up during its handshake: a process that stopped, not a refusal
            failure = f"no handshake within {HANDSHAKE_S:g} s"
        self.failed += 1
        self._refuse(f"{failure} ({conn.where})", conn.uid, conn.pid)

    def _accepted(self, fd: int, where: str) -> None:
        old = self._closed(fd)  # a number reused before its disconnection was read: that one is gone
        if old is not None and old.twin is not None:
            os.close(old.twin)
        uid, pid = peer_of(fd) or (-1, -1)
        twin = None
        if where in self.publishers and uid != -1:
            try:
                twin = os.dup(fd)
            except OSError:
                pass  # at the limit: this one's drop goes uncounted, not the broker down
        self.open[fd] = _Conn(uid, pid, time.monotonic(), where, twin)
        self._count(self._by_uid, uid, 1)
        self._live.setdefault((uid, pid), {})[fd] = None
        if self._by_uid[uid] - self._shedding.get(uid, 0) > self.per_uid:
            self._shed_one(uid, f"over {self.per_uid} connections from one uid")
        if len(self.open) > self.total_cap:  # those shed hold their descriptors until libzmq closes them
            self._shed_one(None, f"over {self.total_cap} connections in all")

    def _closed(self, fd: int) -> _Conn | None:
        conn = self.open.pop(fd, None)
        if conn is None:
            return None
        if conn.shed:
            self._count(self._shedding, conn.uid, -1)
        else:
            self._forget_live(fd, conn)
        self._count(self._by_uid, conn.uid, -1)
        return conn

    def _forget_live(self, fd: int, conn: _Conn) -> None:
        live = self._live[(conn.uid, conn.pid)]
        del live[fd]
        if not live:
            del self._live[(conn.uid, conn.pid)]

    @staticmethod
    def _count(counts: dict[int, int], uid: int, change: int) -> None:
        count = counts.get(uid, 0) + change
        if count:
            counts[uid] = count
        else:
            counts.pop(uid, None)

    def _shed_one(self, uid: int | None, why: str) -> None:
        """Shed the newest connection of the pid (of ``uid``, or of anyone) that holds the most."""
        candidates = [(len(fds), key) for key, fds in self._live.items() if uid is None or key[0] == uid]
        if not candidates:
            return
        _, key = max(candidates)
        fd = next(reversed(self._live[key]))
        conn = self.open[fd]
        self._forget_live(fd, conn)
        conn.shed = True  # counted as gone from now: libzmq closes it as soon as its I/O thread sees it
        self._count(self._shedding, conn.uid, 1)
        if conn.twin is not None:  # a connection shed is no drop to tell of: its descriptor back at once
            os.close(conn.twin)
            conn.twin = None
        if peer_of(fd) == (conn.uid, conn.pid):
            _shutdown(fd)
        self.shed += 1
        self._refuse(f"shed: {why}", conn.uid, conn.pid)

    def held(self) -> dict:
        """Connections open now, by uid (for the stats)."""
        return {str(uid): count for uid, count in self._by_uid.items()}

    def close(self, close_sockets: Callable[[], None]) -> None:
        """Run ``close_sockets`` (those monitored) while a thread reads the monitors: libzmq closes a socket
        under the lock its I/O thread holds while it waits to send an event."""
        done = threading.Event()

        def drain() -> None:
            poller = zmq.Poller()
            for monitor in self.monitors:
                poller.register(monitor, zmq.POLLIN)
            while not done.is_set():
                for monitor, _ in poller.poll(50):
                    try:
                        while True:
                            monitor.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        pass
        reader = threading.Thread(target=drain, name="monitors", daemon=True)
        reader.start()
        try:
            close_sockets()
        finally:
            done.set()
            reader.join()
        for monitor in self.monitors:
            monitor.close(0)
        for conn in self.open.values():
            if conn.twin is not None:
                os.close(conn.twin)
