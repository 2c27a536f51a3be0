"""Recording and replaying the bus (MCAP): round trips message for message, damaged files, the mcap
reader and the schemas, gaps, snapshots, frames back into a ring, and a shell's decisions replayed."""

from __future__ import annotations

import base64
import json
import signal
import subprocess

import numpy as np
import pytest

from bustools import bag
from bus.envelope import Message
from bus.node import Node
from bustools.record import Output, Recorder
from frames.ring import FrameOverrun
from frames.door import open_ring
from bus.runtime import Runtime
from tests.conftest import DEADLINE_S, drain_lines, wait_for, wait_line

SCRIPT = [  # (source, topic, payload): a bit of everything, bytes included
    ("powerd", "power.event", {"event": "removed", "battery": "left", "percent": 81.5}),
    ("audiod", "audio.mic", {"owner": "app", "seq": 1, "rate": 16000, "mono_ns": 5, "pcm": bytes(range(256)) * 2}),
    ("audiod", "audio.vad", {"owner": "app", "speech": True, "seq": 1, "level_db": -20.5}),
    ("powerd", "power.event", {"event": "inserted", "battery": "left", "percent": 81.0}),
    ("inputd", "input.gesture", {"gesture": "tap", "source": "touchpad", "mono_ns": 12345678901234}),
    ("audiod", "audio.played", {"owner": "x", "id": "ü-ñ", "status": "finished"}),
]


def publish_script(runtime, rounds: int = 3) -> list[tuple[str, str, dict]]:
    nodes = {name: Node(name, runtime).start() for name in {s for s, _, _ in SCRIPT}}
    sent = []
    try:
        for n in range(rounds):
            for source, topic, payload in SCRIPT:
                payload = dict(payload, **({"percent": payload["percent"] + n} if "percent" in payload else {}))
                nodes[source].publish(topic, **payload)
                sent.append((source, topic, payload))
        for node in nodes.values():
            node.run_once(0.05)
    finally:
        for node in nodes.values():
            node.close()
    return sent


