"""App lifecycle over the real bus: appd starts and stops app processes on the shell's word, `lens app
start|stop`, home in front when nobody else is, crashes restarted, hidden apps refused with why."""

from __future__ import annotations

import json
import shutil
import signal

import pytest

from apps.sdk.app import App, Refused
from bus import keys
from bus.errors import RequestTimeout
from shell.daemon import SAVED_FILE
from tests.conftest import DEADLINE_S, REPO
from tests.system import FAST, System

CRASHY = '''"""Exits with status 3 the first time it runs (it leaves a mark), stays up after that."""
import os, sys
from pathlib import Path
from apps.sdk.app import App

mark = Path(os.environ["CRASHY_MARK"])
if not mark.exists():
    mark.write_text("crashed once")
    sys.exit(3)
App("crashy").run()
'''
STAYS = '''"""Runs until stopped; its manifest says it does not run in the background."""
from apps.sdk.app import App

App("shy").run()
'''
DONE = '''"""Does its one thing and exits 0: finished, not crashed."""
from apps.sdk.app import App

app = App("oneshot")
app.node.start()
app.node.close()
'''


def manifest(app_id: str, display: bool = False, background: bool = True) -> str:
    return (f'[app]\nid = "{app_id}"\nname = "{app_id.title()}"\npermissions = []\n'
            f'background = {"true" if background else "false"}\nmodels = ["s1", "g1"]\n'
            f'display = {"true" if display else "false"}\n')


def apps_dir(tmp_path):
    directory = tmp_path / "apps"
    for app in ("home", "camera"):
        shutil.copytree(REPO / "apps" / app, directory / app, ignore=shutil.ignore_patterns("__pycache__"))
    for app, code, display in (("crashy", CRASHY, False), ("oneshot", DONE, False), ("viewer", DONE, True),
                               ("shy", STAYS, False)):
        (directory / app).mkdir()
        (directory / app / "manifest.toml").write_text(manifest(app, display, background=app != "shy"))
        (directory / app / "__main__.py").write_text(code)
    (directory / "broken").mkdir()
    (directory / "broken" / "manifest.toml").write_text(manifest("broken").replace("permissions = []",
                                                                                   'permissions = ["x-ray"]'))
    return directory


def start_system(procs, runtime, tmp_path, boot=("home",), model="s1"):
    procs.use_env(LENS_APPS_DIR=str(apps_dir(tmp_path)), LENS_MODEL=model,
                  CRASHY_MARK=str(tmp_path / "crashy.mark"))
    changes = {**FAST, "system.toml": {**FAST["system.toml"], "apps": {"boot": list(boot)}}}
    system = System(procs, runtime, tmp_path, changes)
    system.appd = procs.start_ready("-m", "apphost.appd")
    user = system.watcher
    for topic in ("shell.apps", "appd.state"):
        user.node.subscribe(topic, user._keep)
    return system, user


def app_state(user, app: str) -> str | None:
    return (user.latest.get("shell.apps") or {}).get("apps", {}).get(app, {}).get("state")


def lens_json(procs, *args) -> tuple[int, dict, str]:
    done = procs.run_lens(*args, "--json")
    return done.returncode, (json.loads(done.stdout) if done.stdout.strip() else {}), done.stderr


