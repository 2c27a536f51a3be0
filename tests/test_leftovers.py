"""The suite leaves nothing behind outside its temporary directories."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

JACK_DB = f"jack_db-{os.getuid()}"


def private_mounts() -> bool:
    """Can this process make a mount namespace of its own (root, and no container forbidding it)?"""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--mount", "true"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not private_mounts(), reason="a private /dev/shm takes root and a mount namespace")
def test_the_tests_that_start_portaudio_leave_no_jack_db_in_dev_shm():
    """Run in a mount namespace of its own with an empty /dev/shm, so that nobody else's JACK database (or
    another test run's on this machine) can be mistaken for ours."""
    inner = (f"mount -t tmpfs tmpfs /dev/shm && {sys.executable} -m pytest -q -p no:cacheprovider "
             f"tests/daemons/test_audio.py -k real_backend; echo status=$?; ls -A /dev/shm")
    done = subprocess.run(["unshare", "--mount", "sh", "-c", inner], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    out = done.stdout.splitlines()
    if any("skipped" in line for line in out):
        pytest.skip("PortAudio cannot open ALSA's null device here")
    # The audio test ran (its first step starts PortAudio); whether it passed is its own business.
    status = next(i for i, line in enumerate(out) if line.startswith("status="))
    assert any(" passed" in line or " failed" in line for line in out[:status]), done.stdout + done.stderr
    assert JACK_DB not in out[status + 1:], f"left behind: {out[status + 1:]}"
