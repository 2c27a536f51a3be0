"""The tap: what the broker forwards, copied into a ring of shared memory that watching tools read.

Served by the broker's XPUB like a process, a sniffer costs the broker a CURVE seal and a write on its
one I/O thread for every message, and wakes the sniffer's threads as often: with one, the bus measured
about 14 % slower in latency (bench/bus.py). Through the tap the broker copies each message into this
ring instead (a memcpy, in C on the fast path) and a tool reads the ring at its own pace, a few dozen
times a second, at idle priority. Nothing ever waits for a tool: one that falls behind is overrun, and
the sequence numbers it reads count what it missed (bus.intake), as they count a socket's drops.

The ring exists while somebody watches: the broker makes it when the first watcher subscribes to
``bus.tap`` and unlinks it when the last one goes, so a bus nobody watches pays nothing. Only what any
node may hear goes in; restricted topics and replies (broker.gate's personal channels) never do. The
file is the broker's user's alone (0600): root and, in development, the user's own tools can read it;
a tool that cannot reads through the broker's sockets as before (bus.node).

Layout, in the machine's byte order: a header, then ``capacity`` bytes of records.

    header  magic "LENSTAP1", capacity, incarnation, head, reserved    (five 8-byte fields)
    record  start (8 bytes: its own position), head_len, body_len (4 each), head, body, padded to 8

Positions count bytes since the ring was made; a record lives at ``position % capacity``. The
writer sets ``reserved`` to the end of the record it is about to write, writes it, then moves
``head`` past it. A reader copies records up to ``head``, then reads ``reserved``: a record that the
writer may have reached meanwhile (``reserved`` more than a capacity past its start) is torn and
dropped, and a reader that finds itself lapped goes on from the head. A record that would cross the
ring's end starts the next lap instead, after a wrap mark (head_len WRAP) when there is room for one.

On a CPU that reorders memory (arm64: the board) that order needs fences, as the frame ring's seqlock does,
and from the same library (bus.seqlock): the writer stores ``reserved`` then fences, and stores ``head``
with release; the reader loads ``head`` with acquire and fences before it loads ``reserved``. Without the
library on such a CPU neither side opens (NoFences): the broker makes no ring and tools hear through its
sockets, rather than read a torn record as a message.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

MAGIC = b"LENSTAP1"
CAPACITY = 8 * 1024 * 1024  # some 80,000 messages of 100 bytes; read 50 times a second, a lap is plenty
_HEADER = struct.Struct("=8sQQQQ")
DATA = 64  # where records start: the header, rounded up to a cache line
_HEAD_AT, _RESERVED_AT = 24, 32
_POS = struct.Struct("=Q")
_RECORD = struct.Struct("=QII")
WRAP = 0xFFFFFFFF
TAP_TOPIC = "bus.tap"


def _fences():
    """bus.seqlock's, imported only where a tap is opened: ctypes is 0.15 MiB in every node otherwise, and
    every node imports this module. (bus.seqlock needs nothing but the standard library.)"""
    from bus import seqlock
    return seqlock.fences()


def _size(head_len: int, body_len: int) -> int:
    return (_RECORD.size + head_len + body_len + 7) & ~7


class TapWriter:
    """The broker's side: makes the ring, appends to it (where the C loop does not), unlinks it."""

    def __init__(self, path: Path, capacity: int = CAPACITY):
        self.path, self.capacity = path, capacity
        self.skipped = 0  # messages too large for the ring (over half of it): a tool sees their gap
        self.seq = _fences()  # NoFences before any file is made, on a CPU that needs them unbuilt
        tmp = path.with_name(path.name + ".new")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask: what anyone hears is not everyone's to read
            os.ftruncate(fd, DATA + capacity)  # sparse: a page costs memory once a record is written to it
            self.map = mmap.mmap(fd, DATA + capacity)
        finally:
            os.close(fd)
        _HEADER.pack_into(self.map, 0, MAGIC, capacity, int.from_bytes(os.urandom(8), "little"), 0, 0)
        import ctypes
        self._anchor = ctypes.c_char.from_buffer(self.map)  # released in close(), or the map cannot close
        self.address = ctypes.addressof(self._anchor)  # for the fences, and for the C loop's own writes
        os.replace(tmp, path)  # a reader finds a whole header or no file

    def write(self, head: bytes, body) -> None:
        cap, data = self.capacity, self.map
        total = _size(len(head), len(body))
        if total > cap // 2:
            self.skipped += 1
            return
        pos = _POS.unpack_from(data, _HEAD_AT)[0]  # only this writer stores it
        off = pos % cap
        if cap - off < total:
            self.seq.store_then_fence(self.address + _RESERVED_AT, pos + (cap - off) + total)
            if cap - off >= _RECORD.size:
                _RECORD.pack_into(data, DATA + off, pos, WRAP, 0)
            pos += cap - off
            off = 0
        else:
            self.seq.store_then_fence(self.address + _RESERVED_AT, pos + total)
        at = DATA + off
        _RECORD.pack_into(data, at, pos, len(head), len(body))
        at += _RECORD.size
        data[at:at + len(head)] = head
        data[at + len(head):at + len(head) + len(body)] = body
        self.seq.store_release(self.address + _HEAD_AT, pos + total)

    def close(self) -> None:
        """Unlink and unmap (the C loop must have let go of ``address`` first); readers keep their own
        mapping until they see the file is gone."""
        self.path.unlink(missing_ok=True)
        del self._anchor
        self.map.close()


