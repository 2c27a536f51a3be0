"""The apps' zygote: apps forked from one warm parent, looking and ending as apps started afresh did."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from apphost.zygote import Zygote
from bus.service import EXIT_WORK_STOPPED
from tests.conftest import DEADLINE_S, children_of, wait_for
from tests.shell.test_apps import start_system


def status_of(pid: int) -> dict[str, str]:
    return {k: v.strip() for k, v in (line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                                      .splitlines())}


def running(user, app: str):
    return (user.latest.get("appd.state") or {}).get("running", {}).get(app)


@pytest.mark.slow
def test_an_app_is_the_zygotes_child_shown_as_its_directory_and_a_dead_zygote_takes_appd_and_its_apps(
        procs, runtime, tmp_path):
    system, user = start_system(procs, runtime, tmp_path)
    home = user.wait(lambda: running(user, "home"), "home running")
    [zygote] = children_of(system.appd.pid, "-m apphost.zygote")
    assert int(status_of(home)["PPid"]) == zygote
    # What ps shows and what an app started afresh had: `python DIR`, in a session of its own, no new privileges
    assert Path(f"/proc/{home}/cmdline").read_bytes().split(b"\0")[0].decode() == \
        f"{sys.executable} {tmp_path / 'apps' / 'home'}"
    assert os.getsid(home) == home and status_of(home)["NoNewPrivs"] == "1"
    # Only stdio, the key's pipe (read and closed by then) and what the app opened itself: not the zygote's socket
    zygote_socket = {os.readlink(f"/proc/{zygote}/fd/{fd}") for fd in os.listdir(f"/proc/{zygote}/fd")
                     if os.readlink(f"/proc/{zygote}/fd/{fd}").startswith("socket:")}
    assert zygote_socket and not zygote_socket & {os.readlink(f"/proc/{home}/fd/{fd}")
                                                   for fd in os.listdir(f"/proc/{home}/fd")}

    os.kill(zygote, signal.SIGKILL)
    assert system.appd.wait(30) == EXIT_WORK_STOPPED  # to be restarted by its supervisor, with the apps it had
    wait_for(lambda: not os.path.exists(f"/proc/{home}") or status_of(home)["State"].startswith("Z"),
             what="home gone with its zygote")
    system.appd = procs.start_ready("-m", "apphost.appd")
    again = user.wait(lambda: (pid := running(user, "home")) != home and pid, "home running again")
    [zygote] = children_of(system.appd.pid, "-m apphost.zygote")
    assert int(status_of(again)["PPid"]) == zygote

    # A stop as systemd does it, SIGTERM to every process of appd's unit at once, is a clean stop: the zygote
    # stays until appd has stopped its apps and closed it (had it died first, appd would have exited as failed)
    assert int(status_of(zygote)["SigIgn"], 16) >> (signal.SIGTERM - 1) & 1
    for pid in (zygote, again, system.appd.pid):
        os.kill(pid, signal.SIGTERM)
    assert system.appd.wait(30) == 0
    wait_for(lambda: not os.path.exists(f"/proc/{zygote}"), what="the zygote gone after appd")


@pytest.mark.fault
@pytest.mark.slow
def test_appd_serves_the_shell_while_the_zygote_has_not_answered(procs, runtime, tmp_path):
    """A zygote slow to answer (still importing the SDK on a loaded board) must not stall appd's loop: an appd
    waiting in it sent no watchdog ping and was killed by systemd during a CI boot."""
    system, user = start_system(procs, runtime, tmp_path)
    home = user.wait(lambda: running(user, "home"), "home running")
    [zygote] = children_of(system.appd.pid, "-m apphost.zygote")
    os.kill(zygote, signal.SIGSTOP)  # it answers nothing until continued
    lens = procs.start("-m", "cli.main", "app", "start", "camera", "--timeout", str(3 * DEADLINE_S),
                       env=procs.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # appd took the shell's word and said so while the zygote's answer is still to come
        user.wait(lambda: "camera" in user.latest["appd.state"]["wanted"], "appd's state with camera wanted")
        assert "camera" not in user.latest["appd.state"]["running"]
        os.kill(home, signal.SIGKILL)  # and an app's death is seen (its pidfd) while the zygote is stopped
        user.wait(lambda: "home" not in user.latest["appd.state"]["running"], "home's death seen by appd")
    finally:
        os.kill(zygote, signal.SIGCONT)
    user.wait(lambda: running(user, "camera"), "camera running once the zygote answered")
    assert lens.wait(3 * DEADLINE_S) == 0, lens.stderr.read()
    user.wait(lambda: running(user, "home") not in (None, home), "home started again after its crash")


PROBE = '''import atexit, os, pickle, sys

class Thing:
    pass

def at_the_end():  # after the module's body returned and its threads were joined, as in `python DIR`
    import __main__
    import helper  # from the app's own directory
    seen = [f"main {os.path.basename(__main__.__file__)}", f"helper {helper.VALUE}",
            f"pickled {pickle.loads(pickle.dumps(Thing())).__class__ is Thing}", f"argv {sys.argv == [os.path.dirname(__file__)]}"]
    with open(os.environ["PROBE_OUT"], "w") as out:
        out.write(", ".join(seen))

atexit.register(at_the_end)
sys.exit(3)
'''


def answer(zygote: Zygote, answers: list):
    """As appd's loop does: the zygote's answer once its socket is readable."""
    assert select.select([zygote.fd], [], [], DEADLINE_S)[0], "the zygote did not answer"
    assert zygote.readable()
    return answers.pop()


def test_an_app_runs_as_python_dir_would_until_its_very_end(tmp_path):
    app = tmp_path / "probe"
    app.mkdir()
    (app / "__main__.py").write_text(PROBE)
    (app / "helper.py").write_text("VALUE = 7\n")
    env = dict(os.environ, PROBE_OUT=str(tmp_path / "seen"))
    zygote = Zygote(env)
    read_end, write_end = os.pipe()
    os.close(write_end)
    answers = []
    try:
        zygote.spawn({"app": "probe", "dir": str(app), "env": env, "uid": None, "gid": None, "groups": []},
                     read_end, answers.append)
        assert not answers  # asked, not waited for: the answer comes when appd's loop finds the socket readable
        pid = answer(zygote, answers)["pid"]
        pidfd = os.pidfd_open(pid)
        assert select.select([pidfd], [], [], DEADLINE_S)[0], "the probe app did not end"
        os.close(pidfd)
        zygote.status(pid, answers.append)
        assert answer(zygote, answers) == 3
    finally:
        zygote.close()
    assert (tmp_path / "seen").read_text() == "main __main__.py, helper 7, pickled True, argv True"
