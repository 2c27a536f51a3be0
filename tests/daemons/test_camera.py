"""camerad: the frame ring, the sources, and capture gated by the shell and the LED over the real bus."""

from __future__ import annotations

import mmap
import os
import random
import signal
import threading

import numpy as np
import pytest

from bus.errors import RequestFailed
from daemons.camera.backends import CameraError, SimCamera, V4l2Camera, yuyv_to_rgb
from daemons.camera.recorder import read_index, recover, unfinished
from frames.ring import FrameOverrun, Ring
from frames.door import RingRefused, fetch, open_ring
from bus.audit import AuditLog
from tests.system import System, running

SHAPE = (48, 64, 3)


def test_ring_views_are_zero_copy_read_only_and_an_overrun_is_detected(tmp_path):
    writer = Ring.create(tmp_path / "ring", 3, SHAPE)
    reader = Ring.attach(tmp_path / "ring")
    slot, gen = writer.write(1, np.full(SHAPE, 7, np.uint8), 123)
    with reader.frame(slot, gen) as view:
        assert view.base is not None and not view.flags.writeable and int(view[0, 0, 0]) == 7
    for frame_id in range(2, 5):  # laps the ring: slot of frame 1 is reused by frame 4
        writer.write(frame_id, np.zeros(SHAPE, np.uint8), 0)
    with pytest.raises(FrameOverrun):
        reader.copy(slot, gen)
    with pytest.raises(FrameOverrun):
        with reader.frame(*writer.write(5, np.zeros(SHAPE, np.uint8), 0)):
            writer.write(8, np.ones(SHAPE, np.uint8), 0)  # overwritten while being read
    (tmp_path / "junk").write_bytes(b"x" * 200)
    with pytest.raises(ValueError, match="not a lensos frame ring"):
        Ring.attach(tmp_path / "junk")


def test_a_reader_racing_the_writer_never_accepts_a_torn_frame(tmp_path):
    writer = Ring.create(tmp_path / "ring", 2, SHAPE)
    reader = Ring.attach(tmp_path / "ring")
    latest = {"desc": writer.write(1, np.full(SHAPE, 1, np.uint8), 0)}
    stop = threading.Event()

    def write():
        n = 1
        while not stop.is_set():
            n += 1
            latest["desc"] = writer.write(n, np.full(SHAPE, n % 251, np.uint8), 0)
    thread = threading.Thread(target=write)
    thread.start()
    accepted = overruns = 0
    try:
        while accepted < 300:
            try:
                frame = reader.copy(*latest["desc"])
            except FrameOverrun:
                overruns += 1
                continue
            assert frame.min() == frame.max(), "a torn frame was accepted"
            accepted += 1
    finally:
        stop.set()
        thread.join()
    print(f"ring race: {accepted} frames accepted whole, {overruns} overruns detected")


def test_yuyv_conversion_and_the_sim_pattern():
    white = bytes([235, 128, 235, 128]) * 2
    black = bytes([16, 128, 16, 128]) * 2
    assert yuyv_to_rgb(white + black, 2, 4).tolist() == [[[255] * 3] * 4, [[0] * 3] * 4]
    sim = SimCamera(64, 48)
    a, b = sim.grab(1, np.empty(SHAPE, np.uint8)).copy(), sim.grab(2, np.empty(SHAPE, np.uint8))
    assert not np.array_equal(a, b)  # it moves, and the counter changes
    assert a[:22].max() > 200 and a[:22].mean() < 60  # white digits on the black stamp


def test_v4l2_names_the_device_it_cannot_open(tmp_path):
    with pytest.raises(CameraError, match="video-nothing"):
        V4l2Camera(str(tmp_path / "video-nothing"), 640, 480, 30.0)


@pytest.fixture
def system(procs, runtime, tmp_path):
    made = System(procs, runtime, tmp_path)
    made.watcher.wait_state(running, "boot")
    return made


