"""What the boot checks share: the report channel, systemd's word on units, a bus node that keeps what it hears,
and the VM hardware's control socket. Every wait is a condition with a deadline, never a fixed sleep."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

PORT = "/dev/virtio-ports/lensos.check"
RUNTIME = "/run/lensos"
KEYS = "/etc/lensos/keys"
OUT = None  # the report channel (check.py opens it)


def report(check: str, **fields) -> None:
    line = json.dumps({"check": check, **fields}, default=str) + "\n"
    OUT.write(line)
    OUT.flush()
    print(line[:2000], end="" if line.endswith("\n") else "\n", flush=True)  # and the journal


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True).stdout


def lensos_units() -> list[str]:
    text = sh("systemctl", "show", "-p", "Wants", "--value", "lensos.target")
    return sorted(u for u in text.split() if u.startswith("lensos-"))


def show(unit: str, *props: str) -> dict:
    text = sh("systemctl", "show", unit, *(f"-p{p}" for p in props))
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def main_pid(unit: str) -> int:
    return int(show(unit, "MainPID")["MainPID"] or 0)


def wait(predicate, timeout: float, period: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(period)


def running_again(unit: str, old_pid: int):
    """The unit active (READY=1 again, Type=notify) under a new main process: its pid, else 0."""
    s = show(unit, "ActiveState", "SubState", "MainPID")
    pid = int(s["MainPID"] or 0)
    return pid if s["ActiveState"] == "active" and s["SubState"] == "running" and pid not in (0, old_pid) else 0


def journal(unit: str, since_mono: float | None = None, lines: int = 40) -> list[str]:
    args = ["journalctl", "-b", "-u", unit, "-o", "json", "--no-pager"]
    out = []
    for line in sh(*args).splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if since_mono is not None and int(entry.get("__MONOTONIC_TIMESTAMP", 0)) / 1e6 < since_mono:
            continue
        out.append(str(entry.get("MESSAGE")))
    return out[-lines:]


def control(request: dict) -> dict:
    """The VM's hardware (lensos-vm-hardware): touch the pad, read or remove the LED."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        if not wait(lambda: _connect(sock), 60):  # lensos-vm-hardware may be (re)starting: its journal says why
            raise ConnectionRefusedError(f"/run/lensos-vm/control: {getattr(_connect, 'last', '')}; "
                                         f"lensos-vm-hardware: "
                                         f"{show('lensos-vm-hardware.service', 'ActiveState', 'NRestarts')} "
                                         f"{journal('lensos-vm-hardware.service', lines=8)}")
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def _connect(sock: socket.socket):
    try:
        sock.connect("/run/lensos-vm/control")
        return True
    except (ConnectionRefusedError, FileNotFoundError) as exc:
        _connect.last = str(exc)
        return False


class Bus:
    """A node with the development image's developer key, speaking as ``name``, that keeps what it hears.
    With ``heartbeat`` it beats like a process of the system (the shell takes focus back from a silent owner)."""

    def __init__(self, *prefixes: str, name: str | None = None, heartbeat: bool = False, key: str | None = None):
        os.environ.setdefault("LENS_RUNTIME_DIR", RUNTIME)
        os.environ.setdefault("LENS_KEYS_DIR", KEYS)
        from bus import service
        from bus.node import Node
        self.name = name or f"lens-check-{os.getpid()}"
        self.node = Node(self.name, heartbeat=service.HEARTBEAT_S if heartbeat else None, key=key)
        self.seen: list[tuple[float, str, dict, str]] = []  # (when, topic, payload, source)
        for prefix in prefixes:
            self.node.subscribe(prefix, self._keep)
        self.node.start(timeout=60)

    def _keep(self, msg) -> None:
        self.seen.append((time.monotonic(), msg.topic, dict(msg.payload), msg.source))

    def until(self, predicate, timeout: float):
        """The first message kept so far that satisfies predicate((when, topic, payload, source)), else None."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.seen if predicate(m)]
            if found or time.monotonic() > deadline:
                return found[0] if found else None
            self.node.run_once(0.05)

    def pump(self, condition, timeout: float):
        """Run the node's loop until condition() holds (its value), or None after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value or time.monotonic() > deadline:
                return value or None
            self.node.run_once(0.05)

    def ask(self, topic: str, timeout: float = 30, **fields):
        """The reply, or the refusal as text ("refused: ..."). The node's loop runs while it waits (Node.request
        runs no timers): a capturing owner keeps beating, or the shell takes capture back after 1 s of silence,
        which a reply under TCG on a loaded host easily takes."""
        box: dict = {}
        self.node.request_async(topic, lambda reply, error: box.update(reply=reply, error=error), timeout=timeout,
                                **fields)
        self.pump(lambda: box, timeout + 10)
        if not box:
            return f"refused: no answer to {topic}"
        if box["error"] is not None:
            return f"refused: {type(box['error']).__name__}: {box['error']}"
        return box["reply"]

    def blocking(self, fn, *args, timeout: float = 60):
        """fn(*args) on a thread while the node's loop runs on (its heartbeats with it)."""
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            future = pool.submit(fn, *args)
            self.pump(future.done, timeout)
            return future.result(timeout=1)
        finally:
            pool.shutdown(wait=False)

    def capture(self, resource: str, purpose: str, timeout: float = 30):
        """Ask the shell for camera or mic capture as a tool (no manifest): (answer, capture notice or None)."""
        mark = time.monotonic()
        answer = self.ask("shell.focus.request", resource=resource, kind="exclusive", cls="background",
                          reason="the boot check", purpose=purpose)
        # Queued behind a transient holder (an app's photo at that moment, seen once): the grant follows
        # when it lets go, as for any app; the answer still says it was queued, and behind whom.
        if not isinstance(answer, dict) or answer.get("status") not in ("granted", "queued"):
            return answer, None
        notice = self.until(lambda m: m[0] >= mark and m[1] == "shell.capture.notice" and m[3] == "shell"
                            and m[2]["owner"] == self.name and m[2]["resource"] == resource, timeout)
        return answer, notice and notice[2]

    def release(self, resource: str):
        return self.ask("shell.release.request", resource=resource)

    def close(self):
        self.node.close()


def awake() -> str:
    """The glasses awake, as a wearer wakes them (a tap on the touchpad): asleep, the shell refuses capture, and
    the checks take longer than the idle timeout under TCG. The state seen last."""
    bus = Bus("shell.state")
    try:
        state = bus.until(lambda m: m[1] == "shell.state", 30)
        for _ in range(3):
            if state and state[2]["state"] not in ("idle", "sleep"):
                break
            mark = time.monotonic()
            control({"do": "tap"})
            state = bus.until(lambda m: m[0] >= mark and m[1] == "shell.state"
                              and m[2]["state"] not in ("idle", "sleep"), 30)
        return state[2]["state"] if state else "unknown"
    finally:
        bus.close()
