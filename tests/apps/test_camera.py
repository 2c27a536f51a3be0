"""Apps over the real bus: the manifest's permissions enforced by the shell, and the camera app driven by
the capture button."""

from __future__ import annotations

import json
import shutil

import pytest

from apps.sdk.app import App, Refused
from apps.sdk.manifest import ManifestError, load_all, read
from daemons.camera.recorder import recover, unfinished
from bus.audit import AuditLog
from tests.conftest import REPO
from tests.fulldisk import empty_files, small_disk
from tests.system import FAST, System, running

NO_CAMERA = """[app]
id = "notes"
name = "Notes"
permissions = ["notifications"]
background = false
models = ["s1", "g1"]
display = true
"""


def apps_dir(tmp_path):
    directory = tmp_path / "apps"
    shutil.copytree(REPO / "apps" / "camera", directory / "camera", ignore=shutil.ignore_patterns("__pycache__"))
    (directory / "notes").mkdir()
    (directory / "notes" / "manifest.toml").write_text(NO_CAMERA)
    return directory


def test_a_wrong_manifest_names_its_line_and_the_others_still_load(tmp_path):
    directory = apps_dir(tmp_path)
    (directory / "bad").mkdir()
    (directory / "bad" / "manifest.toml").write_text(NO_CAMERA.replace('"notes"', '"bad"')
                                                     .replace('["notifications"]', '["x-ray"]'))
    manifests, errors = load_all(directory)
    assert set(manifests) == {"camera", "notes"}
    assert len(errors) == 1 and "bad/manifest.toml:4: app.permissions: unknown 'x-ray'" in errors[0]
    with pytest.raises(ManifestError, match="must be the directory's name"):
        (directory / "notes" / "manifest.toml").write_text(NO_CAMERA.replace('"notes"', '"other"'))
        read(directory / "notes" / "manifest.toml")
    # The id is the app's identity on the bus: never a system process's, never the developer's.
    for reserved in ("shell", "developer"):
        (directory / reserved).mkdir()
        (directory / reserved / "manifest.toml").write_text(NO_CAMERA.replace('"notes"', f'"{reserved}"'))
        with pytest.raises(ManifestError, match=rf"{reserved}/manifest.toml:1: app.id: '{reserved}' is not an app's"):
            read(directory / reserved / "manifest.toml")


@pytest.mark.slow
def test_an_app_that_did_not_declare_the_camera_is_refused_and_told(procs, runtime, tmp_path):
    apps = apps_dir(tmp_path)
    procs.use_env(LENS_APPS_DIR=str(apps))
    system = System(procs, runtime, tmp_path)
    system.watcher.wait_state(running, "boot")
    denied = []

    class Notes(App):
        def on_permission_denied(self, event):
            denied.append(event)
    notes = Notes("notes", runtime, apps)
    notes.node.start()
    try:
        notes.come_forward()
        with pytest.raises(Refused, match="notes's manifest does not declare the camera permission"):
            notes.focus("camera")
        notes.wait(lambda: denied, 20, "the permission-denied event")
        assert denied[0]["permission"] == "camera" and denied[0]["call"] == "shell.focus.request"
        with pytest.raises(Refused, match="has not granted notes camera capture"):
            notes.ask("camera.control.request", mode="photo")  # straight to camerad: no grant, no photo
    finally:
        notes.node.close()
    assert not system.watcher.notices("shell.capture.notice", owner="notes")


def with_boot_apps(*apps: str) -> dict:
    return {**FAST, "system.toml": {**FAST["system.toml"], "apps": {"boot": list(apps)}}}


def camera_running(procs, runtime, tmp_path, changes: dict):
    """The glasses with the camera app started at boot (in the background), and a watcher of what they say."""
    system = System(procs, runtime, tmp_path, changes)
    procs.start_ready("-m", "daemons.input")
    procs.start_ready("-m", "daemons.display")
    procs.start_ready("-m", "apphost.appd")
    user = system.watcher
    user.node.subscribe("display.state", user._keep)
    user.node.subscribe("shell.apps", user._keep)
    user.wait(lambda: (user.latest.get("shell.apps") or {}).get("apps", {}).get("camera", {}).get("state")
              == "running", "appd starting the camera app at boot")
    return system, user