@pytest.mark.slow
def test_an_app_is_started_in_front_and_stopped_and_home_comes_back(procs, runtime, tmp_path):
    system, user = start_system(procs, runtime, tmp_path)
    user.wait_state(lambda s: s["foreground"] == "home", "home in front after boot")
    status, started, err = lens_json(procs, "app", "start", "camera")
    assert status == 0, err
    assert started["answer"] == "starting" and started["foreground"] and started["state"] == "running"
    pid = user.wait(lambda: (user.latest.get("appd.state") or {}).get("running", {}).get("camera"), "camera's pid")
    user.wait_state(lambda s: s["foreground"] == "camera" and s["focus"]["display"]["owner"] != "home",
                    "home backgrounded, its display given up")
    status, again, _ = lens_json(procs, "app", "start", "camera")  # already running: just brought forward
    assert status == 0 and again["answer"] == "foreground"
    assert user.latest["appd.state"]["running"]["camera"] == pid  # the same process, not a second one
    # Each app speaks with a key of its own (the broker stamps camera's messages as camera's), and only the
    # public half is a file: the secret went down a pipe, where no other app (the same user) can read it.
    beats = []
    user.node.subscribe("node.heartbeat", lambda m: m.source == "camera" and beats.append(m))
    assert user.wait(lambda: beats, "a heartbeat from camera")[0].sender == "camera"
    app_keys = keys.app_keys_dir(runtime)
    assert {"camera.key", "home.key"} <= {p.name for p in app_keys.iterdir()}
    assert not [p for p in app_keys.iterdir() if "secret" in p.name or b"secret-key" in p.read_bytes()]

    # An app that does not run in the background is stopped when another comes to the front.
    assert procs.run_lens("app", "start", "shy").returncode == 0
    assert procs.run_lens("app", "start", "camera").returncode == 0
    user.wait(lambda: app_state(user, "shy") == "stopped" and "shy" not in user.latest["appd.state"]["wanted"],
              "shy stopped once it went behind the camera")
    assert app_state(user, "camera") == "running"

    status, stopped, err = lens_json(procs, "app", "stop", "camera")
    assert status == 0, err
    assert stopped["answer"] == "stopping" and stopped["state"] == "stopped"
    user.wait_state(lambda s: s["foreground"] == "home", "home in front again")
    assert "camera" not in user.latest["appd.state"]["wanted"]
    user.wait(lambda: not (app_keys / "camera.key").exists(), "camera's key forgotten once it stopped")
    # Against a private bus directory (or without appd's capabilities) the apps share appd's user: said once
    # by appd, as information with what would change it, and shown by lens status as a fact, not an alarm.
    shown = procs.run_lens("status")
    assert "(sharing appd's user)" in shown.stdout and "NOT" not in shown.stdout, shown.stdout + shown.stderr
    assert json.loads(procs.run_lens("status", "--json").stdout)["appd.state"]["shared_user"]
    said = next(log for args, log in procs.logs if args[-1] == "apphost.appd").read_text()
    assert "WARNING" not in said and said.count("apps share appd's user here") == 1, said
    assert "On the board each app is a user of its own; to have that here, " in said, said
    status, listed, _ = lens_json(procs, "app", "list")
    rows = {r["id"]: r for r in listed["apps"]}
    assert rows["camera"]["state"] == "stopped" and rows["home"]["foreground"]
    assert rows["viewer"]["state"] == "stopped"


@pytest.mark.slow
def test_refusals_name_why_and_only_the_shell_drives_appd(procs, runtime, tmp_path, monkeypatch):
    system, user = start_system(procs, runtime, tmp_path)
    user.wait(lambda: app_state(user, "home") == "running", "home up")
    for args, why in ((("start", "nosuch"), "no app 'nosuch' (installed: camera, crashy, home, oneshot, shy, viewer)"),
                      (("dance", "camera"), "invalid choice: 'dance'"),
                      (("start", "broken"), "broken/manifest.toml:4: app.permissions: unknown 'x-ray'")):
        done = procs.run_lens("app", *args)
        assert done.returncode != 0 and why in done.stderr
    # An app, with a key of its own as appd gives each, asking for what is not its business.
    keys.generate(keys.app_keys_dir(runtime), ["crashy"])
    monkeypatch.setenv("LENS_KEY", str(keys.app_keys_dir(runtime) / "crashy.key_secret"))
    rogue = App("crashy", runtime, tmp_path / "apps")
    security = []
    rogue.node.subscribe("bus.security", lambda msg: security.append(msg.payload))
    rogue.node.start()
    try:
        with pytest.raises(Refused, match="crashy may stop only itself, not home"):
            rogue.ask("shell.app.request", app="home", action="stop")
        with pytest.raises(Refused, match="unknown action 'kill'"):
            rogue.ask("shell.app.request", app="home", action="kill")
        # The shell's word to appd is the shell's alone (its askers in the table): the broker drops and reports it.
        with pytest.raises(RequestTimeout):
            rogue.ask("appd.process.request", timeout=2.0, app="home", action="stop")
        rogue.wait(lambda: [r for r in security if r["topic"] == "appd.process.request"
                            and r["reason"] == "asked by shell only"], DEADLINE_S, "the broker's report")
    finally:
        rogue.node.close()
    assert app_state(user, "home") == "running" and "home" in user.latest["appd.state"]["running"]


