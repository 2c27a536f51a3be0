"""An energy voice-activity detector: speech starts and ends, from the level of each mic chunk.

The noise floor follows the quietest recent level (it drops at once, rises
slowly), and speech is a level both above an absolute threshold and a margin
above that floor, held for ``start_s``; it ends after ``hang_s`` below.
Enough for a push-to-talk assistant in a quiet room and cheap on a board.
"""

from __future__ import annotations

import math

import numpy as np


def level_db(pcm: np.ndarray) -> float:
    """RMS in dB relative to full scale (int16 or float -1..1); -120 for silence."""
    x = pcm.astype(np.float32)
    if pcm.dtype == np.int16:
        x /= 32768.0
    rms = float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
    return 20.0 * math.log10(rms) if rms > 1e-6 else -120.0


class Vad:
    def __init__(self, threshold_db: float, margin_db: float, start_s: float, hang_s: float):
        self.threshold_db, self.margin_db = threshold_db, margin_db
        self.start_s, self.hang_s = start_s, hang_s
        self.floor = None  # dBFS
        self.speaking = False
        self.run_s = 0.0  # how long the level has disagreed with ``speaking``
        self.level = -120.0

    def feed(self, pcm: np.ndarray, seconds: float) -> bool | None:
        """The chunk's verdict: True when speech started with it, False when it ended, None otherwise."""
        self.level = level_db(pcm)
        if self.floor is None or self.level < self.floor:
            self.floor = self.level
        else:
            self.floor += min(self.level - self.floor, 1.0 * seconds)  # about 1 dB a second upwards
        loud = self.level > self.threshold_db and self.level > self.floor + self.margin_db
        if loud == self.speaking:
            self.run_s = 0.0
            return None
        self.run_s += seconds
        if self.run_s + 1e-9 < (self.start_s if loud else self.hang_s):
            return None
        self.speaking, self.run_s = loud, 0.0
        return loud
