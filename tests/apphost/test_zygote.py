"""The apps' zygote: apps forked from one warm parent, looking and ending as apps started afresh did."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from bus.service import EXIT_WORK_STOPPED
from tests.conftest import children_of, wait_for
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
    assert int(status_of(again)["PPid"]) in children_of(system.appd.pid, "-m apphost.zygote")
