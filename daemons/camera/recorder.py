"""Video recording as segment files that a battery swap, a crash or a power loss cannot tear.

A segment is an MJPEG stream (``seg-NNNN.mjpeg``, playable by ffplay
-f mjpeg) and an index beside it (``seg-NNNN.index``), one record per
frame, appended after the frame's bytes::

    <crc32 of the JSON, 8 hex digits> <JSON>\\n
    JSON: {"seq": recording sequence number, "id": camera frame id, "mono_ns": time,
           "offset": byte offset in the .mjpeg, "size": bytes, "crc": crc32 of those bytes}

Both files are written with plain ``os.write`` (no buffer in the process),
so a kill -9 loses nothing that was written: it is in the kernel already.
A power loss loses what was not yet on the medium; the files are fsync'ed
at the checkpoint points (a segment closed: swap, stop, full disk) and
every SYNC_EVERY_S while recording, which bounds that loss. A record is a
frame only when its line is whole, its checksum matches and the bytes it
names are in the stream with their checksum (``recover``): a torn line, a
frame cut short, a hole of zeros the file system left, is never read as a
frame, and the frames before and after it still are.

A checkpoint closes the segment; the next one carries on with the next
sequence number, so the frames of a recording are numbered without a gap
across all its segments.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SYNC_EVERY_S = 2.0  # at most this much recording is lost to a power cut (a kill -9 loses none)
OPEN_FILE = "open.json"  # present while a recording may still grow
FIELDS = ("seq", "id", "mono_ns", "offset", "size", "crc")


class DiskFull(OSError):
    """The recording's file system is full (ENOSPC, or EDQUOT); what was written before is intact."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Recorder:
    """One recording. ``about`` (its owner and audit session) is kept in OPEN_FILE until ``finish``: a
    recording that still has it was cut off (camerad killed, power lost) and is found by ``unfinished``."""

    def __init__(self, directory: Path, name: str, quality: int, about: dict | None = None):
        self.dir = directory / name
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            _write_durably(self.dir / OPEN_FILE, json.dumps(about or {}).encode())
        except OSError as exc:
            shutil.rmtree(self.dir, ignore_errors=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(exc.errno, f"no room for a recording in {directory}") from None
            raise
        self.quality = quality
        self.seq = 0  # frames recorded so far, across segments
        self.segment = 0
        self.video = self.index = None  # descriptors of the open segment's files
        self.video_size = 0
        self.segment_frames = 0
        self.synced = 0.0
        self.closed: list[dict] = []

    @property
    def open(self) -> bool:
        return self.video is not None

    def add(self, frame_id: int, pixels: np.ndarray, mono_ns: int) -> None:
        """Append a frame; DiskFull (with the segment closed, nothing half-written left) when there is no room."""
        from PIL import Image  # here, not at start: see daemons/camera/backends.py

        jpeg = io.BytesIO()
        Image.fromarray(pixels).save(jpeg, "JPEG", quality=self.quality)
        data = jpeg.getvalue()
        try:
            if self.video is None:
                self._start_segment()
            record = json.dumps({"seq": self.seq + 1, "id": frame_id, "mono_ns": mono_ns,
                                 "offset": self.video_size, "size": len(data), "crc": zlib.crc32(data)},
                                separators=(",", ":"))
            _write_all(self.video, data)  # the frame first: a record never names bytes not yet written
            _write_all(self.index, f"{zlib.crc32(record.encode()):08x} {record}\n".encode())
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._undo_partial()
            raise DiskFull(exc.errno, f"no room for frame {self.seq + 1} in {self.dir}") from None
        self.video_size += len(data)
        self.seq += 1
        self.segment_frames += 1
        if time.monotonic() - self.synced >= SYNC_EVERY_S:
            self._sync()

    def checkpoint(self, why: str) -> dict | None:
        """Close the open segment durably; what it holds, or None when none was open.

        DiskFull when the file system could not keep what was written (an fsync
        that failed for room): the segment is closed all the same."""
        if self.video is None:
            return None
        try:
            self._sync()
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise DiskFull(exc.errno, f"no room to keep segment {self.segment} of {self.dir}") from None
        finally:
            for fd in (self.video, self.index):
                os.close(fd)
            self.video = self.index = None
            if not self._drop_if_empty():
                self._sync_directory()
        if not self.segment_frames:
            return None
        info = {"path": str(self.dir / f"seg-{self.segment:04d}.mjpeg"), "frames": self.segment_frames,
                "first": self.seq - self.segment_frames + 1, "last": self.seq, "why": why}
        self.closed.append(info)
        return info

    def finish(self, why: str) -> dict | None:
        """The recording is over: its last segment closed (``checkpoint``), and it is no longer unfinished."""
        try:
            return self.checkpoint(why)
        finally:
            (self.dir / OPEN_FILE).unlink(missing_ok=True)
            if not self.discard() and self.dir.exists():
                self._sync_directory()

    def _drop_if_empty(self) -> bool:
        """A segment closed before its first frame (a full disk) leaves no empty files, nor an empty
        recording; True when the recording's directory went with it."""
        if self.segment_frames:
            return False
        stem = self.dir / f"seg-{self.segment:04d}"
        for suffix in (".mjpeg", ".index"):
            stem.with_suffix(suffix).unlink(missing_ok=True)
        self.segment -= 1
        return self.discard()

    def discard(self) -> bool:
        """Remove the recording's directory if it holds nothing (no frame was ever written); True if removed."""
        if self.seq or self.video is not None:
            return False
        try:
            self.dir.rmdir()
        except OSError:
            return False
        return True

    def _start_segment(self) -> None:
        stem = self.dir / f"seg-{self.segment + 1:04d}"
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC  # read: to mend a failed write
        video = os.open(f"{stem}.mjpeg", flags, 0o600)
        try:
            index = os.open(f"{stem}.index", flags, 0o600)
        except OSError:
            os.close(video)
            os.unlink(f"{stem}.mjpeg")
            raise
        self.video, self.index = video, index
        self.segment += 1
        self.segment_frames = self.video_size = 0
        self._sync_directory()  # the files exist after a power cut, not only their blocks
        self.synced = time.monotonic()

    def _undo_partial(self) -> None:
        """Cut off what a failed write left (a frame's first bytes, a record's start): the files stay whole."""
        if self.video is None:
            return
        index_size = os.fstat(self.index).st_size
        if index_size and os.pread(self.index, 1, index_size - 1) != b"\n":
            os.ftruncate(self.index, _last_line_end(self.index, index_size))
        os.ftruncate(self.video, self.video_size)

    def _sync(self) -> None:
        for fd in (self.video, self.index):
            os.fsync(fd)
        self.synced = time.monotonic()

    def _sync_directory(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def unfinished(recordings: Path) -> list[tuple[Path, dict]]:
    """Recordings that were cut off before ``finish``, with what they are about (owner, session)."""
    out = []
    for mark in sorted(Path(recordings).glob(f"*/{OPEN_FILE}")):
        try:
            about = json.loads(mark.read_bytes())
        except ValueError:
            about = {}  # the mark itself was cut off: the recording is still there
        out.append((mark.parent, about if isinstance(about, dict) else {}))
    return out


def close_unfinished(directory: Path) -> None:
    """The recording was recovered (its frames counted): it is no longer unfinished."""
    (directory / OPEN_FILE).unlink(missing_ok=True)


def _last_line_end(fd: int, size: int) -> int:
    """The length of the file up to and including its last newline."""
    start = max(0, size - 4096)
    tail = os.pread(fd, size - start, start)
    cut = tail.rfind(b"\n")
    return start + cut + 1 if cut >= 0 else 0


@dataclass
class Recovery:
    """What a recording holds: its whole frames in order, and how many records were not (torn, lost)."""
    frames: list[dict] = field(default_factory=list)
    torn: int = 0
    segments: int = 0


def parse_record(line: bytes) -> dict | None:
    """A whole index line with a matching checksum, as a dict; None for anything else."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        record = json.loads(body)
    except ValueError:
        return None
    if not isinstance(record, dict) or any(not isinstance(record.get(k), int) for k in FIELDS):
        return None
    return record


def recover(directory: Path) -> Recovery:
    """Every frame of a recording that is whole on disk, in segment order, whatever stopped the writer.

    A record counts only when its line ended (a newline), its checksum matches
    and the stream holds its bytes with their checksum; anything else is
    counted in ``torn`` and skipped. A file system may lose a middle block
    and keep a later one, so reading goes on past a bad record.
    """
    out = Recovery()
    for index in sorted(Path(directory).glob("seg-*.index")):
        out.segments += 1
        data = index.read_bytes()
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # the last piece has no newline: never a record
        out.torn += bool(tail.strip(b"\0"))
        try:
            video = index.with_suffix(".mjpeg").read_bytes()
        except FileNotFoundError:
            video = b""
        for line in complete:
            record = parse_record(line.lstrip(b"\0"))
            if record is None:
                out.torn += bool(line.strip(b"\0"))
                continue
            frame = video[record["offset"]:record["offset"] + record["size"]]
            if len(frame) != record["size"] or zlib.crc32(frame) != record["crc"]:
                out.torn += 1
                continue
            out.frames.append(record | {"segment": str(index.with_suffix(".mjpeg"))})
    return out


def read_index(directory: Path) -> list[dict]:
    """Every whole frame of every segment of a recording, in segment order (``recover``'s frames)."""
    return recover(directory).frames


def read_frame(record: dict) -> bytes:
    """The JPEG bytes of a frame ``recover`` returned."""
    with open(record["segment"], "rb") as f:
        f.seek(record["offset"])
        return f.read(record["size"])
