"""What /proc says of a process, for the benchmarks."""

from __future__ import annotations

import os


def cpu_seconds(pid: int) -> float:
    """CPU time the process's threads have used so far (see threads)."""
    return sum(cpu for cpu, _ in threads(pid).values())


def threads(pid: int) -> dict[str, tuple[float, int]]:
    """Each thread's CPU seconds and context switches (wake-ups: libzmq's I/O thread wakes for every
    message too). Compare two readings thread by thread: one that ended meanwhile is gone from the second.

    CPU comes from the scheduler's own sum (/proc/PID/task/TID/sched, ms with six decimals): /proc/PID/stat
    counts 10 ms ticks, and over a 30 s idle spell one tick more or less is 0.03 % of a core per process,
    as much as a quiet daemon uses. A kernel without that file gives the ticks."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                switches = sum(int(line.split()[1]) for line in f if "ctxt_switches:" in line)
            try:
                with open(f"/proc/{pid}/task/{tid}/sched") as f:
                    cpu = next(float(line.split(":")[1]) for line in f if line.startswith("se.sum_exec_runtime")) / 1000
            except FileNotFoundError:  # no CONFIG_SCHED_DEBUG
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
                cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, StopIteration):
            continue  # the thread ended while we read
        out[tid] = (cpu, switches)
    return out


def used_since(before: dict[str, tuple[float, int]], after: dict[str, tuple[float, int]]) -> tuple[float, int]:
    """CPU seconds and wake-ups between two readings of threads(): threads born meanwhile count whole."""
    cpu = sum(c - before.get(tid, (0.0, 0))[0] for tid, (c, _) in after.items())
    woke = sum(w - before.get(tid, (0.0, 0))[1] for tid, (_, w) in after.items())
    return cpu, woke


def rss_kib(pid: int) -> int:
    """Resident memory, shared pages counted whole."""
    return _kib(f"/proc/{pid}/status", "VmRSS:")


def pss_kib(pid: int) -> int:
    """Resident memory with each shared page divided among the processes that map it."""
    return _kib(f"/proc/{pid}/smaps_rollup", "Pss:")


def uss_kib(pid: int) -> int:
    """Memory only this process holds (its private pages): what its end would give back."""
    return _kib(f"/proc/{pid}/smaps_rollup", "Private_Clean:") + _kib(f"/proc/{pid}/smaps_rollup", "Private_Dirty:")


def thread_names(pid: int) -> dict[str, str]:
    """Each thread's name (libzmq names its own ZMQbg/IO/0, ZMQbg/Reaper), to say which thread woke."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                out[tid] = f.read().strip()
        except OSError:
            continue
    return out


def _kib(path: str, label: str) -> int:
    with open(path) as f:
        return next(int(line.split()[1]) for line in f if line.startswith(label))
