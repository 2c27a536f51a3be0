"""What /proc says of a process, for the benchmarks."""

from __future__ import annotations

import os


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident memory, shared pages counted whole."""
    return _kib(f"/proc/{pid}/status", "VmRSS:")


def pss_kib(pid: int) -> int:
    """Resident memory with each shared page divided among the processes that map it."""
    return _kib(f"/proc/{pid}/smaps_rollup", "Pss:")


def _kib(path: str, label: str) -> int:
    with open(path) as f:
        return next(int(line.split()[1]) for line in f if line.startswith(label))
