"""idle: what the glasses cost at rest on the board image, measured as bench/system.py measures `lens up`.

As a product image ships (the development image's wake-phrase spotter stopped for it, and started again
after). Every process of every lensos unit (its cgroup's: appd's holds the apps' zygote and the apps),
over IDLE_S once the units have settled: wake-ups (the context switches of all its threads), CPU (the
scheduler's own sum) and memory as a board counts it (PSS and USS), read from /proc by bench/procstat.py,
as bench/system.py reads `lens up`. Asked for by name only (`board/run-vm --check /tmp/idle.jsonl
--append "lensos.check lensos.only=idle"`): the boot test does not spend its minute on it, and under TCG
the CPU figures are the emulator's, not a board's (wake-ups and memory are the system's own).
"""

from __future__ import annotations

import os
import time

import procstat  # bench/procstat.py, put beside this file by board/build-image
from checklib import lensos_units, report, sh, show, wait

IDLE_S = 60.0
SETTLE_S = 15.0  # the boot's last chatter (first renders, latched replays)


def pids_of(unit: str) -> list[int]:
    try:
        with open(f"/sys/fs/cgroup/system.slice/{unit}/cgroup.procs") as procs:
            return [int(line) for line in procs if line.strip()]
    except FileNotFoundError:
        return []


def name_of(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        words = cmdline.read().replace(b"\0", b" ").decode(errors="replace").split()  # an app's is one string
    return " ".join(w.rsplit("/", 2)[-1] if w.startswith("/") else w for w in words[1:]) or str(pid)


def check_idle() -> None:
    # As a product image ships: without the wake-phrase spotter, which the development image runs (and
    # for which audiod keeps the mic open), given back afterwards.
    spotter = "lensos-waked.service"
    wait(lambda: all(show(u, "ActiveState")["ActiveState"] == "active" for u in lensos_units()), 150)
    listening = show(spotter, "ActiveState")["ActiveState"] == "active"
    if listening:
        sh("systemctl", "stop", spotter)
    try:
        measure(listening)
    finally:
        if listening:
            sh("systemctl", "start", spotter)


def measure(spotter_stopped: bool) -> None:
    time.sleep(SETTLE_S)
    pids = {pid: (unit.removeprefix("lensos-").removesuffix(".service"), name_of(pid))
            for unit in lensos_units() for pid in pids_of(unit)}
    before = {pid: procstat.threads(pid) for pid in pids}
    started = time.monotonic()
    time.sleep(IDLE_S)
    seconds = time.monotonic() - started
    rows, gone = {}, []
    for pid, (unit, name) in pids.items():
        try:
            cpu, switches = procstat.used_since(before[pid], procstat.threads(pid))
            memory = {"pss": procstat.pss_kib(pid), "uss": procstat.uss_kib(pid), "rss": procstat.rss_kib(pid)}
            rows[f"{unit}: {name} [{pid}]"] = {
                "wakeups_s": round(switches / seconds, 2), "cpu_pct": round(cpu / seconds * 100, 3),
                **{f"{k}_mib": round(v / 1024, 1) for k, v in memory.items()}, "uid": os.stat(f"/proc/{pid}").st_uid}
        except (FileNotFoundError, StopIteration):
            gone.append(f"{unit}: {name} [{pid}]")  # a restart while idle is a finding of its own
    total = {key: round(sum(row[key] for row in rows.values()), 2)
             for key in ("wakeups_s", "cpu_pct", "pss_mib", "uss_mib")}
    report("idle", ok=bool(rows) and not gone, seconds=round(seconds, 1), processes=rows, total=total, gone=gone,
           spotter_stopped=spotter_stopped)
