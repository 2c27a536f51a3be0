"""Shared fixtures: a short runtime dir per test, a real broker process, nodes and child processes
that are always cleaned up, and waiting on conditions with generous deadlines (never fixed sleeps)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

import pytest

# The tests are a developer's, wherever they run: not a product image's unit, whose bus knows no bench or demo
# topic (bus.development). Before any bus import.
os.environ.pop("LENS_IMAGE", None)

from bus import waiting  # noqa: E402
from bus.node import Node
from bus.runtime import Runtime

REPO = Path(__file__).resolve().parent.parent
DEADLINE_S = 20.0  # generous: this machine is noisy, and a deadline only bounds a failure


def wait_for(condition, timeout: float = DEADLINE_S, what: str = "condition", poll=None):
    """Wait until ``condition()`` is truthy; ``poll(remaining)`` drives a node loop meanwhile."""
    return waiting.wait_for(condition, timeout, what, poll, error=AssertionError)


# libjack, which Debian's PortAudio links, makes its metadata database /dev/shm/jack_db-<uid> in every process
# that initializes PortAudio (sounddevice does at import: the JACK host API opens a client), and only a JACK
# server removes it. No setting moves or stops it, so the suite removes what it made.
JACK_DB = Path(f"/dev/shm/jack_db-{os.getuid()}")


@pytest.fixture(autouse=True, scope="session")
def leaves_no_jack_db():
    there_before = JACK_DB.exists()  # a JACK user's own: not ours to touch
    yield
    if not there_before:
        shutil.rmtree(JACK_DB, ignore_errors=True)


@pytest.fixture
def runtime():
    # ipc:// paths are limited to 107 bytes: pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix="lt-", dir="/tmp")
    os.chmod(path, 0o700)
    yield Runtime.resolve(path)
    shutil.rmtree(path, ignore_errors=True)


class Processes:
    """Child processes of one test; all are stopped at teardown, whatever happened."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.children: list[subprocess.Popen] = []
        # Saved state and the audit log: never the developer's own (~/.local/state/lensos).
        self.state_dir = Path(tempfile.mkdtemp(prefix="ls-", dir="/tmp"))
        self.cleanups: list = []  # callables run at teardown before the children stop (nodes to close)
        self.checks: list = []  # callables that judge a passed test at its end (tests/checked.py): may fail it
        self.logs: list[tuple[tuple[str, ...], Path]] = []  # the stderr of each started-ready child

    def env(self, **extra) -> dict:
        env = dict(os.environ, LENS_RUNTIME_DIR=str(self.runtime.dir), LENS_STATE_DIR=str(self.state_dir),
                   PYTHONUNBUFFERED="1")
        env.pop("NOTIFY_SOCKET", None)
        env.update(extra)
        return env

    def use_env(self, **extra) -> dict:
        """Every child started from now on (processes, `lens` commands) also gets ``extra``."""
        fixed = self.env(**extra)
        self.env = lambda **more: dict(fixed, **more)
        return fixed

    def start(self, *args: str, **popen) -> subprocess.Popen:
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.PIPE)
        popen.setdefault("text", True)
        child = subprocess.Popen([sys.executable, *args], cwd=REPO, env=popen.pop("env", self.env()), **popen)
        self.children.append(child)
        return child

    def lens(self, *args: str, **popen) -> subprocess.Popen:
        return self.start("-m", "cli.main", *args, **popen)

    def run_lens(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def start_ready(self, *args: str, timeout: float = DEADLINE_S, env_extra: dict | None = None) -> subprocess.Popen:
        """Start ``python ARGS`` (with ``env_extra`` in its environment) and wait for its READY=1 on a real
        notify socket."""
        path = str(self.runtime.path(f"notify-{len(self.children)}"))
        log = self.state_dir / f"child-{len(self.children)}.log"
        self.logs.append((args, log))
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, open(log, "w") as stderr:
            sock.bind(path)
            sock.settimeout(timeout)
            child = self.start(*args, env=self.env(NOTIFY_SOCKET=path, **(env_extra or {})), stdout=subprocess.DEVNULL,
                               stderr=stderr)
            try:
                while b"READY=1" not in sock.recv(4096).split(b"\n"):
                    pass
            except socket.timeout:
                raise AssertionError(f"{args} sent no READY=1 within {timeout:g} s") from None
            finally:
                os.unlink(path)
        return child

    def start_broker(self) -> subprocess.Popen:
        return self.start_ready("-m", "broker")

    def stop(self, child: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 10) -> int:
        if child.poll() is None:
            child.send_signal(sig)
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        return child.returncode

    def cleanup(self, failed: bool = False) -> None:
        for callback in self.cleanups:
            callback()
        for child in reversed(self.children):
            self.stop(child, timeout=5)
            for stream in (child.stdout, child.stderr):
                if stream:
                    stream.close()
        if failed:  # what each process said: the clue a failure in CI leaves behind
            self.print_logs()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def print_logs(self, lines: int = 40) -> None:
        for args, log in self.logs:
            text = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
            print(f"--- {' '.join(args)}: last {len(text)} lines of stderr", *text, sep="\n")


def pytest_collection_modifyitems(session, config, items):
    """The boot test's VM starts now, in the background, and its assertions run last (tests/board/boot.py)."""
    board = [item for item in items if item.nodeid.startswith("tests/board/")]
    if not board:
        return
    items[:] = [item for item in items if not item.nodeid.startswith("tests/board/")] + board
    from tests.board import boot
    if boot.why_not() is None and boot.CURRENT is None:
        boot.CURRENT = boot.Background(Path(tempfile.mkdtemp(prefix="lensos-board-")))


def pytest_sessionfinish(session, exitstatus):
    from tests.board import boot
    if boot.CURRENT is not None:
        boot.CURRENT.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.failed_call = report.failed  # for fixtures' teardown: print what helps explain it
    return report


@pytest.fixture
def procs(runtime, request):
    processes = Processes(runtime)
    yield processes
    failed = getattr(request.node, "failed_call", False)
    try:
        for check in processes.checks if not failed else ():
            check()
    finally:
        processes.cleanup(failed=failed)


@pytest.fixture
def broker(procs):
    return procs.start_broker()


@pytest.fixture
def nodes(runtime):
    made: list[Node] = []

    def make(name: str, **kwargs) -> Node:
        node = Node(name, runtime, **kwargs)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


# stream -> queue of its lines; weak keys, because an id() is reused once a stream is collected
_readers: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def wait_line(stream, contains: str, timeout: float = DEADLINE_S) -> str:
    """Read a child's pipe until a line contains ``contains``.

    A thread per stream reads lines into a queue: select() on a buffered text
    stream misses lines already sitting in Python's buffer."""
    import queue
    import threading

    lines = _readers.get(stream)
    if lines is None:
        lines = _readers[stream] = queue.Queue()

        def pump():
            for line in stream:
                lines.put(line)
            lines.put(None)
        threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            raise AssertionError(f"no line containing {contains!r} within {timeout:g} s; saw {seen}") from None
        if line is None:
            raise AssertionError(f"stream closed before a line containing {contains!r}; saw {seen}")
        if contains in line:
            return line
        seen.append(line)


def lines_so_far(stream, last: int = 40) -> list[str]:
    """The last lines a wait_line reader has collected from ``stream`` until now, without waiting (kept
    for the next wait_line)."""
    import queue

    lines, got = _readers.get(stream), []
    if lines is None:
        return got
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            break
        if line is None:
            lines.put(None)
            break
        got.append(line)
    return [line.rstrip("\n") for line in got[-last:]]


def drain_lines(stream) -> str:
    """What a wait_line reader thread has collected and will collect until the stream closes."""
    lines = _readers.pop(stream)
    out = []
    while (line := lines.get(timeout=DEADLINE_S)) is not None:
        out.append(line)
    return "".join(out)


def children_of(pid: int, contains: str = "") -> list[int]:
    """Live child processes of ``pid`` whose command line contains ``contains``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and contains in cmdline:
            found.append(int(entry.name))
    return found


def read_json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def tuned_policies(directory: Path, changes: dict[str, dict[str, dict[str, object]]]) -> Path:
    """A copy of policies/ in ``directory`` with some values changed: {file: {section: {key: value}}}
    ("+key" adds a key to an open table).

    Values are written as TOML (json.dumps is valid TOML for numbers, strings, booleans and lists)."""
    import re

    target = directory / "policies"
    shutil.copytree(REPO / "policies", target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    for name, sections in changes.items():
        path = target / name
        text = path.read_text()
        for section, keys in sections.items():
            head = re.search(rf"^\[{re.escape(section)}\]\s*$", text, re.M)
            assert head, f"no [{section}] in {name}"
            end = re.search(r"^\[", text[head.end():], re.M)
            stop = head.end() + (end.start() if end else len(text) - head.end())
            body = text[head.end():stop]
            for key, value in keys.items():
                if key.startswith("+"):  # a key added to an open table ([roles], [priorities])
                    body = body.rstrip("\n") + f"\n{key[1:]} = {json.dumps(value)}\n\n"
                    continue
                body, n = re.subn(rf"^{re.escape(key)}\s*=.*$", f"{key} = {json.dumps(value)}", body, flags=re.M)
                assert n == 1, f"no {key} in [{section}] of {name}"
            text = text[:head.end()] + body + text[stop:]
        path.write_text(text)
    return target