@pytest.mark.slow
def test_camera_refuses_without_the_shells_grant(system):
    app = system.app("sneaky")
    with pytest.raises(RequestFailed, match="has not granted sneaky camera capture"):
        app.ask("camera.control.request", mode="preview")
    with pytest.raises(RequestFailed, match="not granted"):
        app.ask("camera.control.request", mode="photo")
    assert not app.notices("camera.frame")


@pytest.mark.slow
def test_frames_start_after_the_led_is_lit_and_two_readers_see_them_whole(system):
    app = system.app("camapp")
    app.take_camera()
    assert app.ask("camera.control.request", mode="preview")["mode"] == "preview"
    frames = app.wait(lambda: len(app.notices("camera.frame")) >= 5 and app.notices("camera.frame"), "frames")
    cmd = app.latest["privacy.indicator"]["cmd"]
    lit = next(i for i, m in enumerate(app.log) if m.topic == "led.state" and m.payload["lit"]
               and m.payload["cmd"] == cmd)
    first = next(i for i, m in enumerate(app.log) if m.topic == "camera.frame")
    assert lit < first, "a frame was published before the LED confirmed"
    ring = open_ring(app.node)
    watcher = system.watcher
    watcher.wait(lambda: watcher.notices("camera.frame"), "frames at the second reader")
    for reader in (app, watcher):
        desc = reader.notices("camera.frame")[-1]
        try:
            pixels = ring.copy(desc["slot"], desc["gen"])
        except FrameOverrun:
            continue  # lapped: said so, never torn
        assert pixels.shape == (desc["height"], desc["width"], 3) and pixels.any()
    assert [f["id"] for f in frames] == sorted(f["id"] for f in frames)
    ring.close()


@pytest.mark.fault
@pytest.mark.slow
def test_led_fault_mid_capture_stops_the_camera_and_closes_the_audit_session(system):
    app = system.app("camapp")
    app.take_camera()
    app.ask("camera.control.request", mode="preview")
    app.wait(lambda: len(app.notices("camera.frame")) >= 3, "frames")
    app.ask("led.sim.request", fault="LED driver error")
    state = app.wait(lambda: app.latest["camera.state"]["mode"] == "off" and app.latest["camera.state"],
                     "camera stopped")
    assert "not granted" in state["why"] or "fault" in state["why"]
    audit = AuditLog(system.state_dir / "privacy-audit.jsonl")
    session = app.wait(lambda: [s for s in audit.sessions() if s["frames"]], "the frame count in the audit log")[0]
    assert session["end"] is not None and "LED driver error" in session["why_ended"]
    assert session["frames"] >= 3
    with pytest.raises(RequestFailed):
        app.ask("camera.control.request", mode="preview")


@pytest.mark.fault
@pytest.mark.slow
def test_battery_pulled_mid_recording_checkpoints_and_resumes_without_losing_a_frame(system):
    app = system.app("camapp")
    app.take_camera()
    directory = app.ask("camera.control.request", mode="video")["path"]
    app.wait(lambda: len(app.notices("camera.frame")) >= 10, "recording")

    app.ask("power.sim.request", action="pull", battery="left")
    segment = app.wait(lambda: app.notices("camera.segment"), "the checkpoint")[0]
    assert segment["why"].startswith("checkpoint") and segment["first"] == 1 and segment["frames"] >= 10
    assert app.wait(lambda: app.latest["camera.state"]["paused"], "paused in the swap")
    assert len(read_index(directory)) == segment["last"]  # flushed and fsync'ed: all on disk already

    app.ask("power.sim.request", action="insert", battery="left")
    app.wait(lambda: not app.latest["camera.state"]["paused"], "resumed")
    seen = len(app.notices("camera.frame"))
    app.wait(lambda: len(app.notices("camera.frame")) >= seen + 10, "recording again")
    app.ask("camera.control.request", mode="off")
    app.wait(lambda: len(app.notices("camera.segment")) == 2, "the second segment closed")
    rows = read_index(directory)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)), "a frame is missing between segments"
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    second = app.notices("camera.segment")[1]
    assert second["first"] == segment["last"] + 1 and second["last"] == len(rows)


