"""The video recorder's files: whatever instant the writer stops at (kill -9, a power cut, a full disk),
every frame whose record was written is read back whole, and nothing torn is read as a frame."""

from __future__ import annotations

import errno
import os
import random
import subprocess
import sys
import zlib

import numpy as np
import pytest

from daemons.camera.recorder import DiskFull, Recorder, read_frame, recover, unfinished
from tests.conftest import REPO

SHAPE = (24, 32, 3)


def record(directory, frames: int, name: str = "rec") -> Recorder:
    recorder = Recorder(directory, name, 80, {"owner": "cam", "session": "s1"})
    for n in range(1, frames + 1):
        recorder.add(100 + n, np.full(SHAPE, n * 7 % 256, np.uint8), n)
    return recorder


def check_whole(frames: list[dict]) -> None:
    for row in frames:
        data = read_frame(row)
        assert zlib.crc32(data) == row["crc"] and data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"


def test_a_recording_reads_back_across_segments_and_is_unfinished_until_finished(tmp_path):
    recorder = record(tmp_path, 3)
    assert recorder.checkpoint("checkpoint: battery_swap")["last"] == 3
    recorder.add(200, np.zeros(SHAPE, np.uint8), 9)
    assert [d.name for d, about in unfinished(tmp_path)] == ["rec"]
    assert unfinished(tmp_path)[0][1] == {"owner": "cam", "session": "s1"}
    info = recorder.finish("stopped")
    assert (info["first"], info["last"]) == (4, 4) and not unfinished(tmp_path)
    found = recover(tmp_path / "rec")
    assert [r["seq"] for r in found.frames] == [1, 2, 3, 4] and found.torn == 0 and found.segments == 2
    assert [r["id"] for r in found.frames] == [101, 102, 103, 200]
    check_whole(found.frames)


@pytest.mark.fault
def test_a_writer_killed_without_a_checkpoint_loses_nothing_it_wrote(tmp_path):
    recorder = record(tmp_path, 5)  # no checkpoint, no close: what a kill -9 leaves
    assert [r["seq"] for r in recover(tmp_path / "rec").frames] == [1, 2, 3, 4, 5]
    del recorder


@pytest.mark.fault
def test_a_power_cut_at_any_byte_reads_a_whole_prefix_and_nothing_torn(tmp_path):
    record(tmp_path, 4).checkpoint("stopped")
    segment = tmp_path / "rec"
    index, video = (segment / "seg-0001.index").read_bytes(), (segment / "seg-0001.mjpeg").read_bytes()
    ends = [i + 1 for i, b in enumerate(index) if b == ord("\n")]
    cut = tmp_path / "cut"
    cut.mkdir()
    for size in range(len(index) + 1):  # the index cut at every byte, the stream whole
        (cut / "seg-0001.index").write_bytes(index[:size])
        (cut / "seg-0001.mjpeg").write_bytes(video)
        found = recover(cut)
        assert [r["seq"] for r in found.frames] == list(range(1, sum(e <= size for e in ends) + 1))
        assert found.torn == (size not in [0, *ends])
    frame_ends = [r["offset"] + r["size"] for r in recover(segment).frames]
    for size in range(0, len(video) + 1, 7):  # the stream cut short, the index whole
        (cut / "seg-0001.index").write_bytes(index)
        (cut / "seg-0001.mjpeg").write_bytes(video[:size])
        found = recover(cut)
        assert len(found.frames) == sum(e <= size for e in frame_ends)
        check_whole(found.frames)


def test_blocks_lost_in_the_middle_are_skipped_and_the_frames_after_them_still_read(tmp_path):
    record(tmp_path, 6).checkpoint("stopped")
    segment = tmp_path / "rec"
    index = bytearray((segment / "seg-0001.index").read_bytes())
    lines = index.split(b"\n")
    start = len(lines[0]) + 1 + 5  # zeros over most of the second record, its newline kept
    index[start:start + len(lines[1]) - 5] = bytes(len(lines[1]) - 5)
    (segment / "seg-0001.index").write_bytes(bytes(index))
    video = bytearray((segment / "seg-0001.mjpeg").read_bytes())
    third = recover(segment).frames[1]  # the third frame's bytes corrupted in the stream
    assert third["seq"] == 3
    video[third["offset"] + 40] ^= 0xFF
    (segment / "seg-0001.mjpeg").write_bytes(bytes(video))
    found = recover(segment)
    assert [r["seq"] for r in found.frames] == [1, 4, 5, 6] and found.torn == 2
    check_whole(found.frames)


@pytest.mark.fault
def test_a_full_disk_stops_the_recording_with_everything_before_it_whole(tmp_path, monkeypatch):
    recorder = record(tmp_path, 3)
    real_write = os.write
    budget = {"left": 500}

    def write(fd, data):  # the disk fills half-way through a frame
        if budget["left"] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, bytes(data[:budget["left"]]))
        budget["left"] -= n
        return n
    monkeypatch.setattr(os, "write", write)
    with pytest.raises(DiskFull):
        for n in range(10):
            recorder.add(200 + n, np.random.default_rng(n).integers(0, 255, SHAPE, np.uint8), n)
    monkeypatch.setattr(os, "write", real_write)
    recorder.finish("the disk is full")
    found = recover(tmp_path / "rec")
    assert found.torn == 0 and [r["seq"] for r in found.frames] == list(range(1, recorder.seq + 1))
    assert (tmp_path / "rec" / "seg-0001.mjpeg").stat().st_size == sum(r["size"] for r in found.frames)
    check_whole(found.frames)


def test_a_recording_with_no_room_for_its_first_frame_leaves_nothing(tmp_path, monkeypatch):
    recorder = Recorder(tmp_path, "rec", 80)

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "write", full)
    with pytest.raises(DiskFull):
        recorder.add(1, np.zeros(SHAPE, np.uint8), 0)
    monkeypatch.undo()
    assert recorder.finish("the disk is full") is None
    assert not (tmp_path / "rec").exists()


KILLED = """
import sys, numpy as np
from pathlib import Path
from daemons.camera.recorder import Recorder
recorder = Recorder(Path(sys.argv[1]), "rec", 80)
n = 0
while True:
    n += 1
    recorder.add(n, np.full((24, 32, 3), n % 256, np.uint8), n)
    if n == 1:
        print("recording", flush=True)
"""


@pytest.mark.fault
def test_a_writer_killed_at_random_instants_leaves_every_written_frame_readable(tmp_path):
    """A writer process killed by SIGKILL at random instants, a bounded number of times."""
    rng = random.Random(28)
    for round_ in range(8):
        directory = tmp_path / str(round_)
        child = subprocess.Popen([sys.executable, "-c", KILLED, str(directory)], stdout=subprocess.PIPE,
                                 text=True, cwd=REPO)
        try:
            assert child.stdout.readline().strip() == "recording"
            for _ in range(rng.randrange(1, 400)):  # a random amount of work on this side, then the kill
                os.stat(directory)
            child.kill()
            child.wait(20)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(20)
            child.stdout.close()
        found = recover(directory / "rec")
        assert found.frames, "the first frame was written before it said so"
        assert [r["seq"] for r in found.frames] == list(range(1, len(found.frames) + 1))
        assert [r["id"] for r in found.frames] == [r["seq"] for r in found.frames]
        check_whole(found.frames)
        video = (directory / "rec" / "seg-0001.mjpeg").stat().st_size
        last = found.frames[-1]
        assert video - (last["offset"] + last["size"]) < 4096, "more than the frame in flight is unread"
