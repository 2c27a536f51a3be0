"""What a process keeps across its own crash: the state it declares it owns, back within a second.

Every process that owns state nobody else holds (displayd's cards, the
notifications app's list, the music app's track and place in it) declares it
as a ``Kept``: a name, a schema, and whether it outlives a reboot. After each
change the process saves it; a process started again loads it before it goes
on the bus, so it comes back where its predecessor was. State that someone
else owns comes back from the bus instead (latched topics: the shell's focus,
powerd's batteries); this is for the rest, and the one way to do it.

The file is ``<state dir>/kept/<name>.json``, 0600, replaced atomically
(``bus.runtime.write_atomically``: old or new, never torn; no fsync for state
that dies with the boot anyway). It is read back as input like any other: JSON
(never a pickle), at most ``MAX_BYTES``, checked against the declared schema;
a file that fails is named in the log with why and the process starts afresh,
losing only what it could not have trusted.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from bus.errors import PayloadError
from bus.runtime import write_atomically
from bus.schema import Schema

log = logging.getLogger(__name__)

MAX_BYTES = 1024 * 1024  # far above any process's own state; a larger file is not read at all
VERSION = 1


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class Kept:
    def __init__(self, state_dir: Path, name: str, schema: dict, *, survives_reboot: bool = False):
        self.path = Path(state_dir) / "kept" / f"{name}.json"
        self.name, self.schema = name, Schema(schema)
        self.survives_reboot = survives_reboot
        self.saved: dict | None = None  # what is on disk now: an unchanged state is not written again
        self.this_boot = False  # was what load() returned kept during this boot (a crash, not a reboot)?
        self.boot = boot_id()

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
        if not self.survives_reboot and top.get("boot") != self.boot:
            return None  # an earlier boot's: what it kept died with it
        try:
            self.schema.validate(f"{self.path}", top["state"])
        except PayloadError as exc:
            log.warning("%s: kept state refused: %s; starting afresh", self.name, exc)
            return None
        self.saved, self.this_boot = top["state"], top.get("boot") == self.boot
        return top["state"]

    def save(self, state: dict) -> None:
        """Keep ``state`` (checked against the schema first: what cannot be read back is never written)."""
        if state == self.saved:
            return
        self.schema.validate(f"{self.name} (kept)", state)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = json.dumps({"version": VERSION, "boot": self.boot, "state": state}, sort_keys=True).encode()
        try:
            write_atomically(self.path, data, durable=self.survives_reboot)
        except OSError as exc:  # a full disk: the state lives on in the process, only a crash would lose it
            log.warning("%s: keeping state in %s: %s", self.name, self.path, exc.strerror)
            return
        self.saved = state
