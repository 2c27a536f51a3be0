"""The tap's ring (bus.tap): records in order across laps, a lapped reader told so, torn records never read."""

from __future__ import annotations

import os
import stat
import struct

import ctypes

import pytest

from broker.fastpath import LIBRARY
from bus.tap import _HEAD_AT, _RESERVED_AT, DATA, TapReader, TapWriter


def frames(n: int, size: int = 20) -> tuple[bytes, bytes]:
    return b"demo.tick\0demo", n.to_bytes(4, "little") * (size // 4)


@pytest.fixture
def ring(tmp_path):
    writer = TapWriter(tmp_path / "tap", capacity=4096)
    yield writer
    writer.close()


def c_writer(ring):
    """broker/fastpath.c's writer, which the C loop uses, on the same ring."""
    lib = ctypes.CDLL(str(LIBRARY))
    lib.lens_tap_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                   ctypes.c_size_t]
    return lambda head, body: lib.lens_tap_write(ring.address, head, len(head), body, len(body))


@pytest.mark.parametrize("writer", ["python", "c"])
def test_a_reader_gets_what_was_written_after_it_opened_in_order_across_many_laps(ring, writer):
    if writer == "c" and not LIBRARY.exists():
        pytest.skip("the C loop is not built (make install builds it)")
    write = ring.write if writer == "python" else c_writer(ring)
    write(*frames(0))  # before the reader: not its to read
    reader = TapReader(ring.path)
    got = []
    for n in range(1, 1001):  # 1000 records of 32 to 56 bytes: about ten laps of a 4096-byte ring
        write(*frames(n, size=4 * (n % 7)))
        if n % 10 == 0:
            got += reader.read()
    got += reader.read()
    assert got == [frames(n, size=4 * (n % 7)) for n in range(1, 1001)]
    assert reader.overruns == 0
    reader.close()


def test_a_reader_lapped_by_the_writer_says_so_and_goes_on_from_the_head(ring):
    reader = TapReader(ring.path)
    for n in range(200):  # 200 records of 56 bytes: more than the ring holds
        ring.write(*frames(n))
    assert reader.read() == [] and reader.overruns == 1
    ring.write(*frames(1000))
    assert reader.read() == [frames(1000)]
    reader.close()


def test_a_record_the_writer_may_have_reached_while_it_was_copied_is_dropped(ring):
    reader = TapReader(ring.path)
    ring.write(*frames(1))
    second = struct.unpack_from("=Q", ring.map, _HEAD_AT)[0]
    ring.write(*frames(2))
    # As if the writer had reserved, mid-read, the space of the first record (and no more) on its next lap.
    struct.pack_into("=Q", ring.map, _RESERVED_AT, second + ring.capacity)
    assert reader.read() == [frames(2)] and reader.overruns == 1
    reader.close()


def test_a_message_over_half_the_ring_is_left_out_and_counted(ring):
    reader = TapReader(ring.path)
    ring.write(b"big\0x", b"x" * 3000)
    ring.write(*frames(1))
    assert reader.read() == [frames(1)] and ring.skipped == 1
    reader.close()


def test_the_ring_is_its_owners_alone_and_gone_when_closed(tmp_path):
    old = os.umask(0)
    try:
        writer = TapWriter(tmp_path / "tap", capacity=4096)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(writer.path).st_mode) == 0o600
    assert os.stat(writer.path).st_size == DATA + 4096
    reader = TapReader(writer.path)
    assert not reader.replaced()
    writer.close()
    assert not writer.path.exists() and reader.replaced()
    reader.close()


def test_a_file_that_is_no_ring_is_refused(tmp_path):
    path = tmp_path / "tap"
    path.write_bytes(b"\0" * 128)
    with pytest.raises(ValueError, match="no tap ring"):
        TapReader(path)


class Noting:
    """The tap's fences, each call noted (which word of the header, and the value), the test's own steps between."""

    def __init__(self, fences, base: int):
        self.fences, self.base, self.calls = fences, base, []
        for step in ("read_begin", "read_end", "store_then_fence", "store_release"):
            setattr(self, step, self._noting(step))

    def _noting(self, step):
        word = {_HEAD_AT: "head", _RESERVED_AT: "reserved"}

        def call(address, *value):
            result = getattr(self.fences, step)(address, *value)
            self.calls.append((step, word[address - self.base]))
            return result
        return call


def test_both_sides_order_the_header_through_the_fences_a_weakly_ordered_cpu_needs(ring):
    """On arm64 (the board) plain loads and stores let a reader take a record before its bytes arrive: the
    writer fences `reserved` before the bytes and releases `head` after them; the reader acquires `head`
    before the bytes and fences before `reserved` (bus/seqlock.c, the frame ring's library)."""
    from bus import seqlock
    reader = TapReader(ring.path)
    assert isinstance(ring.seq, seqlock.Fences) and isinstance(reader.seq, seqlock.Fences)
    ring.seq = Noting(ring.seq, ring.address)
    reader.seq = Noting(reader.seq, reader.map.address)
    ring.write(*frames(1))
    assert ring.seq.calls == [("store_then_fence", "reserved"), ("store_release", "head")]
    assert reader.read() == [frames(1)]
    assert reader.seq.calls == [("read_begin", "head"), ("read_end", "reserved")]
    reader.close()


def test_without_the_fences_on_a_weakly_ordered_cpu_no_side_opens(ring, tmp_path, monkeypatch):
    import functools

    from bus import seqlock
    monkeypatch.setattr(seqlock, "fences", functools.partial(seqlock.fences, tmp_path / "missing.so",
                                                             machine="aarch64"))
    with pytest.raises(seqlock.NoFences):
        TapReader(ring.path)
    with pytest.raises(seqlock.NoFences):
        TapWriter(tmp_path / "other")
    assert not (tmp_path / "other").exists() and not (tmp_path / "other.new").exists()