@pytest.mark.fault
@pytest.mark.slow
def test_a_crashed_app_is_started_again_and_one_that_finished_stays_stopped(procs, runtime, tmp_path):
    system, user = start_system(procs, runtime, tmp_path, boot=("home", "crashy"))
    user.wait(lambda: any("crashy" in m.payload["failed"] for m in user.log if m.topic == "appd.state"),
              "appd seeing the crash")
    failed = next(m.payload["failed"]["crashy"] for m in user.log
                  if m.topic == "appd.state" and "crashy" in m.payload["failed"])
    assert failed.startswith("exited with status 3; starting again in")
    user.wait(lambda: app_state(user, "crashy") == "running", "crashy running after its restart")

    status, result, err = lens_json(procs, "app", "start", "oneshot")
    assert status == 0 and result["state"] in ("running", "stopped"), err  # in front a moment, or already done
    user.wait(lambda: app_state(user, "oneshot") == "stopped" and "oneshot" not in
              user.latest["appd.state"]["wanted"], "oneshot done and not started again")
    assert not user.latest["appd.state"]["failed"]


@pytest.mark.fault
@pytest.mark.slow
def test_a_restarted_appd_starts_again_what_its_predecessor_ran(procs, runtime, tmp_path):
    system, user = start_system(procs, runtime, tmp_path)
    assert procs.run_lens("app", "start", "camera").returncode == 0
    before = dict(user.wait(lambda: "camera" in (user.latest.get("appd.state") or {}).get("running", {})
                            and user.latest["appd.state"]["running"], "camera and home running"))
    procs.stop(system.appd, signal.SIGKILL)  # its apps die with it (PR_SET_PDEATHSIG)
    user.wait(lambda: app_state(user, "camera") != "running" and app_state(user, "home") != "running",
              "the apps gone with appd")
    system.appd = procs.start_ready("-m", "apphost.appd")
    running = lambda: user.latest["appd.state"]["running"]  # noqa: E731
    user.wait(lambda: all(running().get(app) not in (None, before[app]) for app in ("home", "camera")),
              "both started again, as new processes")
    user.wait(lambda: app_state(user, "camera") == "running", "camera on the bus again")


@pytest.mark.slow
def test_on_g1_an_app_that_needs_a_display_is_hidden_with_why_and_never_started(procs, runtime, tmp_path):
    system, user = start_system(procs, runtime, tmp_path, boot=("home", "viewer"), model="g1")
    user.wait(lambda: app_state(user, "home") == "running", "home up")
    why = user.latest["shell.apps"]["apps"]["viewer"]["why"]
    assert app_state(user, "viewer") == "hidden" and why == "Viewer needs a display and the G1 has none"
    assert "viewer" not in user.latest["appd.state"]["wanted"]
    done = procs.run_lens("app", "start", "viewer")
    assert done.returncode == 1 and "Viewer needs a display and the G1 has none" in done.stderr
    rows = {r["id"]: r for r in json.loads(procs.run_lens("app", "list", "--json").stdout)["apps"]}
    assert rows["viewer"]["state"] == "hidden" and rows["viewer"]["why"] == why
    assert rows["camera"]["state"] == "stopped"  # the camera works without a display: offered on G1


@pytest.mark.fault
@pytest.mark.slow
def test_after_a_critical_shutdown_the_app_that_was_in_front_is_started_and_in_front_again(procs, runtime,
                                                                                          tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    # What a critical shutdown saved (shell.daemon), with the camera in front; it is not in the boot list.
    (state_dir / SAVED_FILE).write_text(json.dumps({"foreground": "camera", "resume_state": "active"}))
    system, user = start_system(procs, runtime, tmp_path, boot=("home",))
    user.wait(lambda: app_state(user, "camera") == "running" and app_state(user, "home") == "running",
              "appd running the camera app, and home")
    user.wait_state(lambda s: s["running"] and s["foreground"] == "camera", "the camera app in front again")
    assert user.latest["shell.apps"]["foreground"] == "camera"
