"""lensos-check: the boot test's eyes inside the VM (development image, `lensos.check` on the kernel line).

Runs once lensos.target is reached, proves what it can from inside, and writes one JSON object a line to
the virtio-serial port lensos.check, which the host's tests/board/test_boot.py reads and asserts:
    {"check": NAME, "ok": true|false, ...what was seen}
then {"check": "done"} and powers the VM off. A check that raises reports ok false with the error.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import traceback

PORT = "/dev/virtio-ports/lensos.check"
OUT = None


def report(check: str, **fields) -> None:
    line = json.dumps({"check": check, **fields}, default=str) + "\n"
    OUT.write(line)
    OUT.flush()
    print(line, end="", flush=True)  # and the journal


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True).stdout


def lensos_units() -> list[str]:
    text = sh("systemctl", "show", "-p", "Wants", "--value", "lensos.target")
    return sorted(u for u in text.split() if u.startswith("lensos-"))


def show(unit: str, *props: str) -> dict:
    text = sh("systemctl", "show", unit, *(f"-p{p}" for p in props))
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def wait(predicate, timeout: float, period: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(period)


def check_units() -> None:
    units = lensos_units()
    props = ("ActiveState", "SubState", "Type", "StatusErrno", "NRestarts", "Result",
             "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")

    def all_active():
        return all(show(u, "ActiveState")["ActiveState"] == "active" for u in units)

    wait(all_active, 150)
    seen = {u: show(u, *props) for u in units}
    # Type=notify: "active" is only entered after READY=1 (a unit that never sent it stays "activating")
    ready = {u: s["ActiveState"] == "active" and s["Type"] == "notify" for u, s in seen.items()}
    report("units", ok=bool(units) and all(ready.values()), units=seen, ready=ready)
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


def control(request: dict) -> dict:
    """The VM's hardware (lensos-vm-hardware): touch the pad, read or remove the LED."""
    import socket
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect("/run/lensos-vm/control")
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


class Bus:
    """A developer's node (the development image's key) that keeps what it hears."""

    def __init__(self, *prefixes: str):
        os.environ.setdefault("LENS_RUNTIME_DIR", "/run/lensos")
        os.environ.setdefault("LENS_KEYS_DIR", "/etc/lensos/keys")
        from bus.node import Node
        self.node = Node(f"lens-check-{os.getpid()}")
        self.seen: list[tuple[float, str, dict]] = []
        for prefix in prefixes:
            self.node.subscribe(prefix, lambda msg: self.seen.append((time.monotonic(), msg.topic, dict(msg.payload))))
        self.node.start(timeout=30)

    def until(self, predicate, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.seen if predicate(m)]
            if found:
                return found[0]
            self.node.run_once(0.1)
        return None

    def close(self):
        self.node.close()


def check_input() -> None:
    bus = Bus("input.gesture")
    try:
        seen = {}
        for action, gesture in (("tap", "tap"), ("swipe", "swipe_forward")):
            start = time.monotonic()
            control({"do": action})
            got = bus.until(lambda m: m[0] >= start and m[2].get("gesture") == gesture, 20)
            seen[action] = got and got[2]
        report("input", ok=all(seen.values()), seen=seen, all=[m[2] for m in bus.seen])
    finally:
        bus.close()


def check_led() -> None:
    led = "/sys/class/leds/lensos:capture"
    bus = Bus("led.state")
    try:
        state = bus.until(lambda m: m[1] == "led.state", 10)
        readback = control({"do": "led"})
        sysfs = open(f"{led}/brightness").read().strip()
        removed = control({"do": "led-remove"})
        fault = bus.until(lambda m: m[1] == "led.state" and m[2].get("fault"), 20)
        refused = None
        try:
            refused = bus.node.request("camera.ring.request", timeout=5)
        except Exception as exc:
            refused = f"refused: {type(exc).__name__}: {exc}"
        restored = control({"do": "led-restore"})
        # capture_without_led is reported, not judged: a ring refused to a node that never asked the shell for
        # the camera proves nothing about the LED (the boot test skips that line as not yet proven)
        report("led", ok=bool(state) and bool(readback.get("present")) and bool(fault),
               state=state and state[2], uleds_readback=readback, sysfs_brightness=sysfs, removed=removed,
               fault=fault and fault[2], capture_without_led=refused, restored=restored)
    finally:
        bus.close()


def check_power() -> None:
    bus = Bus("power.state", "shell.state")
    param = "/sys/module/power_left/parameters/battery_present"
    try:
        first = bus.until(lambda m: m[1] == "power.state" and m[2].get("backend") == "real", 15)
        pulled_at = time.monotonic()
        with open(param, "w") as f:
            f.write("false")
        pulled = bus.until(lambda m: m[0] >= pulled_at and m[1] == "power.state" and m[2]["present"][:1] == [False],
                           10)
        swap = bus.until(lambda m: m[0] >= pulled_at and m[1] == "shell.state" and "swap" in m[2].get("state", ""), 15)
        with open(param, "w") as f:
            f.write("true")
        latency_ms = pulled and round((pulled[0] - pulled_at) * 1000, 1)
        report("power", ok=bool(first) and bool(pulled) and bool(swap), first=first and first[2],
               pulled=pulled and pulled[2], seen_after_ms=latency_ms, shell=swap and swap[2].get("state"),
               note="latency measured at a subscriber on the bus, under TCG")
    finally:
        bus.close()


CHECKS = [check_units, check_journal, check_security, check_input, check_led, check_power]


def main() -> int:
    global OUT
    OUT = open(PORT, "w") if os.path.exists(PORT) else sys.stdout
    report("start", ok=True, uptime_s=float(open("/proc/uptime").read().split()[0]))
    for check in CHECKS:
        try:
            check()
        except Exception as exc:
            report(check.__name__.removeprefix("check_"), ok=False, error=f"{type(exc).__name__}: {exc}",
                   trace=traceback.format_exc()[-2000:])
    failed = [u for u in sh("systemctl", "list-units", "--failed", "--plain", "--no-legend").splitlines()]
    report("state", ok=True, ls=sh("ls", "-lanR", "/run/lensos"), ids=sh("sh", "-c", "getent group lensos; ps -eo uid,gid,supgid,cmd | grep lensos"))
    report("done", ok=True, failed_units=failed, uptime_s=float(open("/proc/uptime").read().split()[0]))
    OUT.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
