"""The Makefile's setup: as root, `make` installs the missing system packages and nothing they only recommend."""

import shutil
import subprocess

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(not shutil.which("make"), reason="needs make")


def test_sysdeps_as_root_installs_only_the_missing_packages_without_recommends(tmp_path):
    bin_ = tmp_path / "bin"  # a PATH on which none of the checked commands is found, and a root that is not
    bin_.mkdir()
    calls = tmp_path / "apt-get.calls"
    for name, body in (("id", "echo 0"), ("apt-get", f'echo "$*" >> {calls}')):
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    result = subprocess.run([shutil.which("make"), "-s", "sysdeps", "PYTHON=/bin/false"], cwd=REPO,
                            env={"PATH": str(bin_), "HOME": str(tmp_path)}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    update, install = calls.read_text().splitlines()
    assert update == "update -qq"
    words = install.split()
    assert words[:4] == ["install", "-y", "-qq", "--no-install-recommends"], install
    assert {"libportaudio2", "espeak-ng", "systemd", "chromium", "gcc", "libc6-dev"} <= set(words[4:]), install
