"""Video recording as segment files that a battery swap or a crash cannot lose.

A segment is an MJPEG stream (``seg-NNNN.mjpeg``, playable by ffplay
-f mjpeg) and an index beside it (``seg-NNNN.jsonl``: one line per frame
with its recording sequence number, camera frame id, time and byte range).
A checkpoint flushes and fsyncs both and closes them; the next segment
carries on with the next sequence number, so the frames of a recording are
numbered without a gap across all its segments.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np


class Recorder:
    def __init__(self, directory: Path, name: str, quality: int):
        self.dir = directory / name
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.quality = quality
        self.seq = 0  # frames recorded so far, across segments
        self.segment = 0
        self.video = self.index = None
        self.segment_frames = 0
        self.closed: list[dict] = []

    @property
    def open(self) -> bool:
        return self.video is not None

    def add(self, frame_id: int, pixels: np.ndarray, mono_ns: int) -> None:
        if self.video is None:
            self._start_segment()
        from PIL import Image  # here, not at start: see daemons/camera/backends.py

        jpeg = io.BytesIO()
        Image.fromarray(pixels).save(jpeg, "JPEG", quality=self.quality)
        data = jpeg.getvalue()
        offset = self.video.tell()
        self.video.write(data)
        self.seq += 1
        self.segment_frames += 1
        self.index.write(json.dumps({"seq": self.seq, "id": frame_id, "mono_ns": mono_ns,
                                     "offset": offset, "size": len(data)}) + "\n")

    def checkpoint(self, why: str) -> dict | None:
        """Close the open segment durably; what it holds, or None when none was open."""
        if self.video is None:
            return None
        for f in (self.video, self.index):
            f.flush()
            os.fsync(f.fileno())
            f.close()
        info = {"path": str(self.dir / f"seg-{self.segment:04d}.mjpeg"), "frames": self.segment_frames,
                "first": self.seq - self.segment_frames + 1, "last": self.seq, "why": why}
        self.video = self.index = None
        self.closed.append(info)
        return info

    def _start_segment(self) -> None:
        self.segment += 1
        self.segment_frames = 0
        stem = self.dir / f"seg-{self.segment:04d}"
        self.video = open(f"{stem}.mjpeg", "wb")
        self.index = open(f"{stem}.jsonl", "w")


def read_index(directory: Path) -> list[dict]:
    """Every frame line of every segment of a recording, in segment order (tests, tools)."""
    rows = []
    for path in sorted(Path(directory).glob("seg-*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows
