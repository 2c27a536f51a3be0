"""Who is connected to the broker, kept for its successor, and that successor's wait for them.

Every lane of every node subscribes to its presence channel (bus.envelope.presence) while it lives, so the
broker counts each identity's connections (bus.departed when the last goes). The count is written to the
runtime directory as it changes. A broker that starts and finds it there knows the last one crashed (a clean
stop removes it) and holds forwarding until those identities are back and subscribed, each lane's marker
applied (bus.lane): a publisher sends again what the dead broker was not seen to forward as soon as its lane
is confirmed, and a subscriber not yet back would miss it for good, without a loss to say (20 of 20 in a
board boot before this). At most HOLD_MAX_S: a process that died with the broker never comes back.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import msgpack

from bus.runtime import write_atomically

log = logging.getLogger(__name__)

# The processes come back in 0.1-1.5 s (a node retries its connection at once, then every 0.1 s): 1.1-1.4 s
# under TCG on the board while it was busy with its checks
HOLD_MAX_S = 5.0
_NONCE = 6  # a marker is ACK + identity + NUL + a 6-byte nonce (bus.lane)


class Present:
    def __init__(self, path: Path):
        self.path = path
        self.counts: dict[bytes, int] = {}  # identity -> its connections' presence subscriptions
        self._dirty = False
        self.awaited: dict[bytes, int] = {}  # the last broker's counts, while this one holds for them
        self._marked: dict[bytes, set[bytes]] = {}  # identity -> the markers applied: one a lane (bus.lane)
        self.until = 0.0

    def change(self, identity: bytes, change: int) -> bool:
        """A presence subscription came or went; True when it was the identity's last connection. XPUB hands
        the broker the unsubscription of each pipe that goes away (in manual mode, once per pipe)."""
        count = self.counts.get(identity, 0) + change
        self._dirty = True
        if count > 0:
            self.counts[identity] = count
            return False
        return self.counts.pop(identity, None) is not None

    def marker(self, prefix: bytes, subscribed: bool) -> None:
        """A lane's marker subscription was applied (or dropped): kept while holding, each marker once (the
        gate let only the sender's own through: broker.gate.subscriptions)."""
        if not self.awaited or len(prefix) < _NONCE + 3 or prefix[-_NONCE - 1:-_NONCE] != b"\x00":
            return
        markers = self._marked.setdefault(prefix[1:-_NONCE - 1], set())
        if subscribed:
            markers.add(prefix)
        else:
            markers.discard(prefix)

    def missing(self) -> list[str]:
        return sorted(i.decode("ascii", "replace") for i, n in self.awaited.items()
                      if len(self._marked.get(i, ())) < n)

    def holding(self, now: float) -> bool:
        return bool(self.awaited) and now < self.until and bool(self.missing())

    def save(self) -> None:
        """When changed: at each turn of the broker's loop (which takes in a burst of changes at once), not
        later like the latched cache's coalesced write, since a broker killed in that window left a successor
        waiting for nobody (tried: a 50 ms delay, and tests/bus/test_pubsub.py's subscriber, connected within it
        of the crash, missed what was sent again). Not durable: it matters after a crash of the broker, not of
        the board."""
        if self._dirty:
            self._dirty = False
            try:
                write_atomically(self.path, msgpack.packb(self.counts), durable=False)
            except OSError as exc:  # a full /run: the next crash's successor forwards at once, said here
                log.warning("cannot write %s (%s): a successor would not wait for these processes", self.path,
                            exc.strerror)

    def load(self) -> None:
        """The crashed last broker's counts, to hold forwarding for."""
        try:
            counts = msgpack.unpackb(self.path.read_bytes(), strict_map_key=False)
            counts = {bytes(i): int(n) for i, n in counts.items() if isinstance(i, bytes)}  # a count once
            self.awaited = {i: n for i, n in counts.items() if n > 0}
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError, OverflowError, msgpack.UnpackException) as exc:
            log.warning("%s was unreadable (%s: %s): forwarding at once", self.path, type(exc).__name__, exc)
            self.awaited = {}
            try:
                self.path.unlink(missing_ok=True)  # this broker writes its own
            except OSError:
                pass  # not a file: save() will say it cannot write there
        self._dirty = True  # this broker's own present replaces it
        self.until = time.monotonic() + HOLD_MAX_S
        if self.awaited:
            log.info("the last broker stopped with %d processes connected: forwarding once they are back "
                     "(at most %g s)", len(self.awaited), HOLD_MAX_S)

    def held(self, took: float) -> None:
        """The hold is over: said, and forgotten."""
        missing = self.missing()
        if missing:
            log.warning("forwarding after %.2f s without %s, connected to the last broker: not back", took,
                        ", ".join(missing))
        else:
            log.info("forwarding after %.2f s: the %d processes the last broker had are back", took,
                     len(self.awaited))
        self.awaited, self._marked = {}, {}

    def forget(self) -> None:
        """A clean stop: nobody for a successor to wait for."""
        self.path.unlink(missing_ok=True)
