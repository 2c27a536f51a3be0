"""The shell's crash checkpoint: data with a schema (never a pickle), checked like any message; and each bus's
state in a directory of its own."""

from __future__ import annotations

import json
import os
import pickle
import signal

import pytest

from bus.runtime import state_dir
from policies.loader import load
from shell import checkpoint
from shell.core import ShellCore
from shell.daemon import CHECKPOINT_FILE, PICKLED_CHECKPOINT
from tests.system import System, running

POLICY = load(model="s1")


def busy_core() -> ShellCore:
    core = ShellCore(POLICY, 0.0)
    for daemon in POLICY.system.boot.required:
        core.daemon_ready(daemon, 0.0)
    core.focus_request("assistantd", "camera", "transient", "assistant", "photo", 1.0, behalf="camera")
    core.focus_request("music", "audio_out", "exclusive", "background", "music", 1.0)
    core.led_report(True, None, 1.5)
    core.notices = []
    return core


def dumped(core: ShellCore) -> bytes:
    return checkpoint.dump(core.export(), boot_id="b", cmd=7, boot_s=0.5,
                           sessions={("assistantd", "camera"): {"session": "s1", "start": 1.5}},
                           published={"privacy.capture": {"grants": ["assistantd:camera"], "cmd": 7, "fault": None}})


def test_a_checkpoint_comes_back_as_it_was():
    core = busy_core()
    data = checkpoint.load(dumped(core), ShellCore(POLICY, 0.0).export())
    again = ShellCore(POLICY, 0.0)
    again.restore(data["core"])
    assert again.state == core.state and again.snapshot() == core.snapshot()
    assert again.privacy.behalf == {("assistantd", "camera"): "camera"}
    assert data["sessions"] == {("assistantd", "camera"): {"session": "s1", "start": 1.5}} and data["cmd"] == 7


def corrupt(path: list, value) -> bytes:
    top = json.loads(dumped(busy_core()))
    here = top
    for key in path[:-1]:
        here = here[key]
    here[path[-1]] = value
    return json.dumps(top).encode()


@pytest.mark.parametrize("data, why", [
    (pickle.dumps({"core": {}}), "not JSON"),
    (b"{", "not JSON"),
    (corrupt(["version"], 99), "version 99"),
    (corrupt(["core", "state"], "__import__"), "unknown state"),
    (corrupt(["core", "arbiter", "camera", 0, "priority"], "high"), "field 'priority' must be int"),
    (corrupt(["core", "arbiter", "camera", 0, "kind"], "forever"), "a 'forever' claim"),
    (corrupt(["core", "arbiter", "x-ray"], []), "'x-ray' is not a resource"),
    (corrupt(["core", "privacy", "granted", 0, "evil"], 1), "unknown field(s) evil"),
    (corrupt(["published", "privacy.capture", "grants"], "all"), "privacy.capture: field 'grants'"),
    (corrupt(["published", "no.such.topic"], {}), "no.such.topic"),
    (corrupt(["core", "last_seen", "music"], "now"), "not a time"),
    (corrupt(["sessions", 0, "start"], None), "missing required field 'start'"),
])
def test_a_corrupt_or_hostile_checkpoint_is_refused_saying_where(data, why):
    with pytest.raises(checkpoint.CheckpointError, match=__import__("re").escape(why)):
        checkpoint.load(data, ShellCore(POLICY, 0.0).export())


class Planted:
    """A pickle that, unpickled, leaves a mark: what a hostile checkpoint would do."""

    def __init__(self, mark: str):
        self.mark = mark

    def __reduce__(self):
        return (os.mkdir, (self.mark,))


@pytest.mark.slow
def test_the_shell_refuses_a_hostile_checkpoint_and_starts_fresh(procs, runtime, tmp_path):
    system = System(procs, runtime, tmp_path)
    app = system.app("camapp")
    system.watcher.wait_state(running, "boot")
    app.take_camera("video")
    procs.stop(system.shell, signal.SIGKILL)
    mark = tmp_path / "unpickled"
    (system.state_dir / PICKLED_CHECKPOINT).write_bytes(pickle.dumps(Planted(str(mark))))
    (system.state_dir / CHECKPOINT_FILE).write_bytes(corrupt(["core", "state"], "__import__"))
    system.shell = procs.start_ready("-m", "shell")
    state = app.wait_state(lambda s: s["focus"]["camera"]["owner"] is None and s["state"] != "booting",
                           "a fresh shell")
    assert not mark.exists(), "the pickle was unpickled"
    assert not (system.state_dir / PICKLED_CHECKPOINT).exists()
    logged = next(log for args, log in procs.logs if args == ("-m", "shell") and "refused" in log.read_text())
    assert "unknown state '__import__'" in logged.read_text()
    assert state["privacy"]["capture"] == []


def test_each_bus_has_a_state_directory_of_its_own(tmp_path, monkeypatch):
    for var in ("LENS_STATE_DIR", "STATE_DIRECTORY", "LENS_RUNTIME_DIR", "RUNTIME_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    default = state_dir()
    assert default == tmp_path / "state" / "lensos", "the default bus keeps where its state always was"
    first, second = state_dir(None, tmp_path / "bus-a"), state_dir(None, tmp_path / "bus-b")
    assert len({default, first, second}) == 3 and all(d.is_dir() for d in (first, second))
    monkeypatch.setenv("LENS_RUNTIME_DIR", str(tmp_path / "bus-a"))
    assert state_dir() == first, "a process and `lens privacy log` on the same bus agree"
    monkeypatch.setenv("LENS_STATE_DIR", str(tmp_path / "explicit"))
    assert state_dir() == tmp_path / "explicit"


@pytest.mark.slow
def test_a_checkpoint_of_another_boot_is_not_resumed(procs, runtime, tmp_path):
    """A power cut leaves the crash checkpoint behind (a clean stop removes it): the next boot's shell starts
    afresh, no capture granted nor LED lit for anyone. The boot is the unit's $LENS_BOOT_ID on a board, whose
    units cannot read /proc/sys (bus.runtime.boot_id); here, as another boot's."""
    system = System(procs, runtime, tmp_path)
    app = system.app("camapp")
    system.watcher.wait_state(running, "boot")
    app.take_camera("video")
    procs.stop(system.shell, signal.SIGKILL)
    assert (system.state_dir / CHECKPOINT_FILE).exists()
    system.shell = procs.start_ready("-m", "shell", env_extra={"LENS_BOOT_ID": "0" * 32})
    state = app.wait_state(lambda s: s["nodes"].get("shell", {}).get("pid") == system.shell.pid, "the new shell")
    assert state["focus"]["camera"]["owner"] is None and state["privacy"]["capture"] == []
