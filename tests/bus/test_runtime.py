"""The bus directory as the board has it: the broker's socket directory in a setgid, sticky directory."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from bus.runtime import Runtime

_chmod = os.chmod  # the real one, for the tests' own setup


@pytest.fixture
def restricted_chmod(monkeypatch):
    """chmod as under systemd's RestrictSUIDSGID=yes: setting a setuid or setgid bit is refused (EPERM)."""
    real = os.chmod

    def chmod(path, mode, *args, **kwargs):
        if mode & (stat.S_ISUID | stat.S_ISGID):
            raise PermissionError(errno.EPERM, "Operation not permitted", str(path))
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "chmod", chmod)


def board_dir(tmp_path):
    shared = tmp_path / "lensos"
    shared.mkdir()
    _chmod(shared, 0o3770)  # tmpfiles.d's /run/lensos: setgid, sticky, the bus group's
    return Runtime(shared)


def test_the_socket_dir_is_made_in_a_setgid_directory_under_restrict_suid_sgid(tmp_path, restricted_chmod):
    """The first boot under a real systemd: the broker failed at make_socket_dir with "Operation not
    permitted", re-asserting the setgid bit bus/ inherits from /run/lensos."""
    runtime = board_dir(tmp_path)
    assert runtime.make_socket_dir() is None
    assert stat.S_IMODE(os.stat(runtime.socket_dir).st_mode) & 0o022 == 0, "nobody but the broker writes bus/"
    assert runtime.make_socket_dir() is None  # and again, as a restarted broker


def test_a_socket_dir_others_may_write_is_closed_under_restrict_suid_sgid(tmp_path, restricted_chmod):
    runtime = board_dir(tmp_path)
    runtime.socket_dir.mkdir()
    _chmod(runtime.socket_dir, 0o770)
    runtime.make_socket_dir()
    assert stat.S_IMODE(os.stat(runtime.socket_dir).st_mode) & 0o022 == 0
