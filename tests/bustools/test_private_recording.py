"""Recordings are private by default (issue 34): camera frames, mic audio and photos stay out of `lens bus
record` and its snapshots, their descriptors and timing kept; --include-capture puts them in only for an
identity that may see them, writes the privacy log and marks the file; `lens bus info` says which it is."""

from __future__ import annotations

import json
import subprocess

import pytest

from bustools import bag
from bustools.capture_content import METADATA
from bus.keys import generate, keys_dir
from tests.bustools.test_bag import by_source, heard_through_the_broker, publish_script, recorded, stop
from tests.conftest import read_json_lines, wait_line

PCM = bytes(range(256)) * 2  # the SCRIPT's mic block (tests/bustools/test_bag.py)


def record(procs, path, *extra) -> subprocess.Popen:
    recorder = procs.lens("bus", "record", "-o", str(path), *extra, "power", "audio", "input",
                          stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    wait_line(recorder.stderr, "recording")
    return recorder


def metadata(path) -> dict:
    found = {}
    for item in bag.iterate(path):
        if isinstance(item, tuple):
            found.setdefault(item[1], []).append(item[2])
    return found


def mic_blocks(path) -> list[bag.Recorded]:
    return [m for m in bag.iterate(path) if isinstance(m, bag.Recorded) and m.topic == "audio.mic"]


def info(procs, path) -> dict:
    result = procs.run_lens("bus", "info", str(path), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["capture"]


def privacy_log(procs) -> list[dict]:
    result = procs.run_lens("privacy", "log", "--json")
    assert result.returncode == 0, result.stderr
    return read_json_lines(result.stdout)


def test_by_default_mic_audio_stays_out_and_its_descriptors_and_timing_stay(procs, runtime, tmp_path):
    procs.start_broker()
    path = tmp_path / "private.mcap"
    recorder = record(procs, path)
    sent = []
    heard_through_the_broker(runtime, sent, lambda: publish_script(runtime))
    stop(recorder)
    blocks = mic_blocks(path)
    assert len(blocks) == 3, "every mic block's descriptor is in the timeline"
    for block in blocks:
        assert block.payload["pcm"] == b"" and block.withheld == {"pcm": len(PCM)}
        assert block.payload["seq"] == 1 and block.payload["rate"] == 16000 and block.payload["owner"] == "app"
        assert block.mono_ns and block.wall_ns
    without_mic = {s: [(t, p) for t, p in ms if t != "audio.mic"] for s, ms in by_source(recorded(path)).items()}
    assert without_mic == {s: [(t, p) for t, p in ms if t != "audio.mic"] for s, ms in by_source(sent).items()}
    assert metadata(path)[METADATA][0]["holds"] == "", "marked as holding none, from the file's start"
    capture = info(procs, path)
    assert capture["holds"] == [] and capture["marked"] == [] and capture["withheld"] == 3
    text = procs.run_lens("bus", "info", str(path)).stdout
    assert "capture:   none: camera frames, mic audio and photos were kept out" in text, text
    assert privacy_log(procs) == [], "nothing captured into the recording, nothing in the privacy log"


def test_include_capture_puts_it_in_writes_the_privacy_log_and_marks_the_file(procs, runtime, tmp_path):
    procs.start_broker()
    path = tmp_path / "with-capture.mcap"
    recorder = record(procs, path, "--include-capture")
    sent = []
    heard_through_the_broker(runtime, sent, lambda: publish_script(runtime))
    stop(recorder)
    assert by_source(recorded(path)) == by_source(sent), "every payload, the mic's bytes too"
    assert all(m.withheld is None for m in mic_blocks(path))
    marks = metadata(path)[METADATA]
    assert marks[0]["holds"] == "camera,mic" and marks[0]["identity"] == "developer", "marked at the start"
    assert marks[-1]["mic_blocks"] == "3", "and at the end with what it kept"
    capture = info(procs, path)
    assert capture["holds"] == ["mic"] and capture["marked"] == ["camera", "mic"] and not capture["unmarked_content"]
    assert "capture:   YES: 3 mic message(s) with content" in procs.run_lens("bus", "info", str(path)).stdout
    sessions = {s["resource"]: s for s in privacy_log(procs)}
    assert set(sessions) == {"camera", "mic"}
    mic = sessions["mic"]
    assert mic["owner"] == "developer" and str(path) in mic["reason"] and mic["end"] is not None
    assert mic["blocks"] == 3 and mic["audio_s"] == pytest.approx(3 * len(PCM) / 2 / 16000)
    assert mic["session"] in capture["privacy_sessions"]
    table = procs.run_lens("privacy", "log").stdout
    assert "developer" in table and "--include-capture" in table, table


def test_include_capture_is_refused_to_an_identity_that_may_not_see_it(procs, runtime, tmp_path):
    procs.start_broker()
    generate(keys_dir(runtime), ["someapp"])
    path = tmp_path / "refused.mcap"
    result = subprocess.run([*procs_cmd(), "bus", "record", "-o", str(path), "--include-capture", "--duration", "1"],
                            env=procs.env(LENS_KEY=str(keys_dir(runtime) / "someapp.key_secret")),
                            capture_output=True, text=True, timeout=60, cwd=procs_cwd())
    assert result.returncode == 2 and "--include-capture refused" in result.stderr and "'someapp'" in result.stderr
    assert not path.exists(), "nothing recorded"
    assert privacy_log(procs) == []


@pytest.mark.parametrize("include", [False, True], ids=["private", "include-capture"])
def test_the_snapshot_recorder_follows_the_same_rule(procs, runtime, tmp_path, include):
    procs.start_broker()
    recorder = procs.lens("bus", "record", "--snapshot", "30", "-o", str(tmp_path / "snap.mcap"),
                          *(["--include-capture"] if include else []), stderr=subprocess.PIPE,
                          stdout=subprocess.DEVNULL)
    wait_line(recorder.stderr, "recording")
    heard_through_the_broker(runtime, [], lambda: publish_script(runtime, rounds=1))
    result = procs.run_lens("bus", "snapshot", "--json")
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)["path"]
    stop(recorder)
    [block] = mic_blocks(written)
    assert block.payload["pcm"] == (PCM if include else b"")
    capture = info(procs, written)
    assert capture["holds"] == (["mic"] if include else []) and capture["marked"] == (["camera", "mic"] if include else [])
    assert [s["resource"] for s in privacy_log(procs)] == (["camera", "mic"] if include else [])


def procs_cmd() -> list[str]:
    import sys
    return [sys.executable, "-m", "cli.main"]


def procs_cwd():
    from tests.conftest import REPO
    return REPO


def test_a_cards_picture_is_camera_content_kept_out_by_default_and_counted_when_let_in(tmp_path):
    """The lens app's card carries a preview of what the camera saw: a recording keeps its text, not it."""
    from bustools.capture_content import Consent, carries, withhold

    card = {"id": "lens", "title": "Panda cola, 330 ml", "image": b"\xff\xd8\xff" + bytes(500), "cid": 3}
    kept, withheld = withhold("display.card.request", card)
    assert kept == dict(card, image=b"") and withheld == {"image": 503}
    assert carries("display.card.request", card) == "camera" and carries("display.card.request", kept) is None
    consent = Consent("developer", tmp_path / "privacy.log", "a test")
    consent.kept("display.card.request", card)
    assert consent.mark()["card_pictures"] == "1"


def test_the_idle_mic_the_spotter_hears_is_mic_audio_kept_out_by_default():
    from bustools.capture_content import CONTENT, RESOURCES, withhold

    kept, withheld = withhold("audio.wake.mic", {"owner": "waked", "seq": 1, "rate": 16000, "mono_ns": 1,
                                                 "pcm": b"\1" * 640})
    assert kept["pcm"] == b"" and withheld == {"pcm": 640} and kept["owner"] == "waked"
    assert CONTENT["audio.wake.mic"].resource == "mic" and RESOURCES == ("camera", "mic")
