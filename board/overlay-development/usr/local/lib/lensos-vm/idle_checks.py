"""idle: what the glasses cost at rest on the board image, measured as bench/system.py measures `lens up`.

As a product image ships (the development image's wake-phrase spotter stopped for it, and started again
after). Every process of every lensos unit (its cgroup's: appd's holds the apps' zygote and the apps), over IDLE_S
once the units have settled: wake-ups (the context switches of all its threads, from /proc), CPU (the
scheduler's nanoseconds) and memory as a board counts it (PSS and USS, from smaps_rollup). Asked for by
name only (`board/run-vm --check /tmp/idle.jsonl --append "lensos.check lensos.only=idle"`): the boot test does not spend its
minute on it, and under TCG the CPU figures are the emulator's, not a board's (wake-ups and memory are the
system's own).
"""

from __future__ import annotations

import os
import time

from checklib import lensos_units, report, sh, show, wait

IDLE_S = 60.0
SETTLE_S = 15.0  # the boot's last chatter (first renders, latched replays)


def pids_of(unit: str) -> list[int]:
    try:
        with open(f"/sys/fs/cgroup/system.slice/{unit}/cgroup.procs") as procs:
            return [int(line) for line in procs if line.strip()]
    except FileNotFoundError:
        return []


def counters(pid: int) -> tuple[int, int]:
    """(context switches, CPU ns) over all the process's threads."""
    switches = cpu = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as status:
            switches += sum(int(line.split()[1]) for line in status
                            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")))
        with open(f"/proc/{pid}/task/{task}/schedstat") as schedstat:
            cpu += int(schedstat.read().split()[0])
    return switches, cpu


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            key, _, rest = line.partition(":")
            if key in ("Pss", "Private_Clean", "Private_Dirty", "Rss"):
                fields[key] = int(rest.split()[0])
    return {"pss": fields["Pss"], "uss": fields["Private_Clean"] + fields["Private_Dirty"], "rss": fields["Rss"]}


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
    before = {pid: counters(pid) for pid in pids}
    started = time.monotonic()
    time.sleep(IDLE_S)
    seconds = time.monotonic() - started
    rows, gone = {}, []
    for pid, (unit, name) in pids.items():
        try:
            switches, cpu = counters(pid)
            rows[f"{unit}: {name} [{pid}]"] = {
                "wakeups_s": round((switches - before[pid][0]) / seconds, 2),
                "cpu_pct": round((cpu - before[pid][1]) / seconds / 1e7, 3),
                **{f"{k}_mib": round(v / 1024, 1) for k, v in memory_kib(pid).items()}, "uid": os.stat(f"/proc/{pid}").st_uid}
        except FileNotFoundError:
            gone.append(f"{unit}: {name} [{pid}]")  # a restart while idle is a finding of its own
    total = {key: round(sum(row[key] for row in rows.values()), 2)
             for key in ("wakeups_s", "cpu_pct", "pss_mib", "uss_mib")}
    report("idle", ok=bool(rows) and not gone, seconds=round(seconds, 1), processes=rows, total=total, gone=gone,
           spotter_stopped=spotter_stopped)
