"""`lens up`'s supervisor loop, driven step by step with a child that takes its time to die."""

import io
import socket

import pytest

from manager.launcher import STOP_DEADLINE_S, Child, Launcher
from manager.processes import by_name


class Lingering:
    """A process that was SIGSTOPped (so SIGABRT waits) and, once SIGKILLed, is torn down slowly by a busy
    kernel: alive for a few more looks."""

    def __init__(self, looks_after_kill: int):
        self.kills, self.left, self.returncode = 0, looks_after_kill, None

    def poll(self):
        if self.kills and self.left == 0:
            self.returncode = -9
        elif self.kills:
            self.left -= 1
        return self.returncode

    def kill(self):
        self.kills += 1


@pytest.mark.fault
def test_a_stopped_child_is_killed_once_and_the_loop_waits_for_its_end_without_spinning(runtime):
    out = io.StringIO()
    launcher = Launcher([], runtime, out=out)
    notify, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    child = launcher.children["powerd"] = Child(by_name()["powerd"], notify, "")
    child.popen = Lingering(looks_after_kill=100)
    child.started_at = child.aborted_at = 0.0  # SIGABRT sent long ago, and the process is still there
    turns = 0
    while child.popen.poll() is None:  # the loop's turns until the process is gone
        turns += 1
        launcher._watchdog()
        launcher._reap()
        assert turns == 1 or launcher.next_wait() is None, "nothing is due: the loop must sleep until SIGCHLD"
    launcher._reap()
    said = out.getvalue()
    assert child.popen.kills == 1 and said.count("did not abort") == 1, said
    assert f"powerd did not abort in {STOP_DEADLINE_S:g} s; killing it" in said
    assert "powerd exited with status -9; restarting" in said
    other.close()
    launcher.shutdown()