def record(procs, path, *extra) -> subprocess.Popen:
    recorder = procs.lens("bus", "record", "-o", str(path), *extra, "power", "audio", "input",
                          stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    wait_line(recorder.stderr, "recording")
    return recorder


def stop(recorder: subprocess.Popen) -> str:
    """Ctrl-C, and what it printed; its stderr is read by wait_line's thread, so drained from there."""
    recorder.send_signal(signal.SIGINT)
    err = drain_lines(recorder.stderr)
    assert recorder.wait(DEADLINE_S) == 0, err
    return err


def by_source(messages) -> dict[str, list]:
    """The bus orders each publisher's messages; between publishers the broker interleaves them as they come."""
    out: dict[str, list] = {}
    for source, topic, payload in messages:
        out.setdefault(source, []).append((topic, payload))
    return out


def recorded(path) -> list[tuple[str, str, dict]]:
    items = [i for i in bag.iterate(path) if isinstance(i, bag.Recorded)]
    return [(i.source, i.topic, i.payload) for i in items]


def heard_through_the_broker(runtime, sent, publish):
    """Publish, and return once a listener has every message: then the recorder has had them sent too."""
    heard = []
    listener = Node("listener", runtime)
    for prefix in ("power", "audio", "input"):
        listener.subscribe(prefix, lambda m: heard.append(m))
    listener.start(timeout=DEADLINE_S)
    sent += publish()
    wait_for(lambda: len(heard) >= len(sent) or None, DEADLINE_S, "the messages through the broker",
             poll=lambda remaining: listener.run_once(min(remaining, 0.1)))
    listener.close()


@pytest.fixture
def recording(procs, runtime, tmp_path):
    procs.start_broker()
    path = tmp_path / "run.mcap"
    recorder = record(procs, path, "--include-capture")  # bytes and all: the mic's too
    sent = []
    heard_through_the_broker(runtime, sent, lambda: publish_script(runtime))
    stop(recorder)
    return path, sent


@pytest.mark.slow
def test_record_then_replay_is_equal_message_for_message(procs, runtime, tmp_path, recording):
    path, sent = recording
    assert by_source(recorded(path)) == by_source(sent), "recorded: the payloads (bytes and all), in order"
    fresh = Runtime.resolve(tmp_path / "fresh")
    listener_env = procs.env(LENS_RUNTIME_DIR=str(fresh.dir))
    procs.start("-m", "broker", "--runtime-dir", str(fresh.dir), env=listener_env)
    heard = []
    listener = Node("listener", fresh)
    for prefix in ("power", "audio", "input"):
        listener.subscribe(prefix, lambda m: heard.append((m.source, m.topic, m.payload)))
    listener.start(timeout=DEADLINE_S)
    replay = procs.lens("bus", "replay", str(path), "--rate", "20", env=listener_env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: len(heard) >= len(sent) or None, DEADLINE_S, "the replayed messages",
             poll=lambda remaining: listener.run_once(min(remaining, 0.1)))
    listener.close()
    assert replay.wait(DEADLINE_S) == 0, replay.stderr.read()
    assert by_source(heard) == by_source(recorded(path)), "replayed: the same payloads, sources and order"


def test_a_damaged_file_gives_what_comes_before_and_says_where_it_stopped(tmp_path):
    path = tmp_path / "whole.mcap"
    output = Output(path, "none")
    header = {"source": "powerd", "incarnation": 1, "mono_ns": 0, "wall_ns": 0}
    for seq in range(1, 3001):  # several 64 KiB chunks
        data = bag.encode("power.event", {"event": "low", "battery": "left", "percent": float(seq)},
                          dict(header, seq=seq))
        output.write("power.event", "powerd", data, seq, seq, seq)
    output.close()
    whole = path.read_bytes()
    (tmp_path / "cut.mcap").write_bytes(whole[: len(whole) * 2 // 3])
    items = list(bag.iterate(tmp_path / "cut.mcap"))
    damage = items[-1]
    assert isinstance(damage, bag.Damage) and 0 < damage.messages_read < 3000
    assert items[0] == ("metadata", "lensos.capture", {"holds": "", "withheld": "camera frames, card pictures, mic audio, photos"}), \
        "the capture mark comes first: a file cut short keeps it"
    percents = [i.payload["percent"] for i in items[1:-1]]
    assert percents == [float(n) for n in range(1, damage.messages_read + 1)], "everything before, in order"
    flipped = bytearray(whole)
    flipped[len(whole) // 2] ^= 0xFF
    (tmp_path / "flipped.mcap").write_bytes(bytes(flipped))
    items = list(bag.iterate(tmp_path / "flipped.mcap"))
    assert isinstance(items[-1], bag.Damage) and items[-1].messages_read < 3000
    (tmp_path / "junk.mcap").write_bytes(b"this is not a recording")
    with pytest.raises(bag.BagError, match="not a readable MCAP recording"):
        list(bag.iterate(tmp_path / "junk.mcap"))


@pytest.mark.slow
def test_info_reports_damage_with_status_1(procs, tmp_path, recording):
    path, sent = recording
    info = procs.run_lens("bus", "info", str(path), "--json")
    assert info.returncode == 0, info.stderr
    summary = json.loads(info.stdout)
    assert summary["messages"] == len(sent) and summary["gaps"] == {} and summary["damaged"] is None
    assert {r["topic"]: r["count"] for r in summary["topics"]}["power.event"] == 6
    whole = path.read_bytes()
    path.write_bytes(whole[:-200])  # the summary and footer are gone
    info = procs.run_lens("bus", "info", str(path))
    assert info.returncode == 1 and "DAMAGED" in info.stdout


@pytest.mark.slow
def test_the_file_opens_with_the_mcap_reader_and_every_message_validates_against_its_schema(recording):
    jsonschema = pytest.importorskip("jsonschema")
    from mcap.reader import make_reader

    path, sent = recording
    with open(path, "rb") as stream:
        reader = make_reader(stream)
        seen = 0
        for schema, channel, message in reader.iter_messages():
            assert schema.encoding == "jsonschema" and channel.message_encoding == "json"
            assert channel.metadata["source"] in {"powerd", "audiod", "inputd"}
            jsonschema.validate(json.loads(message.data), json.loads(schema.data))
            seen += 1
    assert seen == len(sent)


def test_gaps_are_counted_kept_in_the_file_and_never_silent(tmp_path):
    node = Node("recorder-test", tmp_path / "unused")  # never started: messages are fed by hand
    path = tmp_path / "gappy.mcap"
    recorder = Recorder(node, Output(path, "zstd"), ["power"])
    for seq in (1, 2, 5, 6, 9):
        payload = {"event": "low", "battery": "left", "percent": 10.0}
        recorder.on_message(Message("power.event", "powerd", 7, seq, 0, 0, payload, b""))
    gaps = recorder.close()
    node.close()
    assert gaps == {"powerd power.event": 4}
    metadata = [i for i in bag.iterate(path) if isinstance(i, tuple) and i[1] == "lensos.gaps"]
    assert metadata == [("metadata", "lensos.gaps", {"powerd power.event": "4"})]


@pytest.mark.slow
def test_snapshot_mode_keeps_the_last_seconds_and_writes_them_on_request(procs, runtime, tmp_path):
    procs.start_broker()
    recorder = procs.lens("bus", "record", "--snapshot", "30", "-o", str(tmp_path / "snap.mcap"), "--include-capture",
                          stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    wait_line(recorder.stderr, "recording")
    sent = []
    heard_through_the_broker(runtime, sent, lambda: publish_script(runtime, rounds=1))
    result = procs.run_lens("bus", "snapshot", "--json")
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)
    got = [(s, t, p) for s, t, p in recorded(written["path"]) if not t.startswith(("bus.", "node."))]
    assert by_source(got) == by_source(sent)
    stop(recorder)


@pytest.mark.slow
def test_frames_are_stored_as_images_and_replayed_into_a_ring(procs, runtime, tmp_path):
    from tests.system import System, running

    system = System(procs, runtime, tmp_path)
    system.watcher.wait_state(running, "boot")
    path = tmp_path / "frames.mcap"
    private = tmp_path / "private.mcap"  # the default: descriptors, no pixels
    recorders = [procs.lens("bus", "record", "-o", str(out), "camera", *extra, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL) for out, extra in ((path, ["--include-capture"]), (private, []))]
    for recorder in recorders:
        wait_line(recorder.stderr, "recording")
    app = system.app("camapp")
    app.take_camera()
    app.ask("camera.control.request", mode="preview")
    app.wait(lambda: len(app.notices("camera.frame")) >= 5, "frames")
    photo = app.ask("camera.control.request", mode="photo")["path"]
    app.ask("camera.control.request", mode="off")
    for recorder in recorders:
        stop(recorder)
    images = [i for i in bag.iterate(path) if isinstance(i, bag.Recorded) and i.topic == bag.IMAGE_TOPIC]
    assert len(images) >= 5 and images[0].payload["format"] == "jpeg"
    [photo_kept] = [i for i in bag.iterate(path) if isinstance(i, bag.Recorded) and i.topic == bag.PHOTO_TOPIC]
    with open(photo, "rb") as taken:
        assert photo_kept.payload["data"] == base64.b64encode(taken.read()).decode()
    kept = [i for i in bag.iterate(private) if isinstance(i, bag.Recorded)]
    assert not [i for i in kept if i.topic in (bag.IMAGE_TOPIC, bag.PHOTO_TOPIC)], "no pixels by default"
    assert len([i for i in kept if i.topic == "camera.frame"]) >= 5, "the frames' descriptors and timing stay"

    fresh = Runtime.resolve(tmp_path / "fresh")
    env = procs.env(LENS_RUNTIME_DIR=str(fresh.dir))
    procs.start("-m", "broker", env=env)
    frames, states = [], []
    listener = Node("viewer", fresh)
    listener.subscribe("camera.frame", lambda m: frames.append(m.payload))
    listener.subscribe("camera.state", lambda m: states.append(m.payload))
    listener.start(timeout=DEADLINE_S)
    # --loop: the replay, and with it the replayed camerad's door, is still there when the viewer asks
    replay = procs.lens("bus", "replay", str(path), "--rate", "5", "--loop", env=env, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)
    try:
        wait_for(lambda: frames and states or None, DEADLINE_S, "replayed frames",
                 poll=lambda remaining: listener.run_once(min(remaining, 0.1)))
        ring = open_ring(listener)  # the replayed camerad's ring, through its door

        copied = []

        def newest_frame() -> bool:
            try:  # the replay goes on writing: a lapped frame is said so, and the newest one is read
                copied.append(ring.copy(frames[-1]["slot"], frames[-1]["gen"]))
                return True
            except FrameOverrun:
                return False
        wait_for(newest_frame, DEADLINE_S, "a whole frame",
                 poll=lambda remaining: listener.run_once(min(remaining, 0.05)))
        pixels = copied[-1]
        assert pixels.shape == (frames[-1]["height"], frames[-1]["width"], 3) and np.asarray(pixels).std() > 5
        ring.close()
    finally:
        listener.close()
        replay.send_signal(signal.SIGINT)
    replay.wait(DEADLINE_S)


@pytest.mark.slow
def test_replaying_a_scenario_into_a_fresh_shell_reproduces_its_decisions(procs, runtime, tmp_path):
    from tests.conftest import tuned_policies
    from tests.system import FAST, App

    procs.use_env(LENS_POLICY_DIR=str(tuned_policies(tmp_path, FAST)), LENS_STATE_DIR=str(tmp_path / "state"))
    procs.start_broker()
    path = tmp_path / "scenario.mcap"
    recorder = procs.lens("bus", "record", "-o", str(path), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    wait_line(recorder.stderr, "recording")
    for module in ("shell", "daemons.led", "daemons.power", "daemons.camera"):
        procs.start_ready("-m", module)
    app = App(Node("camapp", runtime, heartbeat=2.0))
    app.wait_state(lambda s: s["running"], "boot")
    app.take_camera()  # focus changes and capture
    app.ask("camera.control.request", mode="preview")
    app.wait(lambda: len(app.notices("camera.frame")) >= 3, "frames")
    app.ask("power.sim.request", action="pull", battery="left")  # the battery swap
    app.wait_state(lambda s: s["state"] == "battery_swap", "battery_swap")
    app.ask("power.sim.request", action="insert", battery="left")
    app.wait_state(lambda s: s["state"] != "battery_swap", "back from the swap")
    app.ask("camera.control.request", mode="off")
    app.ask("shell.release.request", resource="camera")
    app.close()
    stop(recorder)

    def states(messages) -> list[str]:
        out = []
        for state in (p["state"] for s, t, p in messages if t == "shell.state" and s == "shell"):
            if not out or out[-1] != state:
                out.append(state)
        return out
    original = states(recorded(path))
    assert original[:2] == ["booting", "active"] and "battery_swap" in original

    fresh = Runtime.resolve(tmp_path / "fresh")
    env = procs.env(LENS_RUNTIME_DIR=str(fresh.dir), LENS_STATE_DIR=str(tmp_path / "fresh-state"))
    procs.start("-m", "broker", env=env)
    heard = []
    listener = Node("listener", fresh)
    listener.subscribe("shell.state", lambda m: heard.append((m.source, m.topic, m.payload)))
    listener.start(timeout=DEADLINE_S)
    procs.start("-m", "shell", env=env)
    wait_for(lambda: heard or None, DEADLINE_S, "the fresh shell", poll=lambda r: listener.run_once(min(r, 0.1)))
    replay = procs.lens("bus", "replay", str(path), "--exclude-source", "shell", env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: replay.poll() is not None, 60, "the replay to end",
             poll=lambda r: listener.run_once(min(r, 0.1)))
    wait_for(lambda: states(heard) == original or None, DEADLINE_S,
             f"the fresh shell's states to be {original} (so far {states(heard)})",
             poll=lambda r: listener.run_once(min(r, 0.1)))
    listener.close()
