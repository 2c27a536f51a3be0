"""Waking a blocked poll: from a signal (SIGTERM/SIGINT) or from another thread.

Python runs signal handlers between bytecodes, so a process blocked in
zmq_poll with a long timeout would notice SIGTERM only when the timeout ends.
``signal.set_wakeup_fd`` writes a byte into a socketpair that the poll also
watches, so the loop wakes at once and sees the stop flag.
"""

from __future__ import annotations

import signal
import socket
import threading
from typing import Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def interrupt_on_stop_signals() -> None:
    """KeyboardInterrupt on SIGTERM as on SIGINT, for a tool whose loop ends in ``except KeyboardInterrupt``
    and cleans up there. SIGINT is set too: a job that a script starts in the background inherits it
    ignored, and `kill -INT`, Ctrl-C's stand-in, would then do nothing."""
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.default_int_handler)


class Wakeup:
    def __init__(self):
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)

    def fileno(self) -> int:
        return self._read.fileno()

    def wake(self) -> None:
        try:
            self._write.send(b"\0")
        except OSError:
            pass  # the pair is full (the loop will wake anyway) or already closed

    def drain(self) -> None:
        try:
            while self._read.recv(512):
                pass
        except (BlockingIOError, OSError):
            pass

    def on_signals(self, handler: Callable[[int], None], signals=STOP_SIGNALS) -> Callable[[], None]:
        """Route ``signals`` to ``handler(signum)`` and wake the poll; returns a restore function.

        Outside the main thread signals cannot be caught; nothing is installed."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in signals}
        old_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        for sig in signals:
            signal.signal(sig, lambda signum, frame: handler(signum))

        def restore() -> None:
            signal.set_wakeup_fd(old_fd)
            for sig, old in previous.items():
                signal.signal(sig, old)
        return restore

    def close(self) -> None:
        self._read.close()
        self._write.close()