@pytest.mark.slow
def test_the_camera_app_takes_a_photo_on_a_press_records_while_held_and_saves_when_stopped(procs, runtime,
                                                                                          tmp_path):
    system, user = camera_running(procs, runtime, tmp_path, with_boot_apps("camera"))
    assert user.latest["shell.state"]["foreground"] is None  # started at boot, it stays in the background
    # The capture button works from anywhere: the press brings the camera forward and takes the photo.
    user.ask("input.sim.request", gesture="button")
    photo = user.wait(lambda: user.notices("camera.session", owner="camera"), "a photo")[0]
    assert photo["frames"] == 1
    user.wait_state(lambda s: s["foreground"] == "camera" and s["focus"]["display"]["owner"] == "camera",
                    "the camera app in front")
    listed = procs.run_lens("app", "list", "--json")
    camera = next(a for a in json.loads(listed.stdout)["apps"] if a["id"] == "camera")
    assert camera["state"] == "running" and camera["foreground"] and camera["permissions"] == ["camera"]
    user.ask("input.sim.request", gesture="button_long")
    user.wait(lambda: user.latest.get("camera.state", {}).get("mode") == "video"
              and user.latest["camera.state"]["owner"] == "camera", "recording")
    user.wait(lambda: len(user.notices("camera.frame", owner="camera")) >= 5, "frames recorded")
    user.ask("input.sim.request", gesture="button_long")
    segment = user.wait(lambda: user.notices("camera.segment", owner="camera"), "the video saved")[0]
    assert segment["frames"] >= 5
    user.wait(lambda: not user.latest["shell.state"]["focus"]["camera"]["owner"], "the camera given back")

    # Stopped while recording: the app closes its video before it goes, and gives everything back.
    user.ask("input.sim.request", gesture="button_long")
    user.wait(lambda: user.latest.get("camera.state", {}).get("mode") == "video", "recording again")
    stopped = procs.run_lens("app", "stop", "camera", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["state"] == "stopped"
    second = user.wait(lambda: user.notices("camera.segment", owner="camera")[1:], "the second video saved")[0]
    assert second["frames"] >= 1
    user.wait_state(lambda s: s["focus"]["camera"]["owner"] is None and s["focus"]["display"]["owner"] is None
                    and s["foreground"] is None, "all the camera app held given back")
    assert not procs.run_lens("app", "list", "--json").returncode
    # Given back before it exits (it releases, then says goodbye): stopped once appd has reaped it.
    user.wait(lambda: user.latest["shell.apps"]["apps"]["camera"]["state"] == "stopped", "the camera app stopped")


@pytest.mark.fault
@pytest.mark.slow
def test_a_full_disk_stops_the_recording_cleanly_and_the_wearer_the_shell_and_the_log_are_told(procs, runtime,
                                                                                              tmp_path):
    with small_disk("1m") as media:
        changes = with_boot_apps("camera")
        changes["hardware.toml"] = {**changes["hardware.toml"], "camera": {"media_dir": str(media)}}
        system, user = camera_running(procs, runtime, tmp_path, changes)
        user.ask("input.sim.request", gesture="button")
        user.wait(lambda: user.notices("camera.session", owner="camera"), "a photo")
        photo = next((media / "photos").iterdir())
        photo_bytes = photo.read_bytes()

        user.wait_state(lambda s: s["foreground"] == "camera", "the camera app in front")
        user.wait(lambda: any(m.topic == "display.state" and "toast" in m.payload["layers"] for m in user.log)
                  and "toast" not in user.latest["display.state"]["layers"], "the photo's toast come and gone")
        mark = len(user.log)
        user.ask("input.sim.request", gesture="button_long")
        stopped = user.wait(lambda: next((s for s in user.notices("camera.session", owner="camera")
                                          if s["why"]), None), "the recording stopped by the full disk")
        assert "the disk is full" in stopped["why"] and stopped["frames"] >= 1
        user.wait_state(lambda s: s["focus"]["camera"]["owner"] is None and not s["privacy"]["capture"],
                        "the camera given back")
        user.wait(lambda: any(m.topic == "display.state" and "toast" in m.payload["layers"] for m in user.log[mark:]),
                  "the wearer told (a toast)")
        # and by the system itself, whatever the app says (issue 28, line 1): the HUD's notice, for a while
        user.wait(lambda: any(m.topic == "display.state" and (m.payload.get("notice") or "").startswith(
            "Camera stopped: the disk is full") for m in user.log[mark:]), "the wearer told (the HUD)")
        user.wait(lambda: user.latest["privacy.indicator"]["on"] is False, "the LED out after its hold")
        session = user.wait(lambda: [s for s in AuditLog(system.state_dir / "privacy-audit.jsonl").sessions()
                                     if s["end"] and s["frames"] > 1], "the audit record closed with its frames")[0]
        assert "the disk is full" in session["why_ended"]

        recording = next((media / "recordings").iterdir())
        found = recover(recording)
        assert found.torn == 0 and found.frames and not unfinished(media / "recordings")
        assert stopped["frames"] == len(found.frames), "the session counts a frame the full disk did not keep"
        assert photo.read_bytes() == photo_bytes, "an earlier file was touched"
        assert not empty_files(media) and not list(media.rglob("*.part"))

        # A photo on the full disk: refused with why, no file left behind.
        photos = sorted((media / "photos").iterdir())

        def said() -> int:  # the ERRORs: the recording's stop repeats its why at INFO, as every stop does
            return sum("ERROR" in line and "disk is full" in line for line in camerad_log(procs))
        assert said() == 1, "the recording's full disk said once"
        user.ask("input.sim.request", gesture="button")
        user.wait(lambda: said() >= 2, "the photo refused")
        assert sorted((media / "photos").iterdir()) == photos and not empty_files(media)
        assert said() == 2, "said once per capture, no more"


def camerad_log(procs) -> list[str]:
    path = next(log for args, log in procs.logs if args == ("-m", "daemons.camera"))
    return path.read_text().splitlines()
