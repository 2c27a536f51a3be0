"""Every flag of `lens bus record` and `lens bus replay` doing what it says: duration, splitting by size and by
time, compression, frame decimation, start, topic allow/block lists, loop, paused stepping, bad arguments."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from bustools import bag, record
from bus.node import Node
from bustools.replay import Replayer
from tests.bustools.test_bag import by_source, heard_through_the_broker, publish_script, recorded
from tests.conftest import DEADLINE_S, drain_lines, wait_for, wait_line
from tests.fulldisk import empty_files, fill, small_disk


def synthetic(path, count: int = 6, spacing_s: float = 1.0) -> list[tuple]:
    """A recording written directly: power.event from powerd and input.gesture from inputd, one a second."""
    output = record.Output(path, "none")
    sent = []
    for n in range(count):
        source, topic, payload = (("powerd", "power.event", {"event": "low", "battery": "left", "percent": float(n)})
                                  if n % 2 == 0 else
                                  ("inputd", "input.gesture", {"gesture": "tap", "source": "touchpad", "mono_ns": n}))
        header = {"source": source, "incarnation": 1, "seq": n + 1, "mono_ns": int(n * spacing_s * 1e9),
                  "wall_ns": n}
        output.write(topic, source, bag.encode(topic, payload, header), n, n, n + 1)
        sent.append((source, topic, payload))
    output.close()
    return sent


@pytest.mark.slow
def test_duration_split_by_size_and_compression(procs, runtime, tmp_path):
    procs.start_broker()
    path = tmp_path / "split.mcap"
    recorder = procs.lens("bus", "record", "-o", str(path), "--duration", "20", "--split-size", "0.002",
                          "--compression", "lz4", "--include-capture", "power", "audio", "input", stderr=subprocess.PIPE,
                          stdout=subprocess.DEVNULL)
    wait_line(recorder.stderr, "recording")
    sent = []
    heard_through_the_broker(runtime, sent, lambda: publish_script(runtime, rounds=6))
    assert recorder.wait(30) == 0, "--duration ends the recording on its own"
    files = [path] + sorted(tmp_path.glob("split-*.mcap"))  # in the order they were written
    assert len(files) >= 2 and files[1].name == "split-001.mcap" and all(f.exists() for f in files), files
    got = [m for f in files for m in recorded(f)]
    assert by_source(got) == by_source(sent), "nothing lost at the seams"
    from mcap.reader import make_reader
    with open(files[0], "rb") as stream:
        chunks = make_reader(stream).get_summary().chunk_indexes
    assert chunks and {c.compression for c in chunks} == {"lz4"}


def test_split_by_time_starts_a_new_file_when_the_time_is_up(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(record.time, "monotonic", lambda: clock[0])
    output = record.Output(tmp_path / "timed.mcap", "zstd", split_s=10.0)
    header = {"source": "powerd", "incarnation": 1, "seq": 1, "mono_ns": 0, "wall_ns": 0}
    for seconds in (0.0, 4.0, 9.0, 12.0, 25.0):
        clock[0] = 100.0 + seconds
        output.write("power.event", "powerd", bag.encode("power.event", {"event": "low", "battery": "left",
                                                                          "percent": seconds}, header), 1, 1, 1)
    output.close()
    assert [p.name for p in output.paths] == ["timed.mcap", "timed-001.mcap", "timed-002.mcap"]
    assert [len(recorded(p)) for p in output.paths] == [3, 1, 1]


@pytest.fixture
def listener(procs, runtime):
    procs.start_broker()
    heard = []
    node = Node("listener", runtime)
    for prefix in ("power", "input"):
        node.subscribe(prefix, lambda m: heard.append((m.source, m.topic, m.payload)))
    node.start(timeout=DEADLINE_S)
    yield node, heard
    node.close()


def play(runtime, path, listener, expected: int, **options) -> list[tuple]:
    node, heard = listener
    replayer = Replayer(runtime, **options)
    try:
        replayer.play([i for i in bag.iterate(path) if isinstance(i, bag.Recorded)])
    finally:
        replayer.close()
    wait_for(lambda: len(heard) >= expected or None, DEADLINE_S, f"{expected} replayed messages",
             poll=lambda remaining: node.run_once(min(remaining, 0.05)))
    node.run_once(0.2)  # anything more that was (wrongly) sent arrives too
    return list(heard)


@pytest.mark.slow
def test_replay_keeps_only_the_allowed_topics_and_drops_the_blocked(runtime, tmp_path, listener):
    sent = synthetic(tmp_path / "s.mcap", spacing_s=0.001)
    heard = play(runtime, tmp_path / "s.mcap", listener, 3, rate=10.0, allow=["power"])
    assert heard == [m for m in sent if m[1] == "power.event"]
    listener[1].clear()
    heard = play(runtime, tmp_path / "s.mcap", listener, 3, rate=10.0, block=["power"])
    assert heard == [m for m in sent if m[1] == "input.gesture"]


@pytest.mark.slow
def test_replay_from_a_start_time_keeps_the_original_pace_scaled_by_the_rate(runtime, tmp_path, listener):
    sent = synthetic(tmp_path / "s.mcap", count=6, spacing_s=1.0)
    replayer = Replayer(runtime, rate=20.0)
    items = [i for i in bag.iterate(tmp_path / "s.mcap") if isinstance(i, bag.Recorded)]
    try:
        replayer.play(items, start_s=2.5)  # the messages at 0, 1 and 2 s are before the start
    finally:
        replayer.close()
    node, heard = listener
    wait_for(lambda: len(heard) >= 3 or None, DEADLINE_S, "the last three",
             poll=lambda remaining: node.run_once(min(remaining, 0.05)))
    assert heard == sent[3:] and replayer.skipped == 3


def ignoring_sigint() -> None:
    """As a script's background job starts: SIGINT ignored, inherited so by what it runs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_loop_starts_over_until_ctrl_c(procs, runtime, tmp_path, listener, stop):
    sent = synthetic(tmp_path / "s.mcap", count=4, spacing_s=0.01)
    node, heard = listener
    looping = procs.lens("bus", "replay", str(tmp_path / "s.mcap"), "--loop", "--rate", "10",
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=ignoring_sigint)
    # Each source replays from its own node: its own order holds, not the order between sources.
    sources = by_source(sent)
    wait_for(lambda: all(len(by_source(heard).get(s, [])) >= 3 * len(mine) for s, mine in sources.items()) or None,
             DEADLINE_S, "three rounds from every source", poll=lambda remaining: node.run_once(min(remaining, 0.05)))
    looping.send_signal(stop)
    _, said = looping.communicate(timeout=DEADLINE_S)
    assert looping.returncode == 0 and "messages published" in said, said
    got = by_source(heard)
    for source, mine in sources.items():
        assert got[source][:3 * len(mine)] == mine * 3


