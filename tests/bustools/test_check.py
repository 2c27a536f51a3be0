"""`lens bus check`: each privacy and safety rule caught in a recording made to break it, and nothing reported
for the same story told right; a real capture session recorded from the bus passes."""

from __future__ import annotations

import json
import subprocess

import pytest

from bustools import bag
from bustools.check import Checker
from bustools.record import Output
from shell import machine
from tests.conftest import DEADLINE_S, read_json_lines, wait_line

S = 1_000_000_000  # ns


def write(path, messages) -> str:
    """A recording of ``(seconds, topic, source, payload[, incarnation])``, each message's own header as the
    bus had it (incarnation 1 unless given)."""
    out = Output(path, "none")
    for seq, (at, topic, source, payload, *incarnation) in enumerate(messages, 1):
        header = {"source": source, "incarnation": incarnation[0] if incarnation else 1, "seq": seq, "mono_ns": int(at * S), "wall_ns": int(at * S)}
        out.write(topic, source, bag.encode(topic, payload, header), int(at * S), int(at * S), seq)
    out.close()
    return str(path)


def messages(path):
    """The recorded messages, without the file's metadata."""
    return [item for item in bag.iterate(path) if isinstance(item, bag.Recorded)]


def led(at, lit, fault=None):
    return (at, "led.state", "ledd", {"lit": lit, "cmd": 1, "fault": fault, "brightness": 255 if lit else 0,
                                       "backend": "sim"})


def frame(at, owner="camera", n=1):
    return (at, "camera.frame", "camerad", {"id": n, "slot": 0, "gen": 1, "width": 4, "height": 4, "format": "rgb",
                                            "mono_ns": int(at * S), "owner": owner, "ring": 1})


def notice(at, owner, status, resource="camera"):
    return (at, "shell.focus.notice", "shell", {"owner": owner, "resource": resource, "status": status, "reason": ""})


def shell_state(at, state="active", focus=None):
    # The state's properties as the shell publishes them, from the machine's table: the check reads those.
    return (at, "shell.state", "shell", {"state": state, "degraded": [], "ready": [], "foreground": None,
                                         "brightness": 1.0, **{tag: machine.has(state, tag) for tag in machine.TAGS},
                                         "power": {}, "focus": focus or {}, "privacy": {},
                                         "nodes": {}, "boot_s": 1.0, "model": "s1"})


def camera_state(at, recording):
    return (at, "camera.state", "camerad", {"mode": "record" if recording else "off", "owner": "camera", "fps": 30.0,
                                            "frames": 0, "ring": 1, "width": 4, "height": 4, "backend": "sim",
                                            "paused": False, "recording": recording, "why": ""})


def segment(at, why):
    return (at, "camera.segment", "camerad", {"owner": "camera", "path": "/x/seg-0001.mjpeg", "frames": 3,
                                              "first": 1, "last": 3, "why": why})


def request(at, cid, source="camera"):
    return (at, "display.clear.request", source, {"cid": cid, "id": "x"})


def reply(at, cid, to="camera"):
    return (at, "display.clear.reply", "displayd", {"to": to, "cid": cid, "ok": True, "error": None, "result": {}})


def capture(at, listening, grants=()):
    return (at, "privacy.capture", "shell", {"grants": list(grants), "cmd": 1, "fault": None, "listening": listening})


def idle_block(at, owner="waked"):
    return (at, "audio.wake.mic", "audiod", {"owner": owner, "seq": 1, "rate": 16000, "mono_ns": int(at * S),
                                             "pcm": b"\0" * 640})


STORIES = {  # rule -> (broken, told right)
    "led": ([led(0, True), frame(1), led(2, False), frame(3)],
            [led(0, True), frame(1), frame(2), led(5, False)]),
    "permission": ([led(0, True), frame(1, owner="music")],
                   [led(0, True), frame(1, owner="camera"), frame(1.5, owner="assistantd")]),
    "exclusive": ([notice(1, "camera", "granted"), shell_state(1.1), notice(2, "lens", "granted"), shell_state(2.1)],
                  [notice(1, "camera", "granted"), shell_state(1.1), notice(2, "lens", "granted"),
                   notice(2.01, "camera", "lost"), shell_state(2.1),
                   shell_state(3, focus={"camera": {"stack": []}}), notice(4, "camera", "granted"),
                   shell_state(4.1)]),
    "answered": ([request(1, 1), reply(1.1, 1), request(2, 2), request(20, 3), reply(20.1, 3)],
                 [request(1, 1), reply(1.1, 1), request(2, 2), reply(9, 2)]),
    # Heard by the one the shell names; one in flight as the shell withdraws it; none after, nor for another.
    "listen": ([capture(0, "waked"), idle_block(1), capture(2, None, ["assistantd:mic"]), idle_block(2.1),
                idle_block(3)],
               [capture(0, "waked"), idle_block(1), capture(2, None, ["assistantd:mic"]), idle_block(2.1),
                capture(5, "waked"), idle_block(5.5)]),
    "checkpoint": ([camera_state(0, "/media/rec-1"), shell_state(1, "battery_swap"), shell_state(10, "active")],
                   [camera_state(0, "/media/rec-1"), shell_state(1, "battery_swap"),
                    segment(1.2, "checkpoint: battery_swap"), shell_state(10, "active")]),
}


