"""The broker's forwarding loop in C (broker/fastpath.c), through ctypes.

    python -m broker.fastpath        # build broker/_fastpath.so (make install does)

The C loop is the broker's wait: it polls all the broker's sockets, forwards
the messages whose (sender, topic) the broker's Python judgement already
allowed, and returns with any other message held for that judgement, or when
another socket or a timer needs Python, so there is one judgement and two
speeds. Without the built
library (no C compiler on the machine) the broker forwards in Python, says so
in its log and its stats (``forwarding``), and behaves the same.
"""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import zmq

from broker import fastpath_build
from broker.fastpath_build import LIBRARY_NAME, SOURCE

log = logging.getLogger(__name__)

LIBRARY = Path(__file__).with_name(LIBRARY_NAME)
Slow = Callable[[bytes, "bytes | None", bool, bytes, bytes], None]  # the broker's judgement of a held message


class Counters(ctypes.Structure):
    _fields_ = [("msgs_in", ctypes.c_uint64), ("bytes_in", ctypes.c_uint64),
                ("msgs_out", ctypes.c_uint64), ("bytes_out", ctypes.c_uint64)]


class _Held(ctypes.Structure):
    """A message the C loop leaves for Python (fastpath.c's ``held``)."""
    _fields_ = [("head", ctypes.c_void_p), ("head_cap", ctypes.c_size_t), ("head_len", ctypes.c_size_t),
                ("body", ctypes.c_void_p), ("body_cap", ctypes.c_size_t), ("body_len", ctypes.c_size_t),
                ("more", ctypes.c_int), ("user_len", ctypes.c_size_t), ("user", ctypes.c_char * 64),
                ("peer", ctypes.c_char * 64)]


class _PollItem(ctypes.Structure):
    """zmq.h's zmq_pollitem_t."""
    _fields_ = [("socket", ctypes.c_void_p), ("fd", ctypes.c_int), ("events", ctypes.c_short),
                ("revents", ctypes.c_short)]


class _Lane(ctypes.Structure):
    """fastpath.c's ``lane``."""
    _fields_ = [("xsub", ctypes.c_void_p), ("xpub", ctypes.c_void_p), ("held", ctypes.POINTER(_Held)),
                ("counters", ctypes.POINTER(Counters))]


HEAD_CAP = 256  # a longer topic frame names no topic: its first bytes say enough to refuse it
TRIM = 65536  # a held body larger than this has its pages given back once copied (fastpath.c lens_held_trim)
OTHER_READY, HELD = 1, 2  # lens_serve's "another item is ready", "lane 0 holds a message" (2 + i: lane i)

_API = ("msg_init", "msg_recv", "msg_send", "msg_close", "msg_data", "msg_size", "msg_more", "msg_gets",
        "msg_init_size", "errno", "getsockopt")


class _Api(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in _API]


