"""A shared-memory ring of camera frames: one writer (camerad, or a replay), any number of readers, no copies.

camerad's ring is an anonymous memfd: it has no name anyone could open.
Its writer maps it, then seals it against resizing and against any further
writable mapping, and hands the descriptor only to whom it may show frames
(frames.door); a reader's mapping is read-only, whatever it tries. A ring
can also be a plain file (benchmarks, tests). Layout::

    header  64 bytes: magic, slots, height, width, channels, slot stride
    slot i  64-byte slot header (generation, frame id, mono_ns) + pixels

A slot's generation is a seqlock: the writer makes it odd before touching
the pixels and even (and larger) after. A reader takes the generation from
the frame's descriptor, looks at the pixels through a numpy view, and
checks afterwards that the generation has not moved: if it has, the writer
lapped it and the frame it looked at may be torn, so ``FrameOverrun``.
The generation's loads and stores go through bus.seqlock, whose fences
keep the pixels between them on a CPU that reorders memory (arm64).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bus import seqlock

MAGIC = b"LENSRNG1"
_HEADER = struct.Struct("<8sIIIII")  # magic, slots, height, width, channels, stride
_SLOT = struct.Struct("<QQQ")  # generation, frame id, mono_ns
HEADER_SIZE = SLOT_HEADER = 64
# Linux 5.1: no new writable mapping or write(2), while the writer's own mapping stays writable.
F_SEAL_FUTURE_WRITE = getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x0010)
SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | F_SEAL_FUTURE_WRITE | fcntl.F_SEAL_SEAL


class FrameOverrun(Exception):
    """The writer reused the slot while (or before) the reader looked: the frame is gone."""


class Ring:
    def __init__(self, path: str | Path | None, mm: mmap.mmap, slots: int, shape: tuple[int, int, int],
                 stride: int, fd: int | None = None):
        self.path = Path(path) if path is not None else None
        self.mm, self.slots, self.shape, self.stride = mm, slots, shape, stride
        self.fd = fd  # the sealed memfd a writer hands out (frames.door); None for a file or a reader
        self.epoch = 0  # which of the writer's rings this is (frames.door numbers them)
        self._buf = np.frombuffer(mm, dtype=np.uint8)
        self._gens = [np.frombuffer(mm, dtype=np.uint64, count=3, offset=self._offset(i)) for i in range(slots)]
        self._at = [gens.ctypes.data for gens in self._gens]  # each generation's address, for the fences
        self.seq = seqlock.fences()  # NoFences on a CPU that needs them when they are not built

    # --- opening ----------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path | None, slots: int, shape: tuple[int, int, int], mode: int = 0o600) -> "Ring":
        """A new ring: in the file ``path``, or (None) in a sealed memfd only its descriptor reaches."""
        height, width, channels = shape
        stride = SLOT_HEADER + ((height * width * channels + 63) // 64) * 64
        size = HEADER_SIZE + slots * stride
        if path is None:
            fd = os.memfd_create("lensos-frames", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        else:
            tmp = Path(f"{path}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
            mm[:HEADER_SIZE] = _HEADER.pack(MAGIC, slots, height, width, channels, stride).ljust(HEADER_SIZE, b"\0")
            if path is None:
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
                return cls(None, mm, slots, shape, stride, fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        os.replace(tmp, path)  # readers never see a half-made ring
        return cls(path, mm, slots, shape, stride)

    @classmethod
    def attach(cls, path: str | Path) -> "Ring":
        with open(path, "rb") as f:
            return cls.from_fd(f.fileno(), str(path), path)

    @classmethod
    def from_fd(cls, fd: int, what: str = "the descriptor", path: str | Path | None = None) -> "Ring":
        """A read-only mapping of the ring behind ``fd`` (the caller keeps and closes ``fd``)."""
        try:
            mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{what} is not a lensos frame ring: {exc}") from None
        magic, slots, height, width, channels, stride = _HEADER.unpack_from(mm, 0) if len(mm) >= _HEADER.size \
            else (b"", 0, 0, 0, 0, 0)
        if magic != MAGIC or len(mm) < HEADER_SIZE + slots * stride:
            mm.close()
            raise ValueError(f"{what} is not a lensos frame ring")
        return cls(path, mm, slots, (height, width, channels), stride)

    def close(self) -> None:
        self._gens, self._at = [], []
        self._buf = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        try:
            self.mm.close()
        except BufferError:
            pass  # a caller still holds a view; the mapping goes when it does

    # --- writing (camerad) ---------------------------------------------------------------
    def write(self, frame_id: int, pixels: np.ndarray, mono_ns: int) -> tuple[int, int]:
        """Copy one frame into the next slot; returns (slot, generation) for the descriptor."""
        slot = frame_id % self.slots
        self.seq.write_begin(self._at[slot])  # odd: being written
        start = self._offset(slot) + SLOT_HEADER
        self._buf[start:start + pixels.nbytes] = pixels.reshape(-1)
        self._gens[slot][1:3] = frame_id, mono_ns
        return slot, self.seq.write_end(self._at[slot])  # even again: complete

    def slot_view(self, slot: int) -> np.ndarray:
        """Writable pixels of a slot, for a backend that decodes straight into the ring."""
        start = self._offset(slot) + SLOT_HEADER
        return self._buf[start:start + int(np.prod(self.shape))].reshape(self.shape)

    # --- reading (anyone allowed to see frames) ------------------------------------------------
    def generation(self, slot: int) -> int:
        """The slot's generation now: even, a whole frame is there (its descriptor's generation); odd, being written."""
        return self.seq.read_begin(self._at[slot])

    @contextmanager
    def frame(self, slot: int, generation: int):
        """A read-only view of a frame, valid inside the block; FrameOverrun when it was (or got) overwritten."""
        now = self.seq.read_begin(self._at[slot])
        if generation % 2 or now != generation:
            raise FrameOverrun(f"slot {slot} is at generation {now}, wanted {generation}")
        start = self._offset(slot) + SLOT_HEADER
        view = self._buf[start:start + int(np.prod(self.shape))].reshape(self.shape)
        yield view
        if self.seq.read_end(self._at[slot]) != generation:
            raise FrameOverrun(f"slot {slot} was overwritten while it was read")

    def copy(self, slot: int, generation: int) -> np.ndarray:
        with self.frame(slot, generation) as view:
            return view.copy()

    def _offset(self, slot: int) -> int:
        return HEADER_SIZE + slot * self.stride
