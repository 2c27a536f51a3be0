"""Kernel uevents for power supplies: a battery pulled or inserted wakes powerd at once.

The kernel multicasts device events on a NETLINK_KOBJECT_UEVENT socket
(group 1); each datagram is ``ACTION@DEVPATH`` followed by NUL-separated
``KEY=VALUE`` lines. Where the socket cannot be opened (a container, a
sandbox) powerd falls back to polling alone.
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)

NETLINK_KOBJECT_UEVENT = 15
KERNEL_GROUP = 1


def parse(datagram: bytes) -> dict[str, str]:
    """The KEY=VALUE fields of one uevent; {} for anything else (udev's own 'libudev' messages)."""
    if datagram.startswith(b"libudev"):
        return {}
    fields = {}
    for part in datagram.split(b"\0")[1:]:
        key, sep, value = part.partition(b"=")
        if sep:
            fields[key.decode(errors="replace")] = value.decode(errors="replace")
    return fields


class PowerUevents:
    def __init__(self):
        self.sock: socket.socket | None = None
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                 NETLINK_KOBJECT_UEVENT)
            sock.bind((0, KERNEL_GROUP))
            self.sock = sock
        except OSError as exc:
            log.info("no kernel uevents (%s); polling only", exc.strerror)

    def fileno(self) -> int | None:
        return None if self.sock is None else self.sock.fileno()

    def drain(self) -> bool:
        """Read what is waiting; True when any of it was about a power supply."""
        seen = False
        while self.sock is not None:
            try:
                datagram = self.sock.recv(8192)
            except BlockingIOError:
                break
            seen |= parse(datagram).get("SUBSYSTEM") == "power_supply"
        return seen

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
