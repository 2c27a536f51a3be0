"""Every multi-process scenario proves the privacy rules over its own bus (issue 34): `tests.system.System`
records the bus with `lens bus record` (private by default: descriptors and timing, no pixels or sound) from
the moment its broker is up, and when the test has passed, the recording goes through the same checker as
`lens bus check FILE` (bustools.check): a violation fails the test, with the messages involved."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from bustools import bag
from bustools.check import Checker, app_permissions
from tests.conftest import DEADLINE_S, drain_lines, wait_line


class CheckedBus:
    def __init__(self, procs, path: Path):
        self.procs, self.path = procs, path
        # Capturers the test itself plays (nodes on the developer's key, processes of its scripts): no manifest
        # says what they may capture, so the test does, as a manifest would: name -> {"camera", "mic"}.
        self.declared: dict[str, set[str]] = {}
        self.recorder = procs.lens("bus", "record", "-o", str(path), stderr=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL)
        wait_line(self.recorder.stderr, "recording")
        procs.checks.append(self.check)

    def stop(self) -> None:
        if self.recorder.poll() is None:
            self.recorder.send_signal(signal.SIGINT)
        err = drain_lines(self.recorder.stderr)
        assert self.recorder.wait(DEADLINE_S) == 0, err

    def check(self) -> Checker:
        """The recording so far, checked: AssertionError naming every violation."""
        self.stop()
        apps = self.procs.env().get("LENS_APPS_DIR")  # the apps this system ran, a test's own too
        checker = Checker(may_capture={**app_permissions(Path(apps) if apps else None), **self.declared})
        for item in bag.iterate(self.path):
            assert not isinstance(item, bag.Damage), f"{self.path}: {item.why}"
            if isinstance(item, bag.Recorded):
                checker.feed(item)
        checker.finish()
        assert checker.counts["messages"], f"{self.path}: nothing recorded"
        found = "\n".join(f"{v.rule} at {v.mono_ns / 1e9:.3f} s: {v.what} ({'; '.join(v.messages)})"
                          for v in checker.violations)
        assert not checker.violations, f"the scenario's bus broke the rules ({self.path}):\n{found}"
        return checker
