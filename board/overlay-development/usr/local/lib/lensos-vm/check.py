"""lensos-check: the boot test's eyes inside the VM (development image, `lensos.check` on the kernel line).

Runs once lensos.target is reached, proves what it can from inside, and writes one JSON object a line to
the virtio-serial port lensos.check, which the host's tests/board/test_boot.py reads and asserts:
    {"check": NAME, "ok": true|false, ...what was seen}
then {"check": "done"} and powers the VM off. A check that raises reports ok false with the error. The
hardware checks are in hardware_checks.py, systemd's restarts and hangs in fault_checks.py, the attacks in
hostile_checks.py, what faults must not lose (a recording cut off or ended by a fault, a full disk, both
batteries out) in loss_checks.py; what the system costs at rest, when asked by name, in idle_checks.py.
"""

from __future__ import annotations

import faulthandler
import json
import os
import re
import signal
import sys
import traceback

import checklib
from checklib import journal, lensos_units, report, sh, show, wait
from fault_checks import check_broker_hang, check_broker_restart, check_faults, check_watchdog
from hostile_checks import check_hostile
from idle_checks import check_idle
from hardware_checks import check_audio, check_camera, check_display, check_input, check_led, check_power
from loss_checks import check_batteries, check_capture_faults, check_full_disk, check_recording


def check_units() -> None:
    units = lensos_units()
    props = ("ActiveState", "SubState", "Type", "StatusErrno", "NRestarts", "Result",
             "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")

    def all_ready():
        """Every unit's properties, read once, when all are active; else None."""
        seen = {u: show(u, *props) for u in units}
        return seen if all(s["ActiveState"] == "active" for s in seen.values()) else None

    # One reading in which all are active: a unit restarted between a first look and the reading was reported
    # "activating" (appd, NRestarts 1, in a loaded CI run; likely its loop waiting on the zygote past its watchdog),
    # though it came back. Its restarts stay in the report.
    seen = wait(all_ready, 150) or {u: show(u, *props) for u in units}
    # Type=notify: "active" is only entered after READY=1 (a unit that never sent it stays "activating")
    ready = {u: s["ActiveState"] == "active" and s["Type"] == "notify" for u, s in seen.items()}
    restarted = {u: s["NRestarts"] for u, s in seen.items() if s["NRestarts"] not in ("", "0")}
    # Why, in the unit's own journal (systemd's lines about it included: "Watchdog timeout", "Main process
    # exited, code=..."): Result= is reset when a unit is started again, so it says "success" after any restart.
    why = {u: journal(u, lines=20) for u in restarted}
    report("units", ok=bool(units) and all(ready.values()), units=seen, ready=ready, restarted=restarted,
           why_restarted=why)
    target = show("lensos.target", "ActiveState", "ActiveEnterTimestampMonotonic")
    report("target", ok=target["ActiveState"] == "active", state=target["ActiveState"])
    # boot to lensos ready: the kernel's start to the last unit's READY=1 (CLOCK_MONOTONIC, microseconds)
    last = max(int(s["ActiveEnterTimestampMonotonic"] or 0) for s in seen.values())
    userspace = int(show("systemd-journald.service", "ExecMainStartTimestampMonotonic")
                    ["ExecMainStartTimestampMonotonic"] or 0)
    report("boot_time", ok=last > 0, ready_s=round(last / 1e6, 2), target_s=round(
        int(target["ActiveEnterTimestampMonotonic"] or 0) / 1e6, 2), userspace_start_s=round(userspace / 1e6, 2),
        analyze=sh("systemd-analyze").strip())


def check_journal() -> None:
    names = {}
    for unit in lensos_units():
        lines = sh("journalctl", "-b", "-u", unit, "-o", "json", "--no-pager").splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        own = [e for e in entries if e.get("_SYSTEMD_UNIT") == unit and e.get("_PID") != "1"]
        names[unit] = {"named": all(e.get("SYSLOG_IDENTIFIER") == unit.removesuffix(".service") for e in own),
                       "entries": len(own), "identifiers": sorted({e.get("SYSLOG_IDENTIFIER", "") for e in own}),
                       "first": [e.get("MESSAGE") for e in own[:12]], "last": [e.get("MESSAGE") for e in own[-3:]]}
    # a healthy daemon may log nothing at all; what it logs is under its unit and its name
    report("journal", ok=all(n["named"] for n in names.values()) and names["lensos-broker.service"]["entries"] > 0,
           units=names)


def check_security() -> None:
    table = {}
    for unit in lensos_units():
        text = sh("systemd-analyze", "security", "--no-pager", unit)
        match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", text)
        table[unit] = f"{match.group(1)} {match.group(2)}" if match else text.strip()[-200:]
    report("security", ok=all(re.match(r"[\d.]+ ", v) for v in table.values()), table=table)


CHECKS = [check_units, check_journal, check_security, check_input, check_camera, check_display, check_audio,
          check_led, check_power, check_batteries, check_recording, check_capture_faults, check_full_disk,
          check_watchdog, check_broker_restart, check_broker_hang, check_hostile, check_faults]
ASKED_ONLY = [check_idle]  # run when named in lensos.only, never in the full run (see each one's module)


CHECK_LIMIT_S = 900  # one check's time under TCG on a loaded 2-core host; the longest measured took about 4 min


def _too_long(signum, frame) -> None:
    raise TimeoutError(f"the check took over {CHECK_LIMIT_S} s")


def main() -> int:
    faulthandler.enable(open("/dev/console", "w"))  # a crash of the interpreter itself says where, on the console
    checklib.OUT = open(checklib.PORT, "w") if os.path.exists(checklib.PORT) else sys.stdout
    report("start", ok=True, uptime_s=float(open("/proc/uptime").read().split()[0]))
    # `lensos.only=input,led` on the kernel line (board/run-vm --append) runs only those, to look at one again
    only = [c for arg in open("/proc/cmdline").read().split() if arg.startswith("lensos.only=")
            for c in arg.split("=", 1)[1].split(",")]
    for check in CHECKS + ASKED_ONLY:
        name = check.__name__.removeprefix("check_")
        if (only or check in ASKED_ONLY) and name not in only:
            continue
        # A check that hangs is stopped where it is and reported with its trace, and the rest still run:
        # a hung one otherwise ran into the host's deadline and took every later check's report with it.
        report("begin", ok=True, name=name)  # where it got to, should a check take the process down
        signal.signal(signal.SIGALRM, _too_long)
        signal.alarm(CHECK_LIMIT_S)
        try:
            check()
        except Exception as exc:
            report(name, ok=False, error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-2000:])
        finally:
            signal.alarm(0)
    failed = sh("systemctl", "list-units", "--failed", "--plain", "--no-legend").splitlines()
    report("state", ok=True, journals={unit: journal(unit, lines=25) for unit in (
        "lensos-vm-hardware.service", "lensos-shell.service", "lensos-ledd.service", "lensos-audiod.service",
        "lensos-camerad.service", "lensos-inputd.service", "lensos-displayd.service", "lensos-appd.service",
        "lensos-waked.service")},
        restarts={u: show(u, "NRestarts")["NRestarts"] for u in lensos_units()})
    report("done", ok=True, failed_units=failed, uptime_s=float(open("/proc/uptime").read().split()[0]))
    checklib.OUT.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
