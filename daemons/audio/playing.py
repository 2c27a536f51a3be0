"""What audiod keeps across its own crash: the sounds that were playing, and where each had got to.

A killed audiod came back silent while the music app still said "playing" (issue 28, line 6, found by
tests/test_restarts.py once it killed audiod too). The sounds it plays by name or file are its own state, so
it keeps them (bus.kept: JSON, atomically replaced, this boot's only): for each, its owner, id, sound, loop
and volume, where it was and when (CLOCK_MONOTONIC, which a process restart does not reset), and whether
it was held. It saves at every change that moves them otherwise than in time (a play, a stop, an end, a
focus change that holds or frees one), so between saves a stream either played on or stood still, and a
restarted audiod knows where each is now. Speech is not kept: a sentence cut by a crash is not said again
from its middle, and its owner is told it failed.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from bus.kept import Kept
from daemons.audio.mixer import Mixer, Stream
from daemons.audio.sounds import SoundError, load as load_sound

log = logging.getLogger("audiod")

KEPT = {"sounds": "list[dict]", "speaking": "list[dict]"}


def saved(streams: list[Stream], rate: int, now: float) -> dict:
    """The state to keep: every sound not ending, with its place now; each speech's owner and id."""
    sounds, speaking = [], []
    for stream in streams:
        if stream.ending:
            continue
        if stream.sound is None:
            speaking.append({"owner": stream.owner, "id": stream.id})
            continue
        length = len(stream.pcm) / rate
        at = stream.start_s + (stream.pos / rate if not stream.loop or not length else (stream.pos / rate) % length)
        sounds.append({"owner": stream.owner, "id": stream.id, "sound": stream.sound, "loop": stream.loop,
                       "volume": stream.volume, "position_s": round(at, 3), "at": now,
                       "held": stream.hold})  # what the focus asks; the ramp to silence is milliseconds
    return {"sounds": sounds, "speaking": speaking}


def resumed(entry: dict, length_s: float, now: float) -> float | None:
    """Where a kept sound is now: its place then, plus the time since unless it was held; None once a sound
    that does not loop would have ended meanwhile."""
    at = entry["position_s"] + (0.0 if entry["held"] else max(0.0, now - entry["at"]))
    if at < length_s:
        return at
    return at % length_s if entry["loop"] and length_s > 0 else None


class Playing:
    """audiod's kept sounds: saved at each change, played again at a restart."""

    def __init__(self, kept: Kept):
        # Read now, before the node starts: the latched focus it hears on the way in makes audiod save
        # what plays (nothing yet), which would otherwise replace what its predecessor kept.
        self.kept, self.shape, self.left = kept, None, kept.load() or {}

    def keep(self, mixer: Mixer, rate: int) -> None:
        """Save when what plays changed otherwise than in time; positions alone move predictably."""
        with mixer.lock:
            state = saved(mixer.streams, rate, time.monotonic())
        shape = ([{k: v for k, v in s.items() if k not in ("position_s", "at")} for s in state["sounds"]],
                 state["speaking"])
        if shape != self.shape:
            self.shape = shape
            self.kept.save(state)

    def restore(self, rate: int, add: Callable[[Stream], None], publish: Callable[..., None]) -> None:
        """Play again what a killed audiod was playing, from where it had got to; tell the owners of what
        cannot go on (a sentence cut, a sound that ended meanwhile, one that cannot be loaded)."""
        state, self.left = self.left, {}
        for entry in state.get("sounds", []):
            try:
                pcm = load_sound(entry["sound"], rate)
                at = resumed(entry, len(pcm) / rate, time.monotonic())
            except (SoundError, KeyError, TypeError) as exc:
                log.warning("cannot play %s's %s again: %s", entry.get("owner"), entry.get("id"), exc)
                at = None
            if at is None:
                publish("audio.played", owner=entry["owner"], id=entry["id"], status="finished")
                continue
            add(Stream(entry["owner"], entry["id"], pcm[int(at * rate):], "music" if entry["loop"] else "sound",
                       entry["loop"], entry["volume"], sound=entry["sound"], start_s=at))
            log.info("playing %s's %s again from %.1f s (audiod restarted)", entry["owner"], entry["id"], at)
        for entry in state.get("speaking", []):
            publish("audio.played", owner=entry["owner"], id=entry["id"], status="failed")
