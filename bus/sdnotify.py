"""The systemd notify protocol (sd_notify(3)), implemented once for every lensos process.

A process tells its supervisor (systemd on the board, ``lens up`` in
development) that it is ready (``READY=1``) and alive (``WATCHDOG=1``) by
sending datagrams to the AF_UNIX socket named in ``$NOTIFY_SOCKET``; a name
starting with '@' is in the abstract namespace. Without the variable every
call is a no-op, so the same code runs under any supervisor or none.
"""

from __future__ import annotations

import os
import socket


def notify(*assignments: str) -> bool:
    """Send ``KEY=VALUE`` lines; True when a supervisor was listening."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    message = "\n".join(assignments).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(message)
        except OSError:
            return False
    return True


def watchdog_period() -> float | None:
    """Seconds between WATCHDOG=1 pings (half the supervisor's timeout), or None when not watched."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.001)
    except ValueError:
        return None
