"""What a process keeps across its own crash: the state it declares it owns, back within a second.

Every process that owns state nobody else holds (displayd's cards, the
notifications app's list, the music app's track and place in it) declares it
as a ``Kept``: a name, a schema, and whether it outlives a reboot. After each
change the process saves it; a process started again loads it before it goes
on the bus, so it comes back where its predecessor was. State that someone
else owns comes back from the bus instead (latched topics: the shell's focus,
powerd's batteries); this is for the rest, and the one way to do it.

The file is ``<state dir>/kept/<name>.json``, 0600, replaced atomically
(``bus.runtime.write_atomically``: old or new, never torn) at each change: a
process that crashes (kill -9, a bug) loses nothing it saved. Making it
survive a power cut as well costs an fsync of the file and its directory
(20 ms and more on a busy flash), which at each change made a flood of
notifications an fsync each and the app fall behind its socket; so for state
that outlives a reboot the fsync is coalesced: at most one per ``SYNC_S``,
the last change synced ``SYNC_S`` after it (``later``: the node's timer) or
at ``sync()`` (a clean stop). A power cut loses at most the last ``SYNC_S``
of changes, never the older state. State that dies with the boot is never
synced.

It is read back as input like any other: JSON (never a pickle), at most
``MAX_BYTES``, checked against the declared schema; a file that fails is
named in the log with why and the process starts afresh, losing only what it
could not have trusted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from bus.errors import PayloadError
from bus.runtime import boot_id, this_boot, write_atomically
from bus.fields import Schema

log = logging.getLogger(__name__)

MAX_BYTES = 1024 * 1024  # far above any process's own state; a larger file is not read at all
VERSION = 1
SYNC_S = 2.0  # at most one fsync per this long: what a power cut (not a crash) may lose


class Kept:
    def __init__(self, state_dir: Path, name: str, schema: dict, *, survives_reboot: bool = False,
                 later: Callable[[float, Callable[[], None]], Any] | None = None):
        """``later(seconds, callback)``: a timer (``Node.after``) for the fsync after a burst of changes;
        without one, a change within SYNC_S of the last fsync is synced at the next change or ``sync()``."""
        self.path = Path(state_dir) / "kept" / f"{name}.json"
        self.name, self.schema = name, Schema(schema)
        self.survives_reboot = survives_reboot
        self.later = later
        self.saved: dict | None = None  # what is on disk now: an unchanged state is not written again
        self.this_boot = False  # was what load() returned kept during this boot (a crash, not a reboot)?
        self.boot = boot_id()
        self.unsynced = False  # written, not yet fsync'ed
        self.synced_at = float("-inf")
        self.sync_armed = False
        self.failing: str | None = None  # the error last logged: a full disk is said once, not at every change

    def load(self) -> dict | None:
        """The state the last process of this name saved (this boot's, unless it survives reboots), or None."""
        try:
            if self.path.stat().st_size > MAX_BYTES:
                log.warning("%s: %s is larger than %d bytes; not read, starting afresh", self.name, self.path,
                            MAX_BYTES)
                return None
            top = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            log.warning("%s: kept state %s unreadable (%s); starting afresh", self.name, self.path, exc)
            return None
        if type(top) is not dict or top.get("version") != VERSION or type(top.get("state")) is not dict:
            log.warning("%s: kept state %s is not version %d of a kept state; starting afresh", self.name,
                        self.path, VERSION)
            return None
        ours = this_boot(top.get("boot"))  # either spelling of this boot's id (bus.runtime)
        if not self.survives_reboot and not ours:
            return None  # an earlier boot's (or, this boot unknown, maybe one's): what it kept died with it
        try:
            self.schema.validate(f"{self.path}", top["state"])
        except PayloadError as exc:
            log.warning("%s: kept state refused: %s; starting afresh", self.name, exc)
            return None
        self.saved, self.this_boot = top["state"], ours
        return top["state"]

    def save(self, state: dict) -> None:
        """Keep ``state`` (checked against the schema first: what cannot be read back is never written)."""
        if state == self.saved:
            return
        self.schema.validate(f"{self.name} (kept)", state)
        data = json.dumps({"version": VERSION, "boot": self.boot, "state": state}, sort_keys=True).encode()
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomically(self.path, data, durable=False)
        except OSError as exc:  # a full disk: the state lives on in the process, only a crash would lose it
            if self.failing != exc.strerror:
                log.warning("%s: keeping state in %s: %s (said once until it works again)", self.name, self.path,
                            exc.strerror)
            self.failing = exc.strerror
            return
        if self.failing is not None:
            log.info("%s: state kept in %s again", self.name, self.path)
            self.failing = None
        self.saved = state
        if not self.survives_reboot:
            return
        self.unsynced = True
        wait = self.synced_at + SYNC_S - time.monotonic()
        if wait <= 0:
            self.sync()
        elif self.later is not None and not self.sync_armed:
            self.sync_armed = True
            self.later(wait, self._synced_later)

    def sync(self) -> None:
        """What was saved, on the disk itself (a power cut keeps it): fsync of the file and its directory."""
        if not self.unsynced:
            return
        try:
            for path, flags in ((self.path, os.O_RDONLY), (self.path.parent, os.O_RDONLY | os.O_DIRECTORY)):
                fd = os.open(path, flags)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            log.warning("%s: syncing %s: %s", self.name, self.path, exc.strerror)
            return
        self.unsynced, self.synced_at = False, time.monotonic()

    def _synced_later(self) -> None:
        self.sync_armed = False
        self.sync()