@pytest.mark.slow
def test_only_the_capturing_app_gets_the_frame_ring_read_only_and_a_new_session_gets_a_new_one(system, runtime):
    # the camera app's own key (its manifest has the camera: an identity without one gets no capture)
    owner, nosy = system.app("camera", own_key=True), system.app("nosy", own_key=True)
    with pytest.raises(RequestFailed, match="no frame ring"):
        nosy.ask("camera.ring.request")
    owner.take_camera()
    owner.ask("camera.control.request", mode="preview")
    owner.wait(lambda: owner.notices("camera.frame"), "frames")
    with pytest.raises(RequestFailed, match="nosy is not capturing"):
        open_ring(nosy.node)
    assert not [p.name for p in runtime.dir.iterdir() if "ring" in p.name], "a ring anyone could open by name"

    ticket = owner.ask("camera.ring.request")
    with pytest.raises(RingRefused, match="unknown"):
        fetch(ticket["door"], "0" * 32)
    fd = fetch(ticket["door"], ticket["ticket"])
    with pytest.raises(RingRefused, match="used"):
        fetch(ticket["door"], ticket["ticket"])
    try:  # whatever the holder of the descriptor tries, it cannot write frames or shrink the ring under camerad
        with pytest.raises(PermissionError):
            mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"forged", 4096)
        ring = Ring.from_fd(fd)
    finally:
        os.close(fd)
    ring.epoch = ticket["ring"]

    def a_whole_frame(reader, ring):
        desc = reader.notices("camera.frame")[-1]
        try:
            return desc["ring"] == ring.epoch and [ring.copy(desc["slot"], desc["gen"])]
        except FrameOverrun:
            return None
    pixels = owner.wait(lambda: a_whole_frame(owner, ring), "a frame read through the descriptor")[0]
    assert pixels.any()

    owner.ask("camera.control.request", mode="off")
    owner.ask("camera.control.request", mode="preview")
    later = owner.wait(lambda: [f for f in owner.notices("camera.frame") if f["ring"] != ring.epoch], "a new ring")
    assert later[0]["ring"] > ring.epoch
    frozen = ring.copy(0, int(ring._gens[0][0]))
    owner.wait(lambda: len([f for f in owner.notices("camera.frame") if f["ring"] != ring.epoch]) >= 5,
               "frames of the new session")
    assert np.array_equal(ring.copy(0, int(ring._gens[0][0])), frozen), "the old ring got the new session's frames"
    fresh = open_ring(owner.node)
    assert fresh.epoch == later[0]["ring"]
    fresh.close()
    ring.close()


