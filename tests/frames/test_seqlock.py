"""The frame ring's seqlock: real processes racing on one ring never accept a torn frame, the ring runs on the
built fences (bus/_seqlock.so) here, calls them at the seqlock's four points, and without them refuses on
a CPU that reorders memory instead of racing."""

from __future__ import annotations

import ctypes
import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from bus import seqlock
from frames.ring import Ring
from tests.conftest import REPO
from tests.frames.ring_race import SHAPE, SLOTS

READERS, ACCEPTED = 2, 2000
DEADLINE_S = 90  # a bound, not an expectation: 2 cores shared with other suites


@pytest.mark.slow
def test_readers_racing_a_writer_process_accept_only_whole_frames_of_the_generation_they_checked(tmp_path):
    path = tmp_path / "ring"
    run = [sys.executable, "-m", "tests.frames.ring_race"]
    writer = subprocess.Popen([*run, "write", str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    readers = []
    try:
        assert writer.stdout.readline().strip() == "fences", "the writer runs on bus/_seqlock.so"
        readers = [subprocess.Popen([*run, "read", str(path), str(ACCEPTED)], cwd=REPO, stdout=subprocess.PIPE,
                                    text=True) for _ in range(READERS)]
        results = [json.loads(reader.communicate(timeout=DEADLINE_S)[0]) for reader in readers]
        assert writer.poll() is None, "the writer was still writing when the readers finished"
    finally:
        for process in (writer, *readers):
            process.kill()
            process.wait(timeout=10)
            process.stdout.close()
    for result in results:
        assert result["fences"] == "fences"
        assert result["accepted"] == ACCEPTED
        assert result["torn_count"] == 0, f"torn frames accepted: {result['torn']}"
    print(f"ring race: {READERS} reader processes, {ACCEPTED} frames each accepted whole; overruns detected: "
          f"{[result['overruns'] for result in results]}")


def test_the_ring_runs_on_the_built_fences_on_this_machine(tmp_path):
    assert seqlock.LIBRARY.exists(), "make install builds bus/_seqlock.so"
    ring = Ring.create(tmp_path / "ring", SLOTS, SHAPE)
    assert isinstance(ring.seq, seqlock.Fences)
    assert isinstance(Ring.attach(tmp_path / "ring").seq, seqlock.Fences)
    with open("/proc/self/maps") as maps:
        mapped = [line.split()[-1] for line in maps]
    assert str(seqlock.LIBRARY) in mapped


def test_the_library_stores_odd_then_even_and_reads_what_is_there():
    fences = seqlock.Fences()
    generation = ctypes.c_uint64(4)
    address = ctypes.addressof(generation)
    assert fences.read_begin(address) == 4
    assert fences.write_begin(address) == 5 == generation.value
    assert fences.read_end(address) == 5
    assert fences.write_end(address) == 6 == generation.value


class Recording:
    """The ring's fences, each call noted with the generation it left (the test's own steps noted between)."""

    def __init__(self, fences, ring_of):
        self.fences, self.ring_of, self.calls = fences, ring_of, []
        self.name = fences.name
        for step in ("write_begin", "write_end", "read_begin", "read_end"):
            setattr(self, step, self._noting(step))

    def _noting(self, step):
        def call(address):
            value = getattr(self.fences, step)(address)
            self.calls.append((step, value))
            return value
        return call


def test_the_fences_bracket_the_pixels_on_both_sides(tmp_path):
    writer = Ring.create(tmp_path / "ring", SLOTS, SHAPE)
    reader = Ring.attach(tmp_path / "ring")
    writer.seq = Recording(writer.seq, writer)
    reader.seq = Recording(reader.seq, reader)
    slot, generation = writer.write(1, np.full(SHAPE, 9, np.uint8), 0)
    assert writer.seq.calls == [("write_begin", 1), ("write_end", 2)] and generation == 2
    with reader.frame(slot, generation) as view:
        reader.seq.calls.append(("pixels", int(view[0, 0, 0])))
    assert reader.seq.calls == [("read_begin", 2), ("pixels", 9), ("read_end", 2)]


def test_without_the_library_a_ring_refuses_on_a_weakly_ordered_cpu_and_warns_on_x86(tmp_path, caplog):
    missing = tmp_path / "_seqlock.so"
    with pytest.raises(seqlock.NoFences, match="aarch64"):
        seqlock.fences(missing, machine="aarch64")
    with caplog.at_level(logging.WARNING, logger="bus.seqlock"):
        plain = seqlock.fences(missing, machine="x86_64")
    assert isinstance(plain, seqlock.PlainTso) and "without fences" in caplog.text
    generation = ctypes.c_uint64(2)
    assert plain.write_begin(ctypes.addressof(generation)) == 3
    assert plain.write_end(ctypes.addressof(generation)) == 4 == plain.read_end(ctypes.addressof(generation))
