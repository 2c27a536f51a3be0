"""What the simulated mic hears: a sentence spoken by espeak-ng, or a WAV, optionally over noise.

So the whole voice path runs in development and tests (`lens mic say "what
time is it"`), and the accuracy bench speaks the same way. espeak-ng speaks
at 22.05 kHz; it is brought to the mic's rate by FFT (band-limited), not by
linear interpolation, whose aliasing of espeak's bright formants costs the
recognizer words. The default voice is one pocketsphinx's US English model
hears well (bench/voice.py measures the others).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

from daemons.audio.sounds import SoundError

VOICE = "en-us+f3"
WORDS_PER_MINUTE = 160
MAX_SECONDS = 30.0  # of speech queued into the mic at once
VOICED = 0.02  # of the loudest sample: quieter is the room, or espeak-ng's fading tail and its own trailing pause


def _read_wav(data: bytes | Path) -> tuple[np.ndarray, int]:
    try:
        with wave.open(io.BytesIO(data) if isinstance(data, bytes) else str(data)) as w:
            if w.getsampwidth() != 2:
                raise SoundError("only 16-bit PCM WAV is supported")
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64)
            return pcm.reshape(-1, w.getnchannels()).mean(axis=1), w.getframerate()
    except (wave.Error, EOFError, OSError) as exc:
        raise SoundError(f"not a WAV file: {exc}") from None


def resample(pcm: np.ndarray, rate: int, to: int) -> np.ndarray:
    if rate == to or not len(pcm):
        return pcm
    n = int(round(len(pcm) * to / rate))
    spectrum = np.fft.rfft(pcm)
    keep = np.zeros(n // 2 + 1, complex)
    m = min(len(keep), len(spectrum))
    keep[:m] = spectrum[:m]
    return np.fft.irfft(keep, n) * (n / len(pcm))


def _int16(pcm: np.ndarray) -> np.ndarray:
    return np.clip(np.round(pcm), -32768, 32767).astype(np.int16)


def speak(text: str, rate: int, voice: str = VOICE, wpm: int = WORDS_PER_MINUTE) -> np.ndarray:
    """int16 at ``rate``: ``text`` as espeak-ng says it."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise SoundError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    try:
        done = subprocess.run([binary, "--stdout", "-v", voice, "-s", str(wpm), "--", text],
                              capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        raise SoundError("espeak-ng took longer than 30 s") from None
    if done.returncode != 0 or not done.stdout:
        raise SoundError(f"espeak-ng failed ({done.returncode}): {done.stderr.decode(errors='replace')[:200]}")
    pcm, native = _read_wav(done.stdout)
    return _check(_int16(resample(pcm, native, rate)), rate)


def load_wav(path: str, rate: int) -> np.ndarray:
    pcm, native = _read_wav(Path(path))
    return _check(_int16(resample(pcm, native, rate)), rate)


def _check(pcm: np.ndarray, rate: int) -> np.ndarray:
    if len(pcm) > MAX_SECONDS * rate:
        raise SoundError(f"longer than {MAX_SECONDS:.0f} s")
    return pcm


def with_noise(pcm: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``pcm`` with ``noise`` (looped) mixed in at ``snr_db`` below the speech's power (over its voiced part)."""
    speech = pcm.astype(np.float64)
    voiced = speech[np.abs(speech) > 0.05 * np.abs(speech).max()] if np.any(speech) else speech
    noise = np.resize(noise.astype(np.float64), len(speech))
    p_speech, p_noise = np.mean(voiced ** 2), np.mean(noise ** 2)
    if p_noise == 0:
        return pcm
    return _int16(speech + noise * np.sqrt(p_speech / p_noise / 10 ** (snr_db / 10)))


def voiced_end(pcm: np.ndarray, loudest: int | None = None) -> int | None:
    """Where the speech in ``pcm`` ends: the index after its last voiced sample (None: nothing voiced), the
    end of speech the benches time from. ``loudest``: of the whole, when ``pcm`` is one block of it."""
    wide = np.abs(pcm.astype(np.int32))
    if loudest is None:
        loudest = int(wide.max()) if len(wide) else 0
    voiced = np.flatnonzero(wide > VOICED * loudest)
    return int(voiced[-1]) + 1 if len(voiced) else None
