"""The wake phrase's ear: pocketsphinx's keyword search over no more audio than the phrase takes to say.

This is the part of the wake-phrase spotter that hears; the process around it (daemons/wake/__main__.py)
is the only reader of the mic while nobody captures, and may publish nothing but ``assistant.wake``.
What it keeps is the point: a window of the last ``window_s`` of audio, overwritten in place as blocks come,
and nothing else. Every ``hop_s`` the window is decoded from scratch (the decoder starts and ends an
utterance each time, so it carries nothing from one decode to the next), and on a detection the window is
zeroed and emptied before anyone is told: the words that follow the phrase are the request's, heard by the
assistant behind the LED, never by the spotter.

How sure it must be depends on the noise. The keyword search weighs the phrase against free phones, and in
steady noise (a fan, traffic) every sound scores closer to the phrase: at the threshold quiet speech needs,
other talk over pink noise at 10 dB SNR woke the glasses 7 times a minute (bench/voice.py --wake), each a
capture behind the LED that nobody asked for. So each window's noise floor (the quietest fifth of its 20 ms
frames) picks one of two keyword searches: the quiet one's threshold, or a stricter one where the floor is
over NOISY_FLOOR_DB. Its dictionary holds the phrase's words only, not the wheel's 135,000 (22 MiB less).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np


RATE = 16000
WINDOW_S = 1.5  # "hey lens" takes espeak-ng 0.9-1.2 s at 140-200 words a minute; a little over
# How often the window is decoded: the phrase is heard at most this late. audiod sends the mic in blocks of
# this length (audio.wake.mic's rate in the topic table, 4 a second; tests/bus/test_table.py holds them equal)
HOP_S = 0.25
# The keyword search's detection thresholds, chosen on bench/voice.py --wake: in a quiet room, and over a noise
# floor above NOISY_FLOOR_DB (dBFS; the sim's quiet room is at -60, pink noise 10 dB under speech at -27).
THRESHOLD = 1e-35
NOISY_THRESHOLD = 1e-20
NOISY_FLOOR_DB = -45.0
FRAME = 320  # 20 ms: the frames whose loudness gives the window's noise floor


class SpotterError(RuntimeError):
    """The spotter cannot be used as configured (no pocketsphinx, a phrase it cannot know)."""


class WakeSpotter:
    def __init__(self, phrase: str, window_s: float = WINDOW_S, hop_s: float = HOP_S, threshold: float = THRESHOLD,
                 noisy_threshold: float = NOISY_THRESHOLD, noisy_floor_db: float = NOISY_FLOOR_DB):
        try:
            import pocketsphinx
        except ImportError:
            raise SpotterError("the wake phrase needs the pocketsphinx package (pip install pocketsphinx)") from None
        self.phrase = " ".join(phrase.lower().split())
        whole = Path(pocketsphinx.__file__).parent / "model" / "en-us" / "cmudict-en-us.dict"
        words = set(self.phrase.split())
        # "word phones", or "word(2) phones" for another pronunciation: every one the wheel's dictionary has
        known = [line for line in whole.read_text().splitlines(True) if line.split(" ", 1)[0].split("(")[0] in words]
        unknown = words - {line.split(" ", 1)[0].split("(")[0] for line in known}
        if unknown:
            raise SpotterError(f"the wake phrase's words {sorted(unknown)} are not in the recognizer's dictionary")
        self.noisy_floor_db = noisy_floor_db
        with _in_memory("".join(known)) as dictionary:
            self.decoder = pocketsphinx.Decoder(lm=None, dict=dictionary, samprate=RATE, logfn=os.devnull)
        for search, limit in (("quiet", threshold), ("noisy", noisy_threshold)):
            with _in_memory(f"{self.phrase} /{limit:g}/\n") as keyphrase:
                self.decoder.add_kws(search, keyphrase)
        self.decoder.activate_search("quiet")
        self.window = np.zeros(int(window_s * RATE), np.int16)  # the only audio it holds, overwritten in place
        self.filled = 0  # samples of the window that hold audio
        self.hop, self.since = int(hop_s * RATE), 0

    @property
    def held_s(self) -> float:
        return self.filled / RATE

    def feed(self, pcm: bytes, decode: bool = True) -> bool:
        """One block of the mic (int16 at 16 kHz); True when the phrase was just heard (the window is empty then).

        decode=False keeps the block in the window without decoding it, for a listener that has fallen behind:
        the next block fed with decode=True decodes the window at once."""
        block = np.frombuffer(pcm, np.int16)[-len(self.window):]
        n = len(block)
        self.window[:-n] = self.window[n:]
        self.window[-n:] = block
        self.filled = min(len(self.window), self.filled + n)
        self.since += n
        if self.since < self.hop or not decode:
            return False
        self.since = 0
        if not self._heard(self.window[-self.filled:]):
            return False
        self.clear()
        return True

    def _heard(self, audio: np.ndarray) -> bool:
        self.decoder.activate_search("noisy" if floor_db(audio) > self.noisy_floor_db else "quiet")
        self.decoder.start_utt()
        try:
            self.decoder.process_raw(audio.tobytes(), False, True)
            return self.decoder.hyp() is not None
        finally:
            self.decoder.end_utt()

    def clear(self) -> None:
        self.window[:] = 0
        self.filled, self.since = 0, 0


def floor_db(audio: np.ndarray) -> float:
    """The window's noise floor: the loudness (dBFS) of its quietest fifth of 20 ms frames, which in steady
    noise is the noise, and in a quiet room the room, whatever is said over it."""
    frames = audio[: len(audio) // FRAME * FRAME].astype(np.float32).reshape(-1, FRAME)
    if not len(frames):
        return -120.0
    rms = np.sqrt((frames * frames).mean(axis=1))
    return float(20 * np.log10(max(np.percentile(rms, 20), 1.0) / 32768))


@contextmanager
def _in_memory(text: str) -> Iterator[str]:
    """A path the decoder reads ``text`` from, once, while it is set up: a memfd, as waked's unit may write
    nowhere."""
    fd = os.memfd_create("wake")
    try:
        os.write(fd, text.encode())
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)
