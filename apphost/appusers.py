"""Who an app runs as: a user of its own, taken from a range the policy names, as Android gives each app.

An app that shared appd's user could read appd's systemd credential (its key) and speak as appd, read
another app's memory through /proc or ptrace, and signal it. With a user of its own (and a group of its
own, plus the bus directory's group to reach the sockets) it can do none of that. appd needs
CAP_SETUID, CAP_SETGID and CAP_KILL (its unit grants them; root has them): to start an app as another
user and to stop it. Without them, or when the bus directory is not shared with its group, the apps
share appd's user, and appd says why on ``appd.state`` and in its log: a developer's laptop, not a board.

An app's number is the same at each start (a hash of its id into the range, the next free one on a
collision with a running app), so what it leaves in its own files stays its own.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys
import zlib
from pathlib import Path

from manager.launcher import die_with_parent

NEEDED = {"CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7}  # capability -> its bit in CapEff
_PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4


class AppUsers:
    def __init__(self, first_uid: int, count: int, bus_dir: Path):
        self.first, self.count = first_uid, count
        self.taken: dict[str, int] = {}
        self.bus_group: int | None = None
        self.remedy: str | None = None  # with shared_because: what would keep the apps apart here
        self.shared_because = self._why_shared(bus_dir)  # sets bus_group when apps can be kept apart

    @property
    def isolated(self) -> bool:
        return self.shared_because is None

    def _why_shared(self, bus_dir: Path) -> str | None:
        missing = [name for name, bit in NEEDED.items() if not effective_capabilities() >> bit & 1]
        if missing:
            self.remedy = "run lensos as root (the board's appd has just these capabilities)"
            return f"appd lacks {', '.join(missing)}, so every app runs as appd's user"
        info = bus_dir.stat()
        if info.st_mode & stat.S_IRWXG != stat.S_IRWXG or info.st_gid == 0:
            self.remedy = (f"give the runtime directory a group of its own, as the board's /run/lensos has "
                           f"(chgrp GROUP {bus_dir}; chmod 3770 {bus_dir})")
            return (f"the bus directory {bus_dir} is not shared with a group of its own (mode "
                    f"{stat.S_IMODE(info.st_mode):o}, gid {info.st_gid}), so an app under another user could not "
                    f"reach the bus; every app runs as appd's user")
        hidden = next((path for path in _what_apps_run() if not _open_to_others(path)), None)
        if hidden is not None:
            self.remedy = "build the venv on the system's Python (make does, from /usr/bin/python3)"
            return (f"{hidden} (Python, or what it imports) is closed to other users, so an app under a user "
                    f"of its own could not start; every app runs as appd's user (a system Python fixes it)")
        self.bus_group = info.st_gid
        return None

    def take(self, app: str) -> int | None:
        """The user ``app`` runs as from now until ``release``; None when apps share appd's."""
        if not self.isolated:
            return None
        busy = set(self.taken.values())
        start = zlib.crc32(app.encode()) % self.count
        for step in range(self.count):
            uid = self.first + (start + step) % self.count
            if uid not in busy:
                self.taken[app] = uid
                return uid
        raise RuntimeError(f"all {self.count} app users are taken; widen system.toml [apps] uids")

    def release(self, app: str) -> None:
        self.taken.pop(app, None)

    def identity(self, uid: int | None) -> dict:
        """Who the zygote makes the app: ``uid``, its own group and the bus's; None: appd's own."""
        if uid is None:
            return {"uid": None, "gid": None, "groups": []}
        return {"uid": uid, "gid": uid, "groups": [self.bus_group]}


def _what_apps_run() -> list[Path]:
    """The interpreter and every directory it imports from: an app runs the same Python as appd."""
    paths = [Path(os.path.realpath(sys.executable))]
    return paths + [Path(entry) for entry in sys.path if entry and os.path.isdir(entry)]


def _open_to_others(path: Path) -> bool:
    """Can a user who is neither the owner nor in the group reach ``path`` (each directory on the way
    searchable, the end readable)?"""
    path = path.absolute()
    try:
        for parent in reversed(path.parents):
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
        return bool(os.stat(path).st_mode & stat.S_IROTH)
    except OSError:
        return False


def effective_capabilities() -> int:
    return capabilities()["CapEff"]


def capabilities() -> dict[str, int]:
    """This process's capability sets (inheritable, permitted, effective, ambient), from /proc."""
    with open("/proc/self/status") as status:
        return {k: int(v, 16) for k, v in (line.split(":", 1) for line in status)
                if k in ("CapInh", "CapPrm", "CapEff", "CapAmb")}


def confine(parent_pid: int) -> None:
    """In the app's process, after its user is set and before its code runs: die with its parent (the
    zygote), and never gain a privilege again (no setuid program, and none of appd's ambient capabilities
    across an exec)."""
    die_with_parent()  # armed after the user changed: a change of user disarms it
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)  # its parent died before the death signal was armed: nobody would stop this app
