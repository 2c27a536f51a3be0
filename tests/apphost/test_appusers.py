"""Each app a user of its own: what an app must not reach (appd's key and process, privileges), what it
still must (the bus, the camera's ring door), and how appd picks the users."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from bus.runtime import Runtime
from apphost.appusers import AppUsers
from tests.system import FAST, System

BUS_GID = 60599  # the board's lensos group; any group but root's will do
FIRST_UID, UIDS = 60600, 500

# Every check sets a bit of the exit status, so a failure says which one went wrong.
PEEK = '''"""Tries what an app must not do, then does what it must: exit 0 when all holds, 64 + bits when not."""
import os, sys
from pathlib import Path
from apps.sdk.app import App

def allowed(attempt):
    try:
        attempt()
    except PermissionError:
        return False
    return True

wrong = 0
wrong |= allowed(lambda: Path(os.environ["PEEK_KEY"]).read_bytes()) << 0  # appd's credential
# Its parent, the apps' zygote, and the zygote's, appd
parents = [os.getppid(), int(Path(f"/proc/{os.getppid()}/stat").read_text().rsplit(")", 1)[1].split()[1])]
for parent in parents:
    wrong |= allowed(lambda: Path(f"/proc/{parent}/environ").read_bytes()) << 1  # appd's environment
    wrong |= allowed(lambda: os.kill(parent, 0)) << 2  # a signal to appd
status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
kept = any(int(status[cap], 16) for cap in ("CapEff", "CapPrm", "CapAmb"))
wrong |= (kept or status["NoNewPrivs"].strip() != "1") << 3
app = App("peek")
app.node.start()
import zmq
wrong |= (app.node._lanes["reliable"].sub.getsockopt(zmq.MECHANISM) != zmq.PLAIN) << 4  # its pass, as on the board
try:
    app.come_forward()
    app.open_camera("a look through the ring door")
    with app.next_frame(timeout=20) as pixels:
        assert pixels.shape[2] == 3
    app.close_camera()
finally:
    app.node.close()
sys.exit(64 + wrong if wrong else 0)
'''
MANIFEST = ('[app]\nid = "peek"\nname = "Peek"\npermissions = ["camera"]\nbackground = true\n'
            'models = ["s1", "g1"]\ndisplay = true\n')
FAILURES = ("read appd's key", "read appd's environment", "signalled appd", "kept a privilege",
            "entered the lanes sealed, not with its pass")


def shared_dir(prefix: str, mode: int) -> Path:
    """Under /tmp, outside pytest's 0700 tree (another user must get in), with the bus group."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chown(path, 0, BUS_GID)
    os.chmod(path, mode)
    return path


