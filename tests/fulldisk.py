"""A full disk for tests: a small tmpfs mounted for the test and unmounted after it, whatever happened.

Mounting needs root (CI runs as root); elsewhere the test is skipped and says why.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest


@contextlib.contextmanager
def small_disk(size: str) -> Iterator[Path]:
    """A directory on a tmpfs of ``size`` (mount's size=, e.g. "256k")."""
    where = Path(tempfile.mkdtemp(prefix="lens-full-", dir="/tmp"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a small tmpfs for a full disk: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=False)
        with contextlib.suppress(OSError):
            where.rmdir()


def fill(directory: Path, leave: int = 0) -> None:
    """Fill the file system of ``directory`` up to ``leave`` bytes free."""
    import os

    free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize - leave
    with contextlib.suppress(OSError), open(directory / "ballast", "wb") as f:
        while free > 0:
            free -= f.write(b"\0" * min(free, 1 << 16))


def empty_files(directory: Path) -> list[str]:
    return sorted(str(p) for p in directory.rglob("*") if p.is_file() and p.stat().st_size == 0)
