"""`lens up`: start the process table in development the way systemd starts it on the board.

Each child gets its own notify socket (``$NOTIFY_SOCKET``) and counts as
started only when it sends READY=1, which a node sends only once its bus
subscriptions are confirmed. It is watched as systemd's WatchdogSec= would:
``$WATCHDOG_USEC`` tells it the timeout, its loop pings WATCHDOG=1, and a
child silent past the timeout gets SIGABRT. A child that exits is restarted
with exponential backoff. Stopping (Ctrl-C, SIGTERM) goes in reverse order:
SIGTERM, then SIGKILL after a deadline. Children die with the launcher
(PR_SET_PDEATHSIG), so even a killed launcher leaves no orphans.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bus import keys
from bus.errors import BusError
from bus.runtime import Runtime
from bus.wakeup import Wakeup
from manager.processes import CONDITIONS, Process, command
from bus.development import DEVELOPMENT_ENV
from policies.loader import load

log = logging.getLogger(__name__)

UP_LOCK = "up.lock"  # held by the one `lens up` of a runtime directory
READY_TIMEOUT_S = 15.0
STOP_DEADLINE_S = 5.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
BACKOFF_RESET_S = 30.0  # a child that ran this long starts its backoff afresh

_PR_SET_PDEATHSIG = 1


def backoff(current: float, lived: float) -> tuple[float, float]:
    """(this restart's delay, the next one's): doubling up to the most, afresh after a long enough life."""
    delay = BACKOFF_FIRST_S if lived > BACKOFF_RESET_S else current
    return delay, min(delay * 2, BACKOFF_MAX_S)


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signum)


@dataclass
class Child:
    spec: Process
    notify: socket.socket
    notify_path: str
    popen: subprocess.Popen | None = None
    started_at: float = 0.0
    ready_at: float | None = None
    restarts: int = 0
    backoff: float = BACKOFF_FIRST_S
    restart_at: float | None = None
    pinged: float = 0.0  # the last WATCHDOG=1 (or READY=1)
    aborted_at: float | None = None  # sent SIGABRT for a missed watchdog; SIGKILL follows if it lingers
    log_lines: list[str] = field(default_factory=list)


class Launcher:
    def __init__(self, processes: list[Process], runtime: Runtime, out=sys.stdout, model: str | None = None,
                 backends: dict[str, str] | None = None, watchdog_s: float | None = None):
        self.runtime = runtime
        self.watchdog_override = watchdog_s
        self.out = out
        self.model = model
        self.backends = backends or {}  # process -> backend; "sim" where not said
        self.wakeup = Wakeup()
        self.stopping = False
        self.keys = keys.keys_dir(runtime)
        if not os.environ.get("LENS_KEYS_DIR"):  # development: a key per process, made once, kept across boots
            keys.ensure_development_keys(runtime)
            keys.generate(self.keys, [spec.name for spec in processes if not spec.dev_only])
        notify_dir = runtime.path("notify")
        notify_dir.mkdir(mode=0o700, exist_ok=True)
        self.children: dict[str, Child] = {}
        for spec in processes:
            path = str(notify_dir / spec.name)
            if os.path.exists(path):
                os.unlink(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.bind(path)
            sock.setblocking(False)
            self.children[spec.name] = Child(spec, sock, path)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # --- starting ----------------------------------------------------------------
    def command(self, spec: Process) -> list[str]:
        return command(spec, sys.executable, self.backends.get(spec.name, "sim"))

    def spawn(self, child: Child) -> None:
        spec = child.spec
        env = dict(os.environ, NOTIFY_SOCKET=child.notify_path, LENS_RUNTIME_DIR=str(self.runtime.dir),
                   PYTHONUNBUFFERED="1", WATCHDOG_USEC=str(int(self.watchdog_s(child) * 1e6)))
        env.pop("WATCHDOG_PID", None)  # ours (if systemd watches the launcher) is not the child's
        if self.model:
            env["LENS_MODEL"] = self.model
        # Its own identity, never the developer's; but a developer's tool (the live view) is the developer.
        key = self.keys / f"{keys.DEVELOPER if spec.dev_only else spec.name}.key_secret"
        env.pop("LENS_KEY", None)
        if key.exists():
            env["LENS_KEY"] = str(key)
        cmd = self.command(spec)
        child.popen = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=die_with_parent)
        child.started_at = time.monotonic()
        child.ready_at = child.restart_at = child.aborted_at = None

    def boot(self) -> bool:
        """Start each process as soon as the ones it names in ``after`` are ready, many at once."""
        t0 = time.monotonic()
        waiting = list(self.children.values())  # not yet ready, in table order
        while waiting:
            if self.stopping:
                return False
            for child in waiting:
                deps = [self.children[name] for name in child.spec.after if name in self.children]
                if child.popen is None and all(dep.ready_at is not None for dep in deps):
                    self.spawn(child)
            for child in [c for c in waiting if c.popen is not None]:
                if child.ready_at is not None:
                    waiting.remove(child)
                    self.say(f"  {child.spec.name:12} ready in {1000 * (child.ready_at - child.started_at):6.0f} ms")
                elif child.popen.poll() is not None:
                    self.say(f"  {child.spec.name:12} exited with status {child.popen.returncode} before READY")
                    return False
                elif time.monotonic() - child.started_at > READY_TIMEOUT_S:
                    self.say(f"  {child.spec.name:12} not ready after {READY_TIMEOUT_S:g} s")
                    return False
            if waiting:
                self._poll(0.2)
        self.say(f"all {len(self.children)} processes ready in {1000 * (time.monotonic() - t0):.0f} ms")
        return True

    # --- running ----------------------------------------------------------------
    def supervise(self) -> None:
        while not self.stopping:
            self._poll(self.next_wait())
            self._watchdog()
            self._reap()
            self._restart_due()

    def next_wait(self) -> float | None:
        """Seconds until something is due (a restart, a watchdog deadline, a SIGKILL after SIGABRT); None:
        nothing, a signal or a notify message will wake the loop."""
        waits = [c.restart_at for c in self.children.values() if c.restart_at is not None]
        waits += [c.pinged + self.watchdog_s(c) for c in self.children.values() if c.ready_at is not None
                  and c.restart_at is None]
        waits += [c.aborted_at + STOP_DEADLINE_S for c in self.children.values() if c.aborted_at is not None]
        return max(0.0, min(waits) - time.monotonic()) if waits else None

    def watchdog_s(self, child: Child) -> float:
        return self.watchdog_override or child.spec.watchdog_s

    def _watchdog(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            alive = child.popen is not None and child.popen.poll() is None
            if child.aborted_at is not None:
                if alive and now - child.aborted_at > STOP_DEADLINE_S:  # a stopped process cannot take SIGABRT
                    self.say(f"  {child.spec.name} did not abort in {STOP_DEADLINE_S:g} s; killing it")
                    child.popen.kill()
                    # Nothing more is due: SIGKILL cannot be refused, and SIGCHLD wakes us to reap it. Until
                    # then (the kernel can take its time tearing a process down) it is still alive, and a
                    # deadline left here would spin the loop and say this again on every turn.
                    child.aborted_at = None
                continue
            overdue = child.ready_at is not None and now - child.pinged > self.watchdog_s(child)
            if overdue and child.restart_at is None and alive:
                self.say(f"  {child.spec.name} sent no WATCHDOG=1 for {self.watchdog_s(child):g} s; aborting it")
                child.popen.send_signal(signal.SIGABRT)
                child.ready_at, child.aborted_at = None, now  # reaped and restarted like a crash

    def _poll(self, timeout: float | None) -> None:
        fds = [c.notify for c in self.children.values()] + [self.wakeup]
        ready, _, _ = select.select(fds, [], [], timeout)
        for sock in ready:
            if sock is self.wakeup:
                self.wakeup.drain()
                continue
            child = next(c for c in self.children.values() if c.notify is sock)
            while True:
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    break
                for line in data.decode(errors="replace").splitlines():
                    if line == "READY=1" and child.ready_at is None:
                        child.ready_at = child.pinged = time.monotonic()
                    elif line == "WATCHDOG=1":
                        child.pinged = time.monotonic()

    def _reap(self) -> None:
        for child in self.children.values():
            if child.popen is None or child.restart_at is not None or child.popen.poll() is None:
                continue
            delay, child.backoff = backoff(child.backoff, time.monotonic() - child.started_at)
            child.restart_at = time.monotonic() + delay
            child.aborted_at = None  # gone: no SIGKILL is due, and no wake-up for one
            self.say(f"  {child.spec.name} exited with status {child.popen.returncode}; restarting in {delay:.1f} s")

    def _restart_due(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self.spawn(child)

    # --- stopping ----------------------------------------------------------------
    def shutdown(self) -> None:
        for child in reversed(list(self.children.values())):
            if child.popen is None or child.popen.poll() is not None:
                continue
            child.popen.send_signal(signal.SIGTERM)
            try:
                child.popen.wait(STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.say(f"  {child.spec.name} ignored SIGTERM for {STOP_DEADLINE_S:g} s; killing it")
                child.popen.kill()
                child.popen.wait()
        for child in self.children.values():
            child.notify.close()
            if os.path.exists(child.notify_path):
                os.unlink(child.notify_path)
        try:
            self.runtime.path("notify").rmdir()
        except OSError:
            pass  # not empty: someone else's socket is there; leave it
        self.wakeup.close()


def lens_command() -> str:
    """How to type `lens` in another terminal opened where this one is: `lens` when PATH finds this very
    one (an activated venv), else its path (`.venv/bin/lens` after `make run`, which activates nothing)."""
    script = Path(sys.executable).parent / "lens"
    found = shutil.which("lens")
    if not script.exists() or (found and os.path.samefile(found, script)):
        return "lens"
    relative = os.path.relpath(script)
    return str(script) if relative.startswith("..") else relative


class AlreadyUp(BusError):
    """Another `lens up`, or a broker, already runs on this runtime directory."""


def hold_runtime(runtime: Runtime):
    """Take ``up.lock`` in the runtime directory for this `lens up`'s life, or raise AlreadyUp.

    Two `lens up` started at the same moment must be decided before either touches the keys or the
    notify sockets, which the second would otherwise take from under the first. The file is removed
    when the holder stops; one that locked a file just removed by its holder finds the path gone or
    another inode there, and tries again, so only one can ever hold the lock the path names."""
    path = runtime.path(UP_LOCK)
    while True:
        lock = open(path, "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(lock)
            lock.close()
            raise AlreadyUp(f"lensos is already up on {runtime.dir} (lens up, pid {holder}); stop that one "
                            f"first (Ctrl-C where it runs, or kill {holder})") from None
        try:
            same = os.fstat(lock.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        lock.close()
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    if not runtime.broker_gone():  # `lens bus broker` by hand, or systemd's: its bus is not ours to run
        release_runtime(runtime, lock)
        raise AlreadyUp(f"a broker already serves {runtime.dir} (pid "
                        f"{runtime.lock_path.read_text().strip() or '?'}): lensos is running there already")
    return lock


def _holder(lock, wait_s: float = 1.0) -> str:
    """The pid the lock's holder wrote. Started at the same moment, the holder may have the lock and not yet
    its pid in the file: it writes it right after locking, so it is read again for a moment before '?'."""
    deadline = time.monotonic() + wait_s
    while True:
        lock.seek(0)
        holder = lock.read().strip()
        if holder or time.monotonic() > deadline:
            return holder or "?"
        time.sleep(0.01)


def release_runtime(runtime: Runtime, lock) -> None:
    runtime.path(UP_LOCK).unlink(missing_ok=True)  # still holding it: nobody else can be using this file
    lock.close()


def runnable(processes: list[Process], model: str | None = None) -> list[Process]:
    """Those of ``processes`` whose run condition holds under the policy ($LENS_POLICY_DIR's or the shipped)."""
    if not any(p.runs_if for p in processes):
        return list(processes)
    policy = load(model=model)
    return [p for p in processes if not p.runs_if or CONDITIONS[p.runs_if](policy)]


def up(processes: list[Process], runtime: Runtime, model: str | None = None,
       backends: dict[str, str] | None = None, watchdog_s: float | None = None) -> int:
    """Start ``processes``, those whose run condition holds: this is development, and every child is told so
    (a policy's "development" settings hold here, never under systemd)."""
    os.environ[DEVELOPMENT_ENV] = "1"
    processes = runnable(processes, model)
    held = hold_runtime(runtime)
    try:
        return _up(processes, runtime, model, backends, watchdog_s)
    finally:
        release_runtime(runtime, held)


def _up(processes: list[Process], runtime: Runtime, model: str | None, backends: dict[str, str] | None,
        watchdog_s: float | None) -> int:
    launcher = Launcher(processes, runtime, model=model, backends=backends, watchdog_s=watchdog_s)

    def on_signal(signum: int) -> None:
        # SIGCHLD only wakes the loop, which reaps and restarts; the others stop the system.
        if signum != signal.SIGCHLD:
            launcher.stopping = True

    restore = launcher.wakeup.on_signals(on_signal, (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD))
    launcher.say(f"lensos: starting {len(processes)} processes on {runtime.dir}")
    try:
        if launcher.boot():
            lens = lens_command()
            launcher.say(f"lensos is up. Try `{lens} status`, `{lens} say what time is it` or `{lens} bus sniff` "
                         f"in another terminal{'' if lens == 'lens' else ' (or `. .venv/bin/activate`, then `lens ...`)'}"
                         f"; Ctrl-C stops.")
            launcher.supervise()
            status = 0
        else:
            status = 0 if launcher.stopping else 1
    finally:
        launcher.say("lensos: stopping")
        launcher.shutdown()
        restore()
    launcher.say("lensos: stopped")
    return status