def _libzmq() -> ctypes.CDLL:
    """The libzmq pyzmq itself runs on (a wheel bundles its own under a mangled name): opening a
    library already mapped gives the same one, never a second copy with sockets of its own."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if "/libzmq" in path and path.startswith("/"):
                return ctypes.CDLL(path)
    raise OSError(f"libzmq is not mapped into this process (pyzmq {zmq.__version__})")


class FastPath:
    """The C loop for one broker: a table of lasting verdicts ((sender, topic) forwarded unchecked but for its
    size) and the libzmq it calls."""

    def __init__(self, library: Path = LIBRARY):
        self.lib = ctypes.CDLL(str(library))
        zmq_lib = _libzmq()
        self._api = _Api(*(ctypes.cast(getattr(zmq_lib, f"zmq_{name}"), ctypes.c_void_p) for name in _API))
        self.lib.lens_table_new.restype = ctypes.c_void_p
        self.lib.lens_table_allow.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                              ctypes.c_size_t, ctypes.c_uint32]
        self.lib.lens_held_new.restype = ctypes.POINTER(_Held)
        self.lib.lens_held_new.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
        self.lib.lens_held_free.argtypes = [ctypes.POINTER(_Held)]
        self.lib.lens_held_trim.argtypes = [ctypes.POINTER(_Held)]
        self._held: list = []
        self.lib.lens_table_free.argtypes = [ctypes.c_void_p]
        self.lib.lens_table_tap.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.lib.lens_serve.argtypes = [ctypes.POINTER(_Api), ctypes.POINTER(_PollItem), ctypes.c_int,
                                        ctypes.POINTER(_Lane), ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                        ctypes.c_long]
        self._table = self.lib.lens_table_new()
        if not self._table:
            raise MemoryError("the fast path's verdict table")

    def allow(self, user: bytes, topic: bytes, max_size: int) -> bool:
        """Forward ``topic`` from ``user`` in C from now on; False when the table cannot hold it."""
        return bool(self.lib.lens_table_allow(self._table, user, len(user), topic, len(topic), max_size))

    def tap(self, address: int | None) -> None:
        """Copy every message forwarded in C into the tap ring mapped at ``address`` (bus.tap), or stop."""
        self.lib.lens_table_tap(self._table, address)

    def server(self, lanes: list[tuple[zmq.Socket, zmq.Socket, Counters, Slow]], others: list,
               batch: int, max_body: int) -> Callable[[float | None], list]:
        """The broker's wait: a call that waits up to ``timeout`` seconds (None: no limit) for any of
        ``others`` (sockets or file descriptors) while it forwards each lane (xsub, xpub, counters,
        slow) in C, and returns those of ``others`` that are ready (empty when the time is up or a signal
        came).

        ``slow(topic, body, more, user)`` gets what the table does not cover (body None for a lone frame;
        ``more`` when further frames wait unread on xsub)."""
        items = (_PollItem * (len(lanes) + len(others)))()
        table = (_Lane * len(lanes))()
        for i, (xsub, xpub, counters, _) in enumerate(lanes):
            pointer = self.lib.lens_held_new(HEAD_CAP, max_body)
            if not pointer:
                raise MemoryError("the fast path's room for a held message")
            self._held.append(pointer)
            items[i].socket, items[i].events = xsub.underlying, zmq.POLLIN
            table[i].xsub, table[i].xpub, table[i].held, table[i].counters = \
                xsub.underlying, xpub.underlying, pointer, ctypes.pointer(counters)
        for i, other in enumerate(others, len(lanes)):
            if isinstance(other, zmq.Socket):
                items[i].socket = other.underlying
            else:
                items[i].fd = other
            items[i].events = zmq.POLLIN
        slows = [lane[3] for lane in lanes]
        args = (ctypes.byref(self._api), items, len(items), table, len(lanes), self._table, batch)
        serve, trim = self.lib.lens_serve, self.lib.lens_held_trim

        def wait(timeout: float | None) -> list:
            result = serve(*args, -1 if timeout is None else max(0, int(timeout * 1000 + 0.999)))
            if result < 0:
                raise zmq.ZMQError()  # libzmq's errno, as pyzmq reads it
            if result >= HELD:
                held = table[result - HELD].held.contents
                data = None if held.more < 0 else ctypes.string_at(held.body, held.body_len)
                if held.body_len > TRIM:
                    trim(table[result - HELD].held)
                slows[result - HELD](ctypes.string_at(held.head, held.head_len), data, held.more > 0,
                                     held.user[:held.user_len], held.peer)
                return []  # the caller's loop comes straight back: what else is ready is still ready
            if result == OTHER_READY:
                return [other for i, other in enumerate(others, len(lanes)) if items[i].revents]
            return []
        return wait

    def close(self) -> None:
        while self._held:
            self.lib.lens_held_free(self._held.pop())
        if self._table:
            self.lib.lens_table_free(self._table)
            self._table = None


def load() -> FastPath | None:
    """The C loop, or None (and why, logged) when it is not built or does not load."""
    if os.environ.get("LENS_BROKER_PYTHON"):  # to compare the two, or to rule the C loop out
        log.info("forwarding in Python ($LENS_BROKER_PYTHON)")
        return None
    try:
        return FastPath()
    except OSError as exc:
        log.warning("forwarding in Python, slower: the C loop did not load (%s); `make install` builds it", exc)
        return None


def build(output: Path = LIBRARY) -> Path:
    """Compile broker/fastpath.c into ``output`` with $CC (else cc); CalledProcessError (with the compiler's
    words) if it fails."""
    fastpath_build.build(SOURCE, output)
    return output


def main() -> int:
    try:
        print(f"built {build()}")
    except FileNotFoundError as exc:
        print(f"lensos: no C compiler ({exc.filename}); the broker will forward in Python", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"lensos: building {SOURCE} failed:\n{exc.stderr}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
