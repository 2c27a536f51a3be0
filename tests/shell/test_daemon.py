"""The shell daemon over the real bus, with real ledd, powerd and camerad processes (simulated backends)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from shell.daemon import SAVED_FILE
from tests.conftest import DEADLINE_S
from tests.system import FAST, System, running

pytestmark = pytest.mark.slow


@pytest.fixture
def system(procs, runtime, tmp_path):
    return System(procs, runtime, tmp_path)


def test_boot_names_a_missing_daemon_and_runs_degraded(procs, runtime, tmp_path):
    changes = {**FAST, "system.toml": {"boot": {"required": ["ledd", "powerd", "ghostd"], "deadline_s": 1.0}}}
    system = System(procs, runtime, tmp_path, changes)
    state = system.watcher.wait_state(running, "the boot deadline")
    assert state["state"] == "active"
    assert state["degraded"] == ["ghostd"]
    assert {"ledd", "powerd"} <= set(state["ready"])
    assert state["boot_s"] >= 1.0


def test_capture_is_granted_only_after_the_led_confirms_and_is_audited(system):
    app = system.app("camapp")
    system.watcher.wait_state(running, "boot")
    assert app.ask("shell.foreground.request", app="camapp") == {"previous": None}
    reply = app.ask("shell.focus.request", resource="camera", kind="exclusive", cls="foreground", reason="photo")
    assert reply["status"] == "granted"
    granted = app.wait(lambda: app.notices("shell.capture.notice", owner="camapp", status="granted"),
                       "capture granted")[0]
    order = [m for m in app.log if m.topic in ("led.state", "shell.capture.notice")]
    cmd = app.latest["privacy.indicator"]["cmd"]
    lit_at = next(i for i, m in enumerate(order) if m.topic == "led.state" and m.payload["lit"]
                  and m.payload["cmd"] == cmd)
    granted_at = next(i for i, m in enumerate(order) if m.topic == "shell.capture.notice")
    assert lit_at < granted_at, "the grant went out before the LED confirmed"
    start = [r for r in system.audit if r["event"] == "start"]
    assert [(r["owner"], r["resource"], r["reason"], r["session"]) for r in start] == \
        [("camapp", "camera", "photo", granted["session"])]

    assert app.ask("shell.release.request", resource="camera") == {"held": True, "beat_s": None}  # own pace again
    app.wait(lambda: app.notices("shell.capture.notice", owner="camapp", status="revoked"), "capture ended")
    app.wait(lambda: app.latest["privacy.indicator"]["on"] is False, "LED off after the hold time")
    end = [r for r in system.audit if r["event"] == "end"]
    assert len(end) == 1 and end[0]["session"] == granted["session"] and end[0]["seconds"] >= 0


@pytest.mark.fault
def test_led_fault_mid_capture_stops_it_and_refuses_more_until_mended(system):
    app = system.app("camapp")
    system.watcher.wait_state(running, "boot")
    app.take_camera("video")

    assert app.ask("led.sim.request", fault="LED burnt out") == {"fault": "LED burnt out"}
    revoked = app.wait(lambda: app.notices("shell.capture.notice", status="revoked"), "capture revoked")[0]
    assert "burnt out" in revoked["reason"]
    app.wait(lambda: app.latest["privacy.capture"]["grants"] == [] and app.latest["privacy.capture"]["fault"],
             "grants withdrawn, fault published")
    end = [r for r in system.audit if r["event"] == "end"]
    assert len(end) == 1 and "burnt out" in end[0]["why"]
    state = app.wait_state(lambda s: s["privacy"]["fault"], "the fault in shell.state")
    assert "burnt out" in state["privacy"]["fault"]

    # While broken: refused, with the reason.
    app.ask("shell.release.request", resource="camera")
    app.ask("shell.focus.request", resource="mic", kind="exclusive", cls="foreground", reason="note")
    refused = app.wait(lambda: app.notices("shell.capture.notice", resource="mic", status="refused"), "refused")
    assert "not working" in refused[0]["reason"]

    # Mended, with nothing capturing: the LED goes out after its hold (issue 28, line 7: it stayed lit).
    app.ask("led.sim.request", fault=None)
    app.ask("shell.release.request", resource="mic")
    app.wait(lambda: app.latest["led.state"]["fault"] is None and not app.latest["led.state"]["lit"]
             and not app.latest["privacy.capture"]["grants"], "the LED out once mended, nothing capturing")
    # Mended: capture works again.
    app.ask("shell.focus.request", resource="mic", kind="exclusive", cls="foreground", reason="note")
    app.wait(lambda: app.notices("shell.capture.notice", resource="mic", status="granted"), "granted after mend")


@pytest.mark.fault
def test_a_killed_focus_owner_loses_focus_within_the_liveness_timeout(procs, runtime, tmp_path):
    system = System(procs, runtime, tmp_path, {**FAST, "focus.toml": {"liveness": {"heartbeat_timeout_s": 1.0}}})
    system.watcher.wait_state(running, "boot")
    script = ("import sys, time\nfrom bus.node import Node\n"
              "n = Node('nav', heartbeat=2.0)\nn.start()\n"  # the idle pace: asking for focus speeds it up
              "r = n.request('shell.focus.request', resource='audio_out', kind='exclusive', cls='background', "
              "reason='route')\nprint(r['status'], flush=True)\nn.run()\n")
    nav = procs.start("-c", script)
    assert nav.stdout.readline().strip() == "granted"
    system.watcher.wait_state(lambda s: s["focus"]["audio_out"]["owner"] == "nav", "nav holds audio_out")
    killed = time.monotonic()
    nav.send_signal(signal.SIGKILL)
    nav.wait(DEADLINE_S)
    system.watcher.wait_state(lambda s: s["focus"]["audio_out"]["owner"] is None, "nav's focus released")
    lost_after = time.monotonic() - killed
    lost = system.watcher.notices("shell.focus.notice", owner="nav", status="lost")
    assert lost and "silent" in lost[0]["reason"]
    # The deadline is the policy's 1 s after the last heartbeat; allow the machine's noise, not a missed timer.
    assert lost_after < 1.0 + 3.0, f"focus released {lost_after:.2f} s after SIGKILL"


def test_a_goodbye_from_the_process_a_new_one_replaced_takes_nothing_from_the_new_one(system):
    """appd killed: its apps stop with it (their goodbyes on the way out) and the new appd starts them again.
    Under load an old app's goodbye came after its successor had taken focus, and took the successor's."""
    nav = system.app("nav")
    system.watcher.wait_state(running, "boot")
    nav.ask("shell.focus.request", resource="audio_out", kind="exclusive", cls="background", reason="route")
    nav.wait_state(lambda s: s["focus"]["audio_out"]["owner"] == "nav", "nav holds audio_out")
    earlier = os.getpid() + 1  # the pid of the nav this one replaced
    nav.node.publish("node.bye", node="nav", pid=earlier)
    # Its next claim comes after the goodbye on the same lane, and the shell's word on it after its word on
    # the goodbye: the shell's state with the new kind means the goodbye was judged, and no loss came first.
    nav.ask("shell.focus.request", resource="audio_out", kind="transient", cls="background", reason="route again")
    state = nav.wait_state(lambda s: [c["kind"] for c in s["focus"]["audio_out"]["stack"]] == ["transient"]
                           and s, "the shell's word after the goodbye")
    assert "nav" in state["nodes"] and not nav.notices("shell.focus.notice", owner="nav", status="lost")
    nav.node.publish("node.bye", node="nav", pid=os.getpid())  # its own goodbye still lets go of everything
    nav.wait_state(lambda s: s["focus"]["audio_out"]["owner"] is None and "nav" not in s["nodes"],
                   "nav's focus released")


@pytest.mark.fault
def test_a_killed_process_with_its_own_key_loses_focus_as_soon_as_its_connection_closes(procs, runtime, tmp_path):
    from bus import keys

    system = System(procs, runtime, tmp_path, {**FAST, "focus.toml": {"liveness": {"heartbeat_timeout_s": 30.0}}})
    system.watcher.wait_state(running, "boot")
    keys.generate(keys.app_keys_dir(runtime), ["nav"])
    script = ("from bus.node import Node\nn = Node('nav', heartbeat=2.0)\nn.start()\n"
              "r = n.request('shell.focus.request', resource='audio_out', kind='exclusive', cls='background', "
              "reason='route')\nprint(r['status'], flush=True)\nn.run()\n")
    nav = procs.start("-c", script, env=procs.env(LENS_KEY=str(keys.app_keys_dir(runtime) / "nav.key_secret")))
    assert nav.stdout.readline().strip() == "granted"
    system.watcher.wait_state(lambda s: s["focus"]["audio_out"]["owner"] == "nav", "nav holds audio_out")
    nav.send_signal(signal.SIGKILL)
    nav.wait(DEADLINE_S)
    # A liveness timeout of 30 s: only the broker's word that nav's last connection closed explains a release.
    system.watcher.wait_state(lambda s: s["focus"]["audio_out"]["owner"] is None and "nav" not in s["nodes"],
                              "nav's focus released and nav gone", timeout=20.0)
    lost = system.watcher.notices("shell.focus.notice", owner="nav", status="lost")
    assert lost and "connection to the bus closed" in lost[0]["reason"]


def test_a_capturing_process_with_its_own_key_is_told_to_beat_fast_and_a_hang_ends_its_capture(procs, runtime,
                                                                                                  tmp_path):
    from bus import keys

    system = System(procs, runtime, tmp_path)  # the policy's liveness: 5 s
    system.watcher.wait_state(running, "boot")
    keys.generate(keys.app_keys_dir(runtime), ["translate"])
    system.declare("translate", "mic")  # as its manifest does: tests/checked.py judges the capture by it
    # An app of the shell's (its manifest declares the mic): an identity without one gets no capture (issue 27).
    # It beats every 30 s of its own accord: three of those would leave a hung capturer 90 s with the mic.
    script = ("from bus.node import Node\nn = Node('translate', heartbeat=30.0)\nn.start()\n"
              "n.request('shell.foreground.request', app='translate')\n"
              "r = n.request('shell.focus.request', resource='mic', kind='exclusive', cls='foreground', "
              "reason='listen')\nprint(r['status'], r['beat_s'], n.heartbeat, flush=True)\n"
              "n.request('shell.release.request', resource='mic')\nprint(n.heartbeat, flush=True)\n"
              "n.request('shell.focus.request', resource='mic', kind='exclusive', cls='foreground', reason='again')\n"
              "print(n.heartbeat, flush=True)\nn.run()\n")
    eye = procs.start("-c", script, env=procs.env(LENS_KEY=str(keys.app_keys_dir(runtime) / "translate.key_secret")))
    status, told, pace = eye.stdout.readline().split()
    timeout = FAST["focus.toml"]["liveness"]["heartbeat_timeout_s"]
    assert status == "granted" and float(told) == float(pace) == pytest.approx(timeout / 3)
    assert float(eye.stdout.readline()) == 30.0, "released: back to its own pace"
    assert float(eye.stdout.readline()) == pytest.approx(timeout / 3)
    system.watcher.wait(lambda: system.watcher.notices("shell.capture.notice", owner="translate", status="granted"),
                        "the mic granted, the LED lit")
    eye.send_signal(signal.SIGSTOP)  # hung: its connections stay open, so only its silence can tell
    try:
        system.watcher.wait(lambda: system.watcher.notices("shell.focus.notice", owner="translate", status="lost"),
                            "the hung capturer's mic taken back", timeout=30.0)
        lost = system.watcher.notices("shell.focus.notice", owner="translate", status="lost")[0]
        assert "silent" in lost["reason"]
        system.watcher.wait(lambda: system.watcher.notices("shell.capture.notice", owner="translate", status="revoked")
                            or not system.watcher.latest["privacy.capture"]["mic"], "capture stopped")
    finally:
        eye.kill()


@pytest.mark.fault
def test_a_hung_daemon_is_reported_silent_listed_still_and_clear_once_it_beats_again(system, procs):
    """Issue 28, line 9: a SIGSTOPped daemon was listed as ready and alive under its old pid until its
    watchdog acted, and the shell never said it was degraded."""
    user, ledd = system.watcher, system.ledd
    user.wait_state(lambda s: s["running"] and s["nodes"].get("ledd", {}).get("pid") == ledd.pid, "ledd listed")
    ledd.send_signal(signal.SIGSTOP)  # hung: its connections stay open, so only its silence can tell
    try:
        state = user.wait_state(lambda s: "ledd" in (s.get("silent") or {}), "ledd reported silent", timeout=60)
        assert state["silent"]["ledd"]["pid"] == ledd.pid and "ledd" in state["degraded"]
        assert state["nodes"]["ledd"]["pid"] == ledd.pid, "listed still: a hang is not a departure"
        status = procs.run_lens("status")
        assert status.returncode == 0, status.stderr
        assert f"silent     ledd[{ledd.pid}] no heartbeat for" in status.stdout, status.stdout
        assert "degraded: ledd silent" in status.stdout
        ready = next(line for line in status.stdout.splitlines() if line.startswith("ready"))
        alive = next(line for line in status.stdout.splitlines() if line.startswith("alive"))
        assert "ledd" not in ready and "ledd" not in alive, status.stdout
    finally:
        ledd.send_signal(signal.SIGCONT)
    user.wait_state(lambda s: not s.get("silent") and "ledd" in s["nodes"] and s["degraded"] == [],
                    "ledd beating again, the shell no longer degraded", timeout=60)
    shell_log = next(log for args, log in procs.logs if args == ("-m", "shell")).read_text()
    assert f"ledd (pid {ledd.pid}) is silent: no heartbeat for" in shell_log


@pytest.mark.fault
def test_a_battery_swap_dims_holds_recording_and_restores_everything(system):
    app = system.app("camapp")
    system.watcher.wait_state(running, "boot")
    app.ask("shell.foreground.request", app="camapp")
    app.ask("shell.focus.request", resource="display", kind="exclusive", cls="foreground", reason="viewfinder")
    before = app.wait_state(lambda s: s["focus"]["display"]["owner"] == "camapp", "display held")

    assert app.ask("power.sim.request", action="pull", battery="left") == {"present": [False, True]}
    swap = app.wait_state(lambda s: s["state"] == "battery_swap", "battery_swap")
    assert swap["recording_allowed"] is False and swap["remote_calls"] is False
    assert swap["brightness"] == pytest.approx(0.2)
    assert swap["power"] == {"present": [False, True]}  # which are in; the figures are powerd's (power.state)
    power = app.wait(lambda: (p := app.latest.get("power.state")) and p["present"] == [False, True] and p, "pulled")
    assert power["bridge"]["time_s"] > 0
    removed = app.wait(lambda: app.notices("power.event", event="removed"), "removed event")
    assert removed[0]["battery"] == "left"

    app.ask("power.sim.request", action="insert", battery="left")
    after = app.wait_state(lambda s: s["state"] == before["state"], "back to the state before the swap")
    assert after["foreground"] == "camapp" and after["focus"]["display"]["owner"] == "camapp"
    assert after["recording_allowed"] is True and after["brightness"] == before["brightness"]


@pytest.mark.fault
def test_bridge_running_out_saves_state_and_the_next_boot_restores_the_foreground(system):
    app = system.app("maps")
    system.watcher.wait_state(running, "boot")
    app.ask("shell.foreground.request", app="maps")
    app.ask("power.sim.request", action="pull", battery="right")
    app.wait_state(lambda s: s["state"] == "battery_swap", "battery_swap")
    app.ask("power.sim.request", action="charge", battery="bridge", percent=0.5)
    app.wait_state(lambda s: s["state"] == "shutdown", "orderly shutdown")
    saved = json.loads((system.state_dir / SAVED_FILE).read_text())
    assert saved["foreground"] == "maps"
    assert (system.state_dir / SAVED_FILE).stat().st_mode & 0o077 == 0

    app.ask("power.sim.request", action="insert", battery="right")
    app.ask("power.sim.request", action="charge", battery="bridge", percent=100.0)
    system.restart_shell(signal.SIGTERM)  # the next boot
    system.watcher.wait_state(lambda s: s["state"] == "booting" or s["running"], "the new shell")
    state = system.watcher.wait_state(lambda s: s["running"] and s["foreground"] == "maps", "foreground restored")
    assert state["state"] == "active"
    assert not (system.state_dir / SAVED_FILE).exists(), "a saved state is used once"


@pytest.mark.fault
def test_a_crashed_shell_resumes_with_the_same_focus_and_led_command(system):
    app = system.app("camapp")
    system.watcher.wait_state(running, "boot")
    app.take_camera("video")
    grants_before = app.latest["privacy.capture"]
    pid_before = system.shell.pid

    system.restart_shell(signal.SIGKILL)
    state = app.wait_state(lambda s: s["nodes"].get("shell", {}).get("pid") not in (None, pid_before),
                           "the restarted shell's state")
    assert state["foreground"] == "camapp"
    assert state["focus"]["camera"]["owner"] == "camapp"
    assert state["privacy"]["capture"] == ["camapp:camera"]
    assert app.latest["privacy.capture"]["cmd"] == grants_before["cmd"]
    assert not app.notices("shell.capture.notice", status="revoked"), "a shell crash must not end a capture"


def test_a_shell_resumed_from_an_old_checkpoint_does_not_blame_its_own_absence_on_the_app_in_front(system):
    """The checkpoint is written when the shell's state changes, not on every beat, so on glasses left alone it
    holds beat times from minutes before the crash: a resumed shell took them for the owners' silence, and the
    app in front lost the display and the front to home (a board's kill -9 check, issue 28 line 6)."""
    app = system.app("camapp")
    system.watcher.wait_state(running, "boot")
    app.ask("shell.foreground.request", app="camapp")
    app.ask("shell.focus.request", resource="display", kind="exclusive", cls="foreground", reason="viewfinder")
    app.wait_state(lambda s: s["focus"]["display"]["owner"] == "camapp", "display held")
    pid_before = system.shell.pid
    system.procs.stop(system.shell, signal.SIGKILL)
    path = system.state_dir / "shell-checkpoint.json"
    data = json.loads(path.read_text())
    # As the checkpoint of a shell whose state last changed ten minutes before its crash
    data["core"]["last_seen"] = {name: seen - 600.0 for name, seen in data["core"]["last_seen"].items()}
    assert "camapp" in data["core"]["last_seen"]
    path.write_text(json.dumps(data))
    system.shell = system.procs.start_ready("-m", "shell")
    state = app.wait_state(lambda s: s["nodes"].get("shell", {}).get("pid") not in (None, pid_before),
                           "the restarted shell's state")
    assert state["foreground"] == "camapp" and state["focus"]["display"]["owner"] == "camapp"
    assert not app.notices("shell.focus.notice", owner="camapp", status="lost")


def test_lens_status_and_privacy_log(system, procs):
    app = system.app("camapp")
    system.watcher.wait_state(running, "boot")
    app.ask("shell.focus.request", resource="mic", kind="exclusive", cls="background", reason="dictation")
    app.wait(lambda: app.notices("shell.capture.notice", status="granted"), "mic granted")

    done = procs.run_lens("status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["shell.state"]["focus"]["mic"]["owner"] == "camapp"
    assert "dictation" not in json.dumps(status["shell.state"]), "an app's reason is in what every app reads"
    assert status["led.state"]["lit"] is True
    text = procs.run_lens("status")
    assert text.returncode == 0 and "camapp (background, exclusive)" in text.stdout and "left 100%" in text.stdout

    app.ask("shell.release.request", resource="mic")
    app.wait(lambda: app.notices("shell.capture.notice", status="revoked"), "mic released")
    # audiod's count of the session (a stand-in with its name): 401 blocks of 20 ms.
    session = app.notices("shell.capture.notice", status="granted")[0]["session"]
    audiod = system.app("audiod")
    audiod.node.publish("audio.session", owner="camapp", session=session, blocks=401, seconds=8.02)
    log = app.wait(lambda: (done := procs.run_lens("privacy", "log", "--json")).returncode == 0
                   and '"audio_s": 8.02' in done.stdout and done, "audiod's count in the log")
    sessions = [json.loads(line) for line in log.stdout.splitlines()]
    assert [(s["owner"], s["resource"], s["reason"]) for s in sessions] == [("camapp", "mic", "dictation")]
    assert sessions[0]["end"] is not None and sessions[0]["why_ended"] == "released"
    assert sessions[0]["blocks"] == 401
    text = procs.run_lens("privacy", "log")
    row = text.stdout.splitlines()[1]
    assert "camapp" in row and "8.0 s audio" in row, text.stdout  # it said FRAMES 0 for a mic


def test_lens_status_without_a_shell_says_so(procs, broker):
    done = procs.run_lens("status")
    assert done.returncode == 2 and "is the shell running" in done.stderr


def test_lens_power_pull_and_insert(system, procs):
    system.watcher.wait_state(running, "boot")
    pulled = procs.run_lens("power", "pull", "right", "--json")
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout) == {"present": [True, False]}
    system.watcher.wait_state(lambda s: s["state"] == "battery_swap", "battery_swap")
    inserted = procs.run_lens("power", "insert", "right")
    assert inserted.returncode == 0 and inserted.stdout.strip() == "left in, right in"
    system.watcher.wait_state(lambda s: s["state"] == "active", "active again")
    bad = procs.run_lens("power", "charge", "middle", "50")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_no_identity_without_a_manifest_gets_the_camera_or_mic_but_the_wearers_own(procs, runtime, tmp_path):
    """Issue 27, line 9: a bridge peer's identity, or any key nobody made an app, was granted the camera by
    the shell as if it were a system process (the bridge's in-list was all that stood in the way)."""
    from bus import keys
    from bus.node import Node
    from tests.system import App

    system = System(procs, runtime, tmp_path, checked=False)
    system.watcher.wait_state(running, "boot")
    system.watcher.node.subscribe("app.permission.denied", system.watcher._keep)
    keys.generate(keys.keys_dir(runtime), ["bridge", "assistantd"])
    keys.generate(keys.app_keys_dir(runtime), ["stranger"])
    for name, where in (("bridge", keys.keys_dir(runtime)), ("stranger", keys.app_keys_dir(runtime))):
        asker = App(Node(name, runtime, key=where / f"{name}.key_secret"))
        system.apps.append(asker)
        for resource in ("camera", "mic"):
            reply = asker.ask("shell.focus.request", resource=resource, kind="transient", cls="background",
                              reason="a peer's")
            assert reply["status"] == "denied" and "neither an app" in reply["reason"], (name, reply)
        denied = system.watcher.wait(lambda: system.watcher.notices("app.permission.denied", app=name),
                                     f"{name}'s refusal reported")
        assert denied[0]["permission"] in ("camera", "mic")
        assert asker.ask("shell.focus.request", resource="display", kind="transient", cls="background",
                         reason="a card")["status"] != "denied", "only capture needs a manifest"
    assert not system.watcher.latest["privacy.capture"]["grants"], "nothing captured"
    # The process that captures for the wearer (its row's captures column) still may.
    wearer = App(Node("assistantd", runtime, key=keys.keys_dir(runtime) / "assistantd.key_secret"))
    system.apps.append(wearer)
    assert wearer.ask("shell.focus.request", resource="mic", kind="transient", cls="assistant",
                      reason="the wearer asked")["status"] == "granted"


@pytest.mark.fault
def test_messages_a_process_lost_are_counted_in_the_shells_state_and_shown_by_lens_status(system, procs):
    """Issue 28, line 8: a process's node.lost (bus.outbox) is its own word about itself; the shell counts it,
    and `lens status` shows it. One said for another is ignored."""
    nav, other = system.app("nav"), system.app("music")
    system.watcher.wait_state(running, "boot")
    nav.node.publish("node.lost", node="nav", messages=7, why="the outbox was full")
    other.node.publish("node.lost", node="nav", messages=1000, why="said for another")
    nav.node.publish("node.lost", node="nav", messages=2, why="held past 60 s")
    state = nav.wait_state(lambda s: (s.get("lost") or {}).get("nav") == 9 and s, "the loss counted")
    assert state["lost"] == {"nav": 9}
    text = procs.run_lens("status")
    assert text.returncode == 0 and "lost       nav 9 messages" in text.stdout, text.stdout
