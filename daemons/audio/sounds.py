"""What audiod can play: speech from an offline voice, the built-in sounds, and WAV files.

Everything comes out as float32 mono at the speaker's rate. The voice is
behind one small interface (``synthesize(text) -> (pcm, rate)``) so a better
engine can replace espeak-ng without audiod noticing.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np


class SoundError(ValueError):
    """A sound that cannot be played: unknown name, unreadable or unsupported file, a voice that failed."""


def resample(pcm: np.ndarray, rate: int, to: int) -> np.ndarray:
    """Linear interpolation: plenty for speech and chimes through a bone-conduction transducer."""
    if rate == to or len(pcm) == 0:
        return pcm.astype(np.float32, copy=False)
    n = int(round(len(pcm) * to / rate))
    return np.interp(np.arange(n) * (rate / to), np.arange(len(pcm)), pcm).astype(np.float32)


def decode_wav(data: bytes | Path, to_rate: int) -> np.ndarray:
    """A PCM WAV (8, 16 or 32-bit integer, any channels) as float32 mono at ``to_rate``."""
    try:
        with wave.open(io.BytesIO(data) if isinstance(data, bytes) else str(data), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError, OSError) as exc:
        raise SoundError(f"not a readable PCM WAV: {exc}") from None
    if width == 1:
        pcm = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width in (2, 4):
        kind = np.int16 if width == 2 else np.int32
        pcm = np.frombuffer(raw, kind).astype(np.float32) / float(np.iinfo(kind).max)
    else:
        raise SoundError(f"{width * 8}-bit WAV is not supported (8, 16 or 32-bit integer PCM)")
    if channels > 1:
        pcm = pcm[: len(pcm) // channels * channels].reshape(-1, channels).mean(axis=1)
    return resample(pcm, rate, to_rate)


def tone(freq: float, seconds: float, rate: int, level: float = 0.5, decay: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    out = level * np.sin(2 * np.pi * freq * t)
    if decay:
        out *= np.exp(-decay * t)
    fade = min(len(out), int(0.005 * rate))  # 5 ms edges: a tone that starts or stops clean
    if fade:
        out[:fade] *= np.linspace(0, 1, fade)
        out[-fade:] *= np.linspace(1, 0, fade)
    return out.astype(np.float32)


def builtin(name: str, rate: int) -> np.ndarray:
    """The glasses' own sounds, synthesized, so nothing ships as a binary asset."""
    if name == "chime":  # a notification: two bell-like notes
        return np.concatenate([tone(880, 0.18, rate, 0.5, 8.0), tone(1318.5, 0.35, rate, 0.5, 6.0)])
    if name == "beep":
        return tone(1000, 0.12, rate, 0.4)
    if name == "listen":  # the assistant is listening
        return np.concatenate([tone(660, 0.08, rate, 0.4), tone(990, 0.1, rate, 0.4)])
    if name == "music":  # a calm arpeggio for the music demo, four seconds, loops cleanly
        notes = [261.6, 329.6, 392.0, 523.3, 392.0, 329.6, 293.7, 349.2]
        return np.concatenate([tone(f, 0.5, rate, 0.35, 1.5) for f in notes])
    raise SoundError(f"unknown sound {name!r} (built in: {', '.join(BUILTIN)}; or an absolute path to a .wav)")


BUILTIN = ("chime", "beep", "listen", "music")


def load(sound: str, rate: int) -> np.ndarray:
    if sound in BUILTIN:
        return builtin(sound, rate)
    path = Path(sound)
    if not path.is_absolute() or path.suffix.lower() != ".wav":
        raise SoundError(f"unknown sound {sound!r} (built in: {', '.join(BUILTIN)}; or an absolute path to a .wav)")
    return decode_wav(path, rate)


class EspeakVoice:
    """Debian's espeak-ng: offline, small, many languages; a WAV comes back on stdout."""

    name = "espeak-ng"

    def __init__(self, voice: str, words_per_minute: int, binary: str = "espeak-ng"):
        self.binary = shutil.which(binary)
        if self.binary is None:
            raise SoundError(f"{binary} is not installed (Debian: apt-get install espeak-ng)")
        self.voice, self.wpm = voice, words_per_minute

    def synthesize(self, text: str, rate: int) -> np.ndarray:
        try:
            done = subprocess.run([self.binary, "--stdout", "-v", self.voice, "-s", str(self.wpm), "--", text],
                                  capture_output=True, timeout=30, check=False)
        except subprocess.TimeoutExpired:
            raise SoundError("espeak-ng took longer than 30 s") from None
        if done.returncode != 0 or not done.stdout:
            raise SoundError(f"espeak-ng failed ({done.returncode}): {done.stderr.decode(errors='replace')[:200]}")
        return decode_wav(done.stdout, rate)


class ToneVoice:
    """No speech engine: a short tone per word, so the wearer still hears that something was said."""

    name = "tones"

    def synthesize(self, text: str, rate: int) -> np.ndarray:
        words = text.split() or [""]
        gap = np.zeros(int(0.06 * rate), np.float32)
        parts = []
        for word in words:
            parts += [tone(300 + 40 * (len(word) % 8), 0.05 + 0.03 * min(len(word), 8), rate, 0.3), gap]
        return np.concatenate(parts)


def voice(kind: str, name: str, wpm: int):
    return EspeakVoice(name, wpm) if kind == "espeak-ng" else ToneVoice()