@pytest.fixture
def runtime():
    if os.geteuid() != 0:
        pytest.skip("starting apps as users of their own takes root (or CAP_SETUID, CAP_SETGID, CAP_KILL)")
    path = shared_dir("lu-", 0o3770)  # as the board's RuntimeDirectoryMode: setgid, the bus group's, sticky
    yield Runtime.resolve(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_an_app_runs_as_its_own_user_and_reaches_the_bus_and_camera_but_not_appd(procs, runtime, tmp_path):
    apps = shared_dir("la-", 0o755)
    procs.cleanups.append(lambda: shutil.rmtree(apps, ignore_errors=True))
    (apps / "peek").mkdir()
    (apps / "peek" / "manifest.toml").write_text(MANIFEST)
    (apps / "peek" / "__main__.py").write_text(PEEK)
    # What systemd's LoadCredential= gives appd on the board: its key, readable by appd's user alone.
    credentials = shared_dir("lc-", 0o755)
    procs.cleanups.append(lambda: shutil.rmtree(credentials, ignore_errors=True))
    (credentials / "lensos.key").write_text("appd's secret")
    os.chmod(credentials / "lensos.key", 0o400)
    procs.use_env(LENS_APPS_DIR=str(apps), PEEK_KEY=str(credentials / "lensos.key"))
    system = System(procs, runtime, tmp_path, {**FAST, "system.toml": {**FAST["system.toml"],
                                                                       "apps": {"boot": ["peek"]}}})
    user = system.watcher
    hosts, byes = [], []
    user.node.subscribe("appd.state", lambda m: hosts.append(m.payload))
    user.node.subscribe("node.bye", lambda m: m.source == "peek" and byes.append(m))
    procs.start_ready("-m", "apphost.appd")

    host = user.wait(lambda: next((h for h in hosts if "peek" in h["running"]), None),
                     "peek started as a user of its own")
    uid, pid = host["users"]["peek"], host["running"]["peek"]
    assert FIRST_UID <= uid < FIRST_UID + UIDS
    assert all(h["shared_user"] is None for h in hosts), hosts[-1]["shared_user"]
    try:
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        assert status["Uid"].split() == [str(uid)] * 4 and status["Gid"].split() == [str(uid)] * 4
        assert status["Groups"].split() == [str(BUS_GID)]
        # Forked by the zygote, which has appd's capabilities: none left, none to gain (as after an exec)
        assert {status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapAmb")} == {"0" * 16}, status
        assert status["NoNewPrivs"].strip() == "1"
    except FileNotFoundError:
        pass  # it finished already: the checks it made itself, below, still say everything
    # Through the bus and the camera's door as that user: the broker knows its key, the LED was lit,
    # frames came, and it gave the camera back.
    session = user.wait(lambda: user.notices("camera.session", owner="peek"), "peek's preview session", 30)[0]
    assert session["frames"] >= 1
    assert user.wait(lambda: byes, "peek's goodbye")[0].sender == "peek"  # stamped by the broker: its own key
    done = user.wait(lambda: next((h for h in hosts if "peek" not in h["running"] and "peek" not in h["wanted"]
                                   or "peek" in h["failed"]), None), "peek done", 30)
    failed = done["failed"].get("peek", "")
    status_code = int(failed.split("status ")[1].split(";")[0]) if "status " in failed else 0
    assert not failed, [what for bit, what in enumerate(FAILURES) if status_code >= 64 and status_code >> bit & 1] \
        or failed
    assert "peek" not in done["users"]  # its user free again
    status = procs.run_lens("status")
    assert status.returncode == 0 and "(each a user of its own)" in status.stdout, status.stdout + status.stderr


def test_users_are_stable_per_app_distinct_while_running_and_run_out_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr("apphost.appusers.effective_capabilities", lambda: 1 << 5 | 1 << 6 | 1 << 7)
    bus = tmp_path / "bus"
    bus.mkdir()
    os.chmod(bus, 0o2770)
    os.chown(bus, os.getuid(), BUS_GID) if os.geteuid() == 0 else pytest.skip("chown to the bus group takes root")
    users = AppUsers(FIRST_UID, 3, bus)
    assert users.isolated and users.identity(None) == {"uid": None, "gid": None, "groups": []}
    camera = users.take("camera")
    assert users.identity(camera) == {"uid": camera, "gid": camera, "groups": [BUS_GID]}
    users.release("camera")
    assert users.take("camera") == camera, "the same app, the same user: its files stay its own"
    others = {users.take("home"), users.take("music")}
    assert len({camera, *others}) == 3 and all(FIRST_UID <= u < FIRST_UID + 3 for u in others)
    with pytest.raises(RuntimeError, match="all 3 app users are taken; widen system.toml"):
        users.take("lens")


def test_apps_share_appds_user_and_say_why_without_the_capabilities_or_a_shared_bus(tmp_path, monkeypatch):
    bus = tmp_path / "bus"
    bus.mkdir()
    os.chmod(bus, 0o700)
    monkeypatch.setattr("apphost.appusers.effective_capabilities", lambda: 1 << 5)  # CAP_KILL alone
    users = AppUsers(FIRST_UID, UIDS, bus)
    assert not users.isolated and users.take("camera") is None
    assert "appd lacks CAP_SETGID, CAP_SETUID" in users.shared_because and "as root" in users.remedy
    monkeypatch.setattr("apphost.appusers.effective_capabilities", lambda: 1 << 5 | 1 << 6 | 1 << 7)
    users = AppUsers(FIRST_UID, UIDS, bus)
    assert not users.isolated and "is not shared with a group of its own (mode 700" in users.shared_because
    assert f"chmod 3770 {bus}" in users.remedy