@pytest.mark.slow
def test_paused_replay_sends_one_message_per_enter(procs, runtime, tmp_path, listener):
    sent = synthetic(tmp_path / "s.mcap", count=4, spacing_s=0.01)
    node, heard = listener
    paused = procs.lens("bus", "replay", str(tmp_path / "s.mcap"), "--paused", stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    paused.stdin.write("\n\n")  # two steps of four
    paused.stdin.flush()
    wait_for(lambda: len(heard) >= 2 or None, DEADLINE_S, "two steps",
             poll=lambda remaining: node.run_once(min(remaining, 0.05)))
    node.run_once(0.3)
    # Two publishers (per-source nodes): each one's order holds, not the order between them.
    assert by_source(heard) == by_source(sent[:2]), "no message goes out before its Enter"
    paused.communicate("\n\n", timeout=DEADLINE_S)
    assert paused.returncode == 0
    wait_for(lambda: by_source(heard) == by_source(sent) or None, DEADLINE_S, "the other two after two more",
             poll=lambda remaining: node.run_once(min(remaining, 0.05)))


@pytest.mark.parametrize("args, error", [
    (["replay", "x.mcap", "--rate", "0"], "--rate: must be more than 0"),
    (["replay", "x.mcap", "--start", "-1"], "--start: must be 0 or more"),
    (["record", "-o", "x.mcap", "--frame-every", "0"], "--frame-every: must be 1 or more"),
    (["record", "-o", "x.mcap", "--split-size", "-2"], "--split-size: must be more than 0"),
    (["replay", "/nonexistent/run.mcap"], "no such file"),
    (["info", "/nonexistent/run.mcap"], "no such file"),
])
def test_bad_arguments_are_refused_with_the_reason(procs, args, error):
    result = procs.run_lens("bus", *args)
    assert result.returncode == 2 and error in result.stderr, result.stderr


def test_a_junk_file_is_named_not_a_recording(procs, tmp_path):
    (tmp_path / "junk.mcap").write_bytes(b"\x00" * 100)
    result = procs.run_lens("bus", "info", str(tmp_path / "junk.mcap"))
    assert result.returncode == 2 and "not a readable MCAP recording" in result.stderr


@pytest.mark.fault
@pytest.mark.slow
def test_a_full_disk_ends_the_recording_at_once_non_zero_with_the_earlier_files_whole(procs, runtime):
    with small_disk("512k") as disk:
        fill(disk, leave=200_000)
        procs.start_broker()
        path = disk / "full.mcap"
        recorder = procs.lens("bus", "record", "-o", str(path), "--split-size", "0.05", "--compression", "none",
                              "power", stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        wait_line(recorder.stderr, "recording")
        publisher = Node("powerd", runtime).start()
        try:
            sent = 0
            deadline = time.monotonic() + DEADLINE_S
            while recorder.poll() is None and time.monotonic() < deadline:
                publisher.publish("power.event", event="low", battery="x" * 1000, percent=float(sent))
                publisher.run_once(0.001)
                sent += 1
        finally:
            publisher.close()
        assert recorder.wait(DEADLINE_S) == 1, "a full disk is an error"
        err = drain_lines(recorder.stderr)
        assert "Traceback" not in err and err.count("the disk is full") == 2, err  # the log's line, the summary
        files = [path, *sorted(disk.glob("full-*.mcap"))]  # in the order they were written
        assert len(files) >= 2 and not empty_files(disk), files
        for whole in files[:-1]:
            assert not [item for item in bag.iterate(whole) if isinstance(item, bag.Damage)], f"{whole} damaged"
