"""`lens paths`: where lensos keeps what it makes (photos, recordings, the privacy log, saved state, the bus).

One table: each place, the process that writes it, and its name inside that process's state directory
(or the runtime directory). In development every process shares one state directory (``$LENS_STATE_DIR``
or ``~/.local/state/lensos``); on the board each has its own, ``/var/lib/lensos/<process>`` (manager/units.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from bus import keys
from bus.runtime import Runtime, state_dir
from policies.loader import load, resolve_dir
from manager import units
from shell.daemon import AUDIT_FILE, SAVED_FILE


class Place(NamedTuple):
    name: str
    owner: str  # the process that writes it: on the board, whose state directory holds it ("": all of them)
    under: str  # "state", "runtime", or "media" (the policy's [camera] media_dir, else the state directory)
    relative: str  # "" for the directory itself
    what: str


PLACES = (
    Place("photos", "camerad", "media", "photos", "a photo (\"take a photo\"): DATE-TIME-FRAME.jpg"),
    Place("recordings", "camerad", "media", "recordings", "a video: a directory per recording, segments and index"),
    Place("privacy_log", "shell", "state", AUDIT_FILE, "every camera and mic session (`lens privacy log`)"),
    Place("saved_state", "shell", "state", SAVED_FILE, "what the shell saves at a critical stop, for the next boot"),
    Place("state", "", "state", "", "the state directory, all of the above (on the board, one per process)"),
    Place("runtime", "broker", "runtime", "", "the bus: sockets, latched state, the tap; gone at reboot"),
)


def paths(runtime_dir: str | None = None, board: bool = False) -> dict[str, dict[str, str]]:
    """{name: {"path", "what"}} for this development machine (as `lens up` from this shell would use them),
    or for the board."""
    runtime = Path(units.RUNTIME_DIR) if board else Runtime.resolve(runtime_dir).dir
    media = load().hardware.camera.media_dir  # where camerad puts them (daemons.camera.media_dir)
    found = {}
    for place in PLACES:
        if place.under == "runtime":
            base = runtime
        elif place.under == "media" and media:
            base = Path(media)
        else:
            base = Path(units.STATE_ROOT, place.owner) if board else state_dir(None, runtime)
        found[place.name] = {"path": str(base / place.relative if place.relative else base), "what": place.what}
    found["keys"] = {"path": units.KEYS_DIR if board else str(keys.keys_dir(Runtime(runtime))),
                     "what": "the processes' CURVE keys (development: made by `lens up`)"}
    found["policies"] = {"path": str(resolve_dir()), "what": "the policy files (`lens policy check`)"}
    return found


def render(found: dict[str, dict[str, str]]) -> str:
    width = max(len(path["path"]) for path in found.values())
    return "\n".join(f"{name:12} {place['path']:{width}}  {place['what']}" for name, place in found.items())