@pytest.mark.fault
@pytest.mark.slow
def test_camerad_killed_at_random_instants_while_recording_loses_no_written_frame(system):
    """kill -9 at a random frame, a bounded number of times: every frame published while recording (but the
    one in flight) is whole on disk, the audit record ends with them counted, the camera goes back and the
    LED out."""
    rng = random.Random(28)
    app = system.app("camapp")
    audit = AuditLog(system.state_dir / "privacy-audit.jsonl")
    for round_ in range(3):
        mark = len(app.log)
        app.ask("shell.foreground.request", app="camapp")
        app.ask("shell.focus.request", resource="camera", kind="exclusive", cls="foreground", reason="video")
        grant = app.wait(lambda: next((m.payload for m in app.log[mark:] if m.topic == "shell.capture.notice"
                                       and m.payload["status"] == "granted"), None), "capture granted")
        directory = app.ask("camera.control.request", mode="video")["path"]
        wanted = rng.randrange(3, 40)
        app.wait(lambda: len([m for m in app.log[mark:] if m.topic == "camera.frame"]) >= wanted, "recording")
        system.procs.stop(system.camerad, signal.SIGKILL)
        seen = [m.payload["id"] for m in app.log[mark:] if m.topic == "camera.frame"]
        system.camerad = system.procs.start_ready("-m", "daemons.camera")  # as the launcher would
        lost = app.wait(lambda: app.notices("shell.focus.notice", owner="camapp", resource="camera",
                                            status="lost")[round_:], "told the recording stopped")[0]
        assert "camerad stopped" in lost["reason"]
        app.wait_state(lambda s: not s["privacy"]["capture"], "the grant withdrawn")
        app.wait(lambda: app.latest["privacy.indicator"]["on"] is False, "the LED out after its hold")
        found = recover(directory)
        ids = [r["id"] for r in found.frames]
        assert [r["seq"] for r in found.frames] == list(range(1, len(ids) + 1))
        assert set(seen[:-1]) <= set(ids), f"round {round_}: a frame published while recording is missing"
        session = app.wait(lambda: [s for s in audit.sessions() if s["session"] == grant["session"]
                                    and s["end"] is not None and s["frames"]], "the audit record closed")[0]
        assert session["frames"] == len(ids) and "camerad stopped" in session["why_ended"]
        app.ask("shell.release.request", resource="camera")


@pytest.mark.fault
@pytest.mark.slow
def test_a_photo_asked_for_during_a_video_ends_the_recording_cleanly_and_the_owner_is_told(system):
    """'Take a photo' said while an app records: the assistant's transient claim suspends the recording app;
    camerad ends that recording and the shell takes the camera back from its owner for good (told why), so
    no grant or LED is left behind once the photo is taken."""
    app, assistant = system.app("camapp"), system.app("assistantd")
    grant = app.take_camera()
    directory = app.ask("camera.control.request", mode="video")["path"]
    app.wait(lambda: len(app.notices("camera.frame")) >= 5, "recording")
    assistant.ask("shell.focus.request", resource="camera", kind="transient", cls="assistant", reason="photo")
    assistant.wait(lambda: assistant.notices("shell.capture.notice", owner="assistantd", status="granted"),
                   "the assistant's grant")
    assert assistant.ask("camera.control.request", mode="photo")["path"].endswith(".jpg")
    assistant.ask("shell.release.request", resource="camera")
    app.wait(lambda: app.notices("shell.focus.notice", owner="camapp", resource="camera", status="lost"),
             "the recording app told it lost the camera")
    state = app.wait_state(lambda s: s["focus"]["camera"]["owner"] is None and not s["privacy"]["capture"],
                           "nobody left holding the camera")
    assert "camapp" not in str(state["focus"]["camera"])
    app.wait(lambda: app.latest["privacy.indicator"]["on"] is False, "the LED out after its hold")
    audit = AuditLog(system.state_dir / "privacy-audit.jsonl")
    session = app.wait(lambda: [s for s in audit.sessions() if s["session"] == grant["session"]
                                and s["end"] is not None and s["frames"]], "the recording's audit record closed")[0]
    assert session["frames"] >= 5 and recover(directory).torn == 0 and not unfinished(directory.rsplit("/", 1)[0])


@pytest.mark.slow
def test_photos_and_recordings_are_where_lens_paths_says(system, monkeypatch):
    from cli.paths import paths

    monkeypatch.setenv("LENS_STATE_DIR", str(system.state_dir))  # camerad's, which `lens up` shares with all
    where = paths()
    app = system.app("camapp")
    app.take_camera()
    photo = app.ask("camera.control.request", mode="photo")["path"]
    assert os.path.dirname(photo) == where["photos"]["path"] and os.path.getsize(photo) > 0
    recording = app.ask("camera.control.request", mode="video")["path"]
    assert os.path.dirname(recording) == where["recordings"]["path"]
    app.ask("camera.control.request", mode="off")
