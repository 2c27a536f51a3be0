"""The music app's tracks: the WAV files of $LENS_MUSIC_DIR, or a few demo tunes made on first start.

The demo tunes are synthesised with numpy (an arpeggio over a soft bass,
each in its own key and pace) and written once into the runtime
directory, so a fresh system has something to play and nothing is
downloaded.
"""

from __future__ import annotations

import os
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 16_000
DEMOS = (("Morning walk", 220.0, 0.25), ("Harbour lights", 196.0, 0.35), ("Night train", 174.6, 0.3))


@dataclass(frozen=True)
class Track:
    title: str
    path: Path
    length_s: float


def _tune(root: float, beat: float, seconds: float = 20.0) -> np.ndarray:
    t = np.arange(int(RATE * beat)) / RATE
    envelope = np.exp(-t * 6.0)
    notes = []
    for step in range(int(seconds / beat)):
        ratio = (1.0, 1.25, 1.5, 2.0, 1.5, 1.25)[step % 6] * (1.0 if step % 24 < 12 else 1.122)
        tone = np.sin(2 * np.pi * root * 2 * ratio * t) * envelope
        bass = 0.4 * np.sin(2 * np.pi * root / 2 * t)
        notes.append(0.35 * (tone + bass))
    pcm = np.concatenate(notes)
    fade = np.minimum(1.0, np.minimum(np.arange(len(pcm)), len(pcm) - np.arange(len(pcm))) / (RATE * 0.5))
    return (pcm * fade * 32767 * 0.8).astype(np.int16)


def _write(path: Path, pcm: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.tobytes())
    tmp.replace(path)


def _length(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def tracks(runtime_dir: Path) -> list[Track]:
    folder = os.environ.get("LENS_MUSIC_DIR")
    if folder:
        found = []
        for path in sorted(Path(folder).glob("*.wav")):
            try:
                found.append(Track(path.stem.replace("_", " "), path.resolve(), _length(path)))
            except (OSError, wave.Error, EOFError):
                continue  # not a WAV we can play: left out, not fatal
        if found:
            return found
    demo = runtime_dir / "music"
    demo.mkdir(mode=0o700, exist_ok=True)
    out = []
    for title, root, beat in DEMOS:
        path = demo / (title.lower().replace(" ", "-") + ".wav")
        if not path.exists():
            _write(path, _tune(root, beat))
        out.append(Track(title, path, _length(path)))
    return out
