"""The wake phrase's ear: pocketsphinx's keyword search over no more audio than the phrase takes to say.

This is the part of the wake-phrase spotter that hears; the process around it (daemons/wake/__main__.py)
is the only reader of the mic while nobody captures, and may publish nothing but ``assistant.wake``.
What it keeps is the point: a window of the last ``window_s`` of audio, overwritten in place as blocks come,
and nothing else. Every ``hop_s`` the window is decoded from scratch (the decoder starts and ends an
utterance each time, so it carries nothing from one decode to the next), and on a detection the window is
zeroed and emptied before anyone is told: the words that follow the phrase are the request's, heard by the
assistant behind the LED, never by the spotter.
"""

from __future__ import annotations

import os

import numpy as np


RATE = 16000
WINDOW_S = 1.5  # "hey lens" takes espeak-ng 0.9-1.2 s at 140-200 words a minute; a little over
# How often the window is decoded: the phrase is heard at most this late. audiod sends the mic in blocks of
# this length (audio.wake.mic's rate in the topic table, 4 a second; tests/bus/test_table.py holds them equal)
HOP_S = 0.25
THRESHOLD = 1e-35  # keyword search's detection threshold, chosen on bench/voice.py --wake


class SpotterError(RuntimeError):
    """The spotter cannot be used as configured (no pocketsphinx, a phrase it cannot know)."""


class WakeSpotter:
    def __init__(self, phrase: str, window_s: float = WINDOW_S, hop_s: float = HOP_S, threshold: float = THRESHOLD):
        try:
            import pocketsphinx
        except ImportError:
            raise SpotterError("the wake phrase needs the pocketsphinx package (pip install pocketsphinx)") from None
        self.phrase = " ".join(phrase.lower().split())
        self.decoder = pocketsphinx.Decoder(lm=None, keyphrase=self.phrase, kws_threshold=threshold,
                                            samprate=RATE, logfn=os.devnull)
        unknown = [w for w in self.phrase.split() if self.decoder.lookup_word(w) is None]
        if unknown:
            raise SpotterError(f"the wake phrase's words {unknown} are not in the recognizer's dictionary")
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
        self.decoder.start_utt()
        try:
            self.decoder.process_raw(audio.tobytes(), False, True)
            return self.decoder.hyp() is not None
        finally:
            self.decoder.end_utt()

    def clear(self) -> None:
        self.window[:] = 0
        self.filled, self.since = 0, 0
