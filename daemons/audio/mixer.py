"""The speaker's mixer: several streams summed with numpy, every gain change ramped, never clipped.

Each stream (an utterance, a chime, a piece of music) carries its own gain,
which only ever moves towards its target along a ramp (``ramp_s`` for a full
0 to 1 swing), so ducking, muting, resuming and stopping make no clicks.
A stream put on hold stops advancing once its ramp reaches silence: music
suspended by a call picks up where it was, it does not play on unheard.

The sum goes through the master volume and a limiter whose gain drops at
once as far as a block's peak needs and recovers along the same ramp, so no
sample ever passes the ceiling.

The device's thread calls ``render``; the daemon's thread adds, levels and
stops streams. One lock keeps the two apart; no I/O happens under it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

CEILING = 0.98  # of full scale: what the limiter allows out


@dataclass(eq=False)  # a stream is itself, not its fields: comparing the numpy pcm of two raises
class Stream:
    owner: str
    id: str
    pcm: np.ndarray  # float32 mono at the mixer's rate, -1..1
    kind: str = "sound"  # speech, sound or music: what audio.state shows
    loop: bool = False
    volume: float = 1.0  # the stream's own level, as the requester asked
    gain: float = 0.0  # where the ramp is now; streams fade in from silence
    target: float = 1.0
    hold: bool = False  # once silent, stop advancing (suspended, waiting)
    pos: int = 0
    ending: str | None = None  # why it is fading out to be removed (stopped, interrupted)
    started: bool = field(default=False)  # has been heard (gain above zero) at least once
    trace: int = 0  # the work it is a hop of (bus.tracing): the speech that says a traced answer
    sound: str | None = None  # the name or file it plays (audio.play.request): kept across a crash; None: speech
    start_s: float = 0.0  # where in that sound its samples begin

    @property
    def status(self) -> str:
        if self.ending:
            return "ending"
        if self.hold and self.gain == 0.0:
            return "held"
        return "playing" if self.target >= 1.0 else "ducked" if self.target > 0 else "fading"

    def as_dict(self, rate: int) -> dict:
        return {"owner": self.owner, "id": self.id, "kind": self.kind, "status": self.status,
                "gain": round(self.gain, 3), "position_s": round(self.pos / rate, 3),
                "length_s": round(len(self.pcm) / rate, 3), "loop": self.loop}


class Mixer:
    def __init__(self, rate: int, ramp_s: float, volume: float = 1.0):
        self.rate, self.volume = rate, volume
        self.step_per_sample = 1.0 / max(1.0, ramp_s * rate)
        self.streams: list[Stream] = []
        self.finished: list[tuple[Stream, str]] = []  # (stream, finished|stopped|interrupted), taken by the daemon
        self.limiter = 1.0
        self.peak = 0.0  # of the last block, after the limiter
        self.rendered = 0  # samples
        self.lock = threading.Lock()

    # --- the daemon's side ----------------------------------------------------------
    def add(self, stream: Stream) -> None:
        with self.lock:
            for old in self.streams:
                if old.owner == stream.owner and old.id == stream.id and not old.ending:
                    self._end(old, "replaced")
            self.streams.append(stream)

    def stop(self, owner: str, id: str | None = None, why: str = "stopped") -> int:
        """Fade out the owner's streams (one, or all without an id); how many."""
        with self.lock:
            hits = [s for s in self.streams if s.owner == owner and (id is None or s.id == id) and not s.ending]
            for stream in hits:
                self._end(stream, why)
            return len(hits)

    def level(self, owner: str, target: float, hold: bool) -> None:
        with self.lock:
            for stream in self.streams:
                if stream.owner == owner and not stream.ending:
                    stream.target, stream.hold = target, hold

    def take_finished(self) -> list[tuple[Stream, str]]:
        with self.lock:
            done, self.finished = self.finished, []
            return done

    def snapshot(self) -> list[dict]:
        with self.lock:
            return [s.as_dict(self.rate) for s in self.streams]

    def drop_all(self, why: str) -> None:
        """Everything ends now, unheard (the device failed)."""
        with self.lock:
            self.finished += [(s, why) for s in self.streams]
            self.streams = []

    @property
    def busy(self) -> bool:
        with self.lock:
            return bool(self.streams)

    @property
    def quiet(self) -> bool:
        """Nothing can be heard or is ramping: every stream (if any) is held in silence."""
        with self.lock:
            return all(s.hold and s.gain == 0.0 and s.target == 0.0 for s in self.streams)

    def _end(self, stream: Stream, why: str) -> None:
        stream.ending, stream.target, stream.hold = why, 0.0, False

    # --- the device's side ------------------------------------------------------------
    def render(self, frames: int) -> np.ndarray:
        """The next ``frames`` samples of the speaker, float32 within +-CEILING."""
        out = np.zeros(frames, dtype=np.float32)
        with self.lock:
            for stream in list(self.streams):
                self._mix(stream, out)
            self.rendered += frames
        out *= self.volume
        return self._limit(out)

    def _mix(self, stream: Stream, out: np.ndarray) -> None:
        frames = len(out)
        if stream.hold and stream.gain == 0.0 and stream.target == 0.0:
            return  # held in place: not a sample is skipped while it cannot be heard
        start = stream.gain
        end = _towards(start, stream.target, self.step_per_sample * frames)
        envelope = np.linspace(start, end, frames, endpoint=False, dtype=np.float32) if start != end else start
        chunk = self._take(stream, frames)
        out[: len(chunk)] += chunk * (envelope[: len(chunk)] if isinstance(envelope, np.ndarray) else envelope) \
            * stream.volume
        stream.gain = end
        stream.started = stream.started or end > 0
        if stream.ending and end == 0.0:
            self.streams.remove(stream)
            self.finished.append((stream, stream.ending))
        elif len(chunk) < frames:
            self.streams.remove(stream)
            self.finished.append((stream, "finished"))

    def _take(self, stream: Stream, frames: int) -> np.ndarray:
        pcm, pos = stream.pcm, stream.pos
        if not stream.loop or len(pcm) == 0:
            chunk = pcm[pos: pos + frames]
            stream.pos = pos + len(chunk)
            return chunk
        reps = -(-(pos % len(pcm) + frames) // len(pcm))  # enough copies to cover the block
        tiled = np.tile(pcm, reps + 1)
        start = pos % len(pcm)
        stream.pos = pos + frames
        return tiled[start: start + frames]

    def _limit(self, out: np.ndarray) -> np.ndarray:
        peak = float(np.max(np.abs(out))) if len(out) else 0.0
        needed = min(1.0, CEILING / peak) if peak > 0 else 1.0
        if needed < self.limiter:
            out *= needed  # attack at once: a block's worth of ramp would clip its first samples
            self.limiter = needed
        elif self.limiter < 1.0:  # release along the ramp, never past what this block allows
            new = min(needed, _towards(self.limiter, 1.0, self.step_per_sample * len(out)))
            out *= np.linspace(self.limiter, new, len(out), endpoint=False, dtype=np.float32)
            self.limiter = new
        np.clip(out, -CEILING, CEILING, out=out)  # float rounding only
        self.peak = float(np.max(np.abs(out))) if len(out) else 0.0
        return out


def _towards(value: float, target: float, step: float) -> float:
    if value < target:
        return min(target, value + step)
    return max(target, value - step)
