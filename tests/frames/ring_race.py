"""The two sides of tests/frames/test_seqlock.py's race, each run as a process of its own:

    python -m tests.frames.ring_race write RING   # writes frame n (every pixel n % 256) until killed
    python -m tests.frames.ring_race read RING N  # reads until N frames were accepted; one JSON line

Frame n goes to slot n % SLOTS, so a slot's k-th frame (generation 2k) is frame slot + (k - 1) * SLOTS: a
reader knows from the generation alone which frame it must see, and so which value every pixel must have."""

from __future__ import annotations

import json
import random
import sys

import numpy as np

from frames.ring import FrameOverrun, Ring

SLOTS = 3
SHAPE = (120, 160, 3)  # big enough that a copy takes a while, small enough for many laps a second


def expected(slot: int, generation: int) -> int:
    return (slot + (generation // 2 - 1) * SLOTS) % 256


def write(path: str) -> None:
    ring = Ring.create(path, SLOTS, SHAPE)
    frames = [np.full(SHAPE, value, np.uint8) for value in range(256)]
    print(ring.seq.name, flush=True)  # the ring exists: readers may attach
    frame_id = 0
    while True:
        ring.write(frame_id, frames[frame_id % 256], 0)
        frame_id += 1


def read(path: str, wanted: int) -> None:
    ring = Ring.attach(path)
    accepted = overruns = 0
    torn = []
    while accepted < wanted:
        slot = random.randrange(SLOTS)
        generation = ring.generation(slot)
        if generation == 0 or generation % 2:
            continue  # never written yet, or being written now
        try:
            frame = ring.copy(slot, generation)
        except FrameOverrun:
            overruns += 1
            continue
        accepted += 1
        low, high, value = int(frame.min()), int(frame.max()), expected(slot, generation)
        if not low == high == value:
            torn.append({"slot": slot, "generation": generation, "want": value, "min": low, "max": high})
    print(json.dumps({"fences": ring.seq.name, "accepted": accepted, "overruns": overruns, "torn": torn[:5],
                      "torn_count": len(torn)}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        read(sys.argv[2], int(sys.argv[3]))