def test_a_request_whose_server_or_asker_was_killed_and_started_again_is_void_not_a_violation(tmp_path):
    """A kill (tests/test_restarts.py) takes the unanswered requests with it: the asker was told by its timeout,
    or is gone. A server that just goes quiet stays a violation (the "answered" story above)."""
    displayd_again = (5, "display.state", "displayd", {"on": True}, 2)
    camera_again = (7, "display.clear.request", "camera", {"cid": 1, "id": "y"}, 2)
    story = [request(1, 1), reply(1.1, 1), request(2, 2), displayd_again, request(6, 3, source="music"),
             request(6.5, 4), camera_again, (8, *reply(8, 3, to="music")[1:], 2), (8.5, *reply(8.5, 1)[1:], 2),
             (20, "display.state", "displayd", {"on": True}, 2)]
    found = checker()
    for msg in messages(write(tmp_path / "killed.mcap", story)):
        found.feed(msg)
    found.finish()
    assert found.violations == [], [v.as_dict() for v in found.violations]
    assert found.counts["void"] == 2  # the one displayd's old self held, and camera's own before its restart


def checker() -> Checker:
    return Checker(may_capture={"camera": {"camera"}, "music": set(), "lens": {"camera"}})


@pytest.mark.parametrize("rule", sorted(STORIES))
def test_each_rule_catches_its_broken_story_and_passes_it_told_right(tmp_path, rule):
    broken, right = STORIES[rule]
    caught = checker()
    for msg in messages(write(tmp_path / "broken.mcap", broken)):
        caught.feed(msg)
    caught.finish()
    assert [v.rule for v in caught.violations] == [rule], [v.as_dict() for v in caught.violations]
    assert caught.violations[0].messages, "a violation names the messages involved"
    fine = checker()
    for msg in messages(write(tmp_path / "right.mcap", right)):
        fine.feed(msg)
    fine.finish()
    assert fine.violations == [], [v.as_dict() for v in fine.violations]


def test_a_frame_published_just_after_a_fault_is_in_flight_but_one_later_is_a_violation(tmp_path):
    story = [led(0, True), frame(1), led(2, False, fault="burnt out"), frame(2.05), frame(3)]
    found = checker()
    for msg in messages(write(tmp_path / "fault.mcap", story)):
        found.feed(msg)
    found.finish()
    assert [(v.rule, v.mono_ns) for v in found.violations] == [("led", 3 * S)]
    assert found.counts["in_flight"] == 1


def test_lens_bus_check_prints_each_violation_and_exits_non_zero(tmp_path, procs):
    broken = write(tmp_path / "broken.mcap", STORIES["led"][0] + [frame(4, owner="stranger")])
    result = procs.run_lens("bus", "check", broken, "--json")
    assert result.returncode == 1, result.stderr
    lines = read_json_lines(result.stdout)
    assert [line["rule"] for line in lines[:-1]] == ["led", "led", "permission"]
    assert lines[-1]["summary"]["violations"] == 3 and lines[-1]["summary"]["frames"] == 3
    text = procs.run_lens("bus", "check", broken)
    assert text.returncode == 1 and "VIOLATION led at 3.000 s" in text.stdout and "camera.frame from camerad" in text.stdout
    clean = procs.run_lens("bus", "check", write(tmp_path / "right.mcap", STORIES["led"][1]))
    assert clean.returncode == 0 and "no violation" in clean.stdout, clean.stdout
    missing = procs.run_lens("bus", "check", str(tmp_path / "nothing.mcap"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_a_recorded_capture_session_on_the_real_bus_breaks_no_rule(procs, runtime, tmp_path):
    """The whole glasses in simulation: the camera app takes a photo and records a video, the battery is
    swapped in the middle, with `lens bus record` running; the recording passes every rule."""
    up = procs.lens("up", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_line(up.stdout, "processes ready in", timeout=60)
    path = tmp_path / "session.mcap"
    record = procs.lens("bus", "record", "-o", str(path), "--frame-every", "1000")
    live = procs.lens("bus", "check", "--live", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_line(record.stderr, "recording")
    wait_line(live.stderr, "watching")
    for words in ("take a photo", "start recording"):
        said = procs.run_lens("say", words, "--json")
        assert said.returncode == 0, said.stdout + said.stderr
    assert procs.run_lens("power", "pull", "left").returncode == 0
    assert procs.run_lens("power", "insert", "left").returncode == 0
    assert procs.run_lens("say", "stop recording", "--json").returncode == 0
    for child in (record, live):
        child.send_signal(2)
    record.wait(DEADLINE_S)
    out, _ = live.communicate(timeout=DEADLINE_S)
    result = procs.run_lens("bus", "check", str(path), "--json")
    summary = read_json_lines(result.stdout)[-1]["summary"]
    assert result.returncode == 0, result.stdout
    assert summary["frames"] > 0 and "led.state" not in " ".join(summary["unchecked"])
    assert json.loads(out.splitlines()[-1])["summary"]["violations"] == 0, out


@pytest.mark.slow
def test_every_system_scenario_records_its_bus_and_a_broken_rule_fails_it(procs, runtime, tmp_path):
    """tests/checked.py: what every System test does at its end, here on a capture its manifest does not allow."""
    from tests.system import System, running

    system = System(procs, runtime, tmp_path)
    procs.checks.remove(system.checked.check)  # judged here, where the violation is the point
    system.watcher.wait_state(running, "boot")
    app = system.app("camapp")
    system.checked.declared["camapp"] = {"mic"}  # as if its manifest lacked the camera
    app.take_camera()
    app.ask("camera.control.request", mode="preview")
    app.wait(lambda: len(app.notices("camera.frame")) >= 2, "frames")
    app.ask("camera.control.request", mode="off")
    with pytest.raises(AssertionError, match="permission at .* camera capture for camapp, whose manifest lacks"):
        system.checked.check()
