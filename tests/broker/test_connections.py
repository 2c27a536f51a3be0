"""The broker's bookkeeping of connections under a flood (broker/connections.py), driven directly: what the
board's VM found with 22,500 idle connections (systemd's watchdog killed the broker four times) without the
minutes of a VM."""

from __future__ import annotations

import os
import socket

import zmq

from broker import connections
from broker.connections import Connections
from tests.conftest import wait_for


class EndlessMonitor:
    """A monitor libzmq refills as fast as it is read: a handshake failing, forever."""

    def __init__(self):
        self.reads = 0

    def recv_multipart(self, flags=0):
        self.reads += 1
        assert self.reads < 100 * connections.READ_BATCH, "read() never gave the broker's loop back"
        return [connections._EVENT.pack(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 0), b""]


def test_a_monitor_that_never_empties_gives_the_loop_back_to_ping_the_watchdog():
    conns = Connections({}, refuse=lambda *a: None, limit=65536)
    monitor = EndlessMonitor()
    conns.monitors[monitor] = ("reliable in", "")
    conns.read(monitor)
    assert monitor.reads == connections.READ_BATCH
    conns.read(monitor)  # and the next turn reads on
    assert monitor.reads == 2 * connections.READ_BATCH


def test_over_its_cap_a_process_loses_its_newest_connections_and_closing_them_is_forgotten():
    refused = []
    conns = Connections({}, refuse=lambda why, uid, pid: refused.append((why, uid, pid)), limit=65536)
    pairs = [socket.socketpair() for _ in range(connections.PER_UID + 40)]
    try:
        fds = [ours.fileno() for ours, _ in pairs]
        for fd in fds:
            conns._accepted(fd, "reliable in")
        me = (os.getuid(), os.getpid())
        assert conns.shed == 40 and len(refused) == 40 and all(r[1:] == me for r in refused)
        assert all(conns.open[fd].shed for fd in fds[connections.PER_UID:])  # each newcomer over the cap
        assert not any(conns.open[fd].shed for fd in fds[:connections.PER_UID])
        for fd in fds[connections.PER_UID - 10:]:  # libzmq closes the shed ones, and some that were not
            conns._closed(fd)
        assert conns.held() == {str(os.getuid()): connections.PER_UID - 10}
        conns._accepted(fds[-1], "reliable in")  # a descriptor number used again: under the cap, kept
        assert conns.shed == 40 and not conns.open[fds[-1]].shed
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


def test_libzmq_accepts_no_more_than_the_monitor_backlog_ahead_of_a_broker_that_does_not_read(tmp_path):
    """The reserve the broker keeps is counted in MONITOR_BACKLOGs: were libzmq to accept further ahead of an
    unread monitor, a flood could still run the broker out of descriptors (and libzmq aborts it then)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.HANDSHAKE_IVL, 60_000)  # none closed by libzmq while they are counted
    path = str(tmp_path / "s")
    sock.bind(f"ipc://{path}")
    monitors = Connections({"s": sock}, refuse=lambda *a: None, limit=65536).monitors
    base = len(os.listdir("/proc/self/fd"))
    held = []
    try:
        def accepted() -> int:  # descriptors libzmq's I/O thread holds for our clients
            return len(os.listdir("/proc/self/fd")) - base - len(held)
        while len(held) < 2 * connections.MONITOR_BACKLOG:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.setblocking(False)
            try:
                client.connect(path)
            except BlockingIOError:  # the listen queue is full: go on once libzmq has accepted those queued
                client.close()
                try:
                    wait_for(lambda: accepted() == len(held), timeout=3, what="libzmq accepting")
                except AssertionError:
                    break  # it has stopped with some still queued
                continue
            held.append(client)
        assert len(held) < 2 * connections.MONITOR_BACKLOG, "libzmq never stopped accepting"
        wait_for(lambda: accepted() >= connections.MONITOR_BACKLOG, what="libzmq accepting up to the backlog")
        assert accepted() == connections.MONITOR_BACKLOG
    finally:
        for client in held:
            client.close()
        for monitor in monitors:
            monitor.close(0)
        sock.close(0)
        ctx.term()
