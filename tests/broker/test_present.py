"""broker.present: who was connected, kept for a crashed broker's successor, and the successor's wait."""

from __future__ import annotations

import msgpack

from broker.present import Present
from bus.envelope import ACK, CHANNEL


def marker(identity: bytes, nonce: int) -> bytes:
    return ACK + identity + CHANNEL + nonce.to_bytes(6, "little")


def test_the_successor_waits_for_each_lane_of_each_identity_the_last_broker_had(tmp_path):
    last = Present(tmp_path / "present.msgpack")
    for identity, lanes in ((b"ledd", 3), (b"app.camera", 2)):
        for _ in range(lanes):
            last.change(identity, 1)
    last.save()
    successor = Present(tmp_path / "present.msgpack")
    successor.load()
    assert successor.missing() == ["app.camera", "ledd"]
    for nonce in range(3):
        successor.marker(marker(b"ledd", nonce), True)
    successor.marker(marker(b"app.camera", 7), True)
    successor.marker(marker(b"app.camera", 7), True)  # the same marker again counts once
    assert successor.missing() == ["app.camera"]
    successor.marker(marker(b"app.camera", 8), True)
    assert successor.missing() == [] and not successor.holding(0.0)


def test_a_marker_cut_short_counts_for_nobody(tmp_path):
    """A marker is the sender's own identity, a NUL and six bytes: a shorter one names no identity."""
    last = Present(tmp_path / "present.msgpack")
    last.change(b"app.cam", 1)
    last.save()
    successor = Present(tmp_path / "present.msgpack")
    successor.load()
    successor.marker(ACK + b"app.camera" + CHANNEL + b"ab", True)
    assert successor.missing() == ["app.cam"]


def test_an_unreadable_file_is_said_removed_and_nothing_is_waited_for(tmp_path, caplog):
    path = tmp_path / "present.msgpack"
    for junk in (b"\xc1 not msgpack", msgpack.packb({b"ledd": float("inf")}), msgpack.packb([1, 2])):
        path.write_bytes(junk)
        present = Present(path)
        present.load()
        assert present.awaited == {} and not path.exists()
    path.mkdir()  # not even a file
    present = Present(path)
    present.load()
    assert present.awaited == {} and "unreadable" in caplog.text


def test_a_file_that_cannot_be_written_is_said_and_the_broker_goes_on(tmp_path, caplog):
    present = Present(tmp_path / "gone" / "present.msgpack")  # its directory is not there
    present.change(b"ledd", 1)
    present.save()
    assert "cannot write" in caplog.text