class TapReader:
    """A tool's side: the records written since it opened the ring, as (head, body) frame pairs."""

    def __init__(self, path: Path):
        self.seq = _fences()  # NoFences on a CPU that needs them unbuilt: the node hears by sockets
        fd = os.open(path, os.O_RDONLY)
        try:
            info = os.fstat(fd)
            self.inode, size = info.st_ino, info.st_size
            if size < DATA:
                raise ValueError(f"{path} is no tap ring ({size} bytes)")
            self.map = _ReadOnlyMap(fd, size)
        finally:
            os.close(fd)
        magic, self.capacity, self.incarnation, self.pos, _ = _HEADER.unpack_from(self.map.data, 0)
        if magic != MAGIC or DATA + self.capacity != size:
            self.map.close()
            raise ValueError(f"{path} is no tap ring (magic {magic!r}, {size} bytes)")
        self.path = path
        self.overruns = 0  # times the writer lapped this reader (what it missed shows as sequence gaps)

    def read(self) -> list[tuple[bytes, bytes]]:
        data, cap, address = self.map.data, self.capacity, self.map.address
        head = self.seq.read_begin(address + _HEAD_AT)  # acquire: the records before it are all there
        if head - self.pos > cap:
            self.overruns += 1
            self.pos = head
            return []
        got, pos = [], self.pos
        while pos < head:
            off = pos % cap
            if cap - off < _RECORD.size:
                pos += cap - off
                continue
            start, head_len, body_len = _RECORD.unpack_from(data, DATA + off)
            if start != pos:  # lapped while reading: what is here is newer than what was meant
                break
            if head_len == WRAP:
                pos += cap - off
                continue
            at = DATA + off + _RECORD.size
            got.append((pos, data[at:at + head_len], data[at + head_len:at + head_len + body_len]))
            pos += _size(head_len, body_len)
        reserved = self.seq.read_end(address + _RESERVED_AT)  # after a fence: what the writer reached
        whole = [(head_frame, body) for start, head_frame, body in got if reserved <= start + cap]
        if len(whole) < len(got) or pos < head:
            self.overruns += 1
            pos = head
        self.pos = pos
        return whole

    def replaced(self) -> bool:
        """Whether the file at the path is no longer this ring (the broker restarted, or closed it)."""
        try:
            return os.stat(self.path).st_ino != self.inode
        except FileNotFoundError:
            return True

    def close(self) -> None:
        self.map.close()


class _ReadOnlyMap:
    """A read-only shared mapping whose address the fences can take: Python's mmap gives no address of a
    read-only map (ctypes' from_buffer wants a writable one), so it is made with libc's mmap, and read
    through a ctypes array (struct.unpack_from and slices, as an mmap is)."""

    _libc = None

    def __init__(self, fd: int, size: int):
        import ctypes  # see _fences
        libc = _ReadOnlyMap._libc
        if libc is None:
            libc = _ReadOnlyMap._libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_long]
            libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap: {os.strerror(ctypes.get_errno())}")
        self.address, self.size = address, size
        self.data = (ctypes.c_char * size).from_address(address)

    def close(self) -> None:
        if self.address is not None:
            self.data = None  # the slices read from it are bytes of their own
            _ReadOnlyMap._libc.munmap(self.address, self.size)
            self.address = None
