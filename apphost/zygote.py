"""The apps' zygote: a warm parent that imported the SDK once and forks each app, as Android's zygote does.

Why: an app is a small Python process, and almost all of its memory is its own: the interpreter's heap and
the code objects of what it imports (the SDK, the bus, msgpack, pyzmq), which no two processes started
afresh share. Forked from a parent that imported them, an app shares those pages with its siblings until
it writes to them (bench/system.py reports what each app costs).

What it keeps of the old way (appd's ``Popen`` of ``python APPS_DIR/<id>``): each app in a session of its
own, as its own user and groups (``apphost.appusers``), without capabilities, never gaining a privilege
(``no_new_privs``), dying with its parent, with its own environment, its key on an inherited pipe and no
other descriptor, ``ps`` showing ``python APPS_DIR/<id>``, and the app's directory run as ``__main__``
for good (pickling, late imports and atexit see it as after ``python DIR``). What it does not give, as
Android's does not: each app its own address-space layout, stack canary, glibc pointer guard and str hash
seed (an app can learn its siblings'; the apps are Python, and nothing secret is in the zygote's memory).

The zygote is started by appd (exec'ed afresh: no ZeroMQ context, no key, nothing of appd's memory), with
appd's capabilities to set each app's user and nothing else; it imports the SDK and never an app's own code,
which runs only in the child, after its user changed. It takes appd's asks on a socket pair, one at a time:

    {"app", "dir", "env", "uid", "gid", "groups"} + the key's descriptor -> {"pid"} or {"error"}
    {"wait": pid}                                                       -> {"status"} (Popen's returncode)

Its children are its own, so appd asks it how one ended once the child's pidfd said it had. It dies with
appd, and its apps with it; appd exits if it dies (to be restarted with the apps it had).
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable

from apphost.appusers import capabilities, confine
from manager.launcher import die_with_parent

MAX_ASK = 1 << 20  # an app's environment and paths, as JSON
STOP_DEADLINE_S = 3.0  # for the zygote to end once appd closed its socket
TITLE_ROOM = 1024  # bytes of the command line kept for the apps' titles (ps shows `python APPS_DIR/<id>`)
_PR_SET_DUMPABLE = 4
_CAPABILITY_VERSION_3 = 0x20080522

# What every app imports: loaded here once, shared by all of them (it brings the rest of the SDK, the bus,
# pyzmq and msgpack).
PRELOAD = ("apps.sdk.app",)


class Zygote:
    """appd's end: start the zygote, ask it for an app, ask it how one ended.

    appd's loop never waits for an answer. An ask goes out when the one before it was answered (the zygote
    takes them one at a time), and its answer is read when the socket is readable (appd watches ``fd``) and
    handed to the ask's callback. Why: the zygote imports the SDK before it reads the first ask, seconds on a
    loaded board (appd's own imports took 15 s in a CI boot). An appd blocked in that wait served nothing
    else (the shell's asks, the apps' deaths) and sent no watchdog ping: the likely cause of the appd restarts
    (NRestarts 1) seen in 2 of 4 CI boots, whose journal was not kept; the boot test's units check now keeps it."""

    def __init__(self, env: dict[str, str]):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "apphost.zygote", str(theirs.fileno()), str(os.getpid()), " " * TITLE_ROOM],
                env=env, cwd="/", pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        self.pidfd = os.pidfd_open(self.popen.pid)  # readable when it is gone (appd watches it)
        self.fd = self.sock.fileno()  # readable when an answer is in
        self._queue: deque[tuple[bytes, int | None, Callable[[dict], None]]] = deque()
        self._answer: Callable[[dict], None] | None = None  # the callback of the ask in flight

    def spawn(self, ask: dict, key_fd: int, then: Callable[[dict], None]) -> None:
        """Ask for an app; ``then({"pid"})`` or ``then({"error"})`` once it is set up. ``key_fd`` is this
        object's from now on: closed once it went to the zygote."""
        self._ask(json.dumps(ask).encode(), key_fd, then)

    def status(self, pid: int, then: Callable[[int | None], None]) -> None:
        """How the child ``pid`` ended (Popen's returncode), once its pidfd said so; None while it runs."""
        self._ask(json.dumps({"wait": pid}).encode(), None, lambda reply: then(reply["status"]))

    def readable(self) -> bool:
        """appd's loop calls this when ``fd`` is readable: the answer to the ask in flight goes to its
        callback, and the next ask goes out. False: the zygote is gone (its socket's end)."""
        data = self.sock.recv(MAX_ASK)
        if not data or self._answer is None:
            return False
        answer, self._answer = self._answer, None
        if self._queue:
            self._send()
        answer(json.loads(data))
        return True

    def _ask(self, data: bytes, fd: int | None, then: Callable[[dict], None]) -> None:
        self._queue.append((data, fd, then))
        if self._answer is None:
            self._send()

    def _send(self) -> None:
        data, fd, then = self._queue.popleft()
        try:
            socket.send_fds(self.sock, [data], [] if fd is None else [fd])
        except OSError:
            pass  # the zygote is gone: its pidfd says so in the same loop, and appd follows it
        finally:
            if fd is not None:
                os.close(fd)
        self._answer = then

    def close(self) -> None:
        for _, fd, _ in self._queue:
            if fd is not None:
                os.close(fd)
        self._queue.clear()
        self.sock.close()  # it ends at the end of its socket
        try:
            self.popen.wait(STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        os.close(self.pidfd)


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[0]))
    # It holds nothing to save: killed outright with appd, and deaf to the SIGTERM systemd sends the whole unit
    # on a stop (appd stops the apps, then closes this one's socket: it must be there to say how each ended).
    die_with_parent(signal.SIGKILL)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.getppid() != int(argv[1]):
        return 1  # appd died before the death signal was armed: nobody would stop these apps
    set_title([sys.executable, "-m", "apphost.zygote"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is appd's to act on; this one ends with it
    if sys.path and sys.path[0] == os.getcwd():
        del sys.path[0]  # `-m`'s working directory ("/"): an app's path starts with its own directory, as before
    for module in PRELOAD:
        __import__(module)
    gc.freeze()  # what the imports made is never collected: the collector does not write to those pages
    while True:
        data, fds, _, _ = socket.recv_fds(sock, MAX_ASK, 1)
        if not data:
            return 0  # appd closed its end (or is gone): the apps go with this process
        ask = json.loads(data)
        if "wait" in ask:
            reply = {"status": ended(ask["wait"])}
        else:
            reply = fork(sock, ask, fds)  # the child never comes back here: it runs the app and exits
        sock.send(json.dumps(reply).encode())


def ended(pid: int) -> int | None:
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if done else None


def fork(sock: socket.socket, ask: dict, fds: list[int]) -> dict:
    """Fork the app; its pid once it is set up (its user, its capabilities gone: what appd says of it from
    then on is true), or why it could not be, as Popen's exec error pipe does."""
    zygote = os.getpid()
    said_r, said_w = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        for fd in (*fds, said_r, said_w):
            os.close(fd)
        return {"error": f"fork: {exc}"}
    if pid == 0:
        try:
            os.close(said_r)
            sock.detach()  # closed below with every other descriptor, and never again by its object
            become(ask, fds[0] if fds else None, zygote, said_w)
            os.write(said_w, b"ok")
            os.close(said_w)
        except BaseException as exc:  # noqa: BLE001: never run an app half set up (its user, its capabilities)
            os.write(said_w, f"{type(exc).__name__}: {exc}".encode()[:4096])
            os._exit(127)
        run(ask["dir"])
    for fd in (*fds, said_w):
        os.close(fd)
    with open(said_r, "rb") as said:
        words = said.read()  # until the child wrote its word and closed it, or died
    if words != b"ok":
        os.waitpid(pid, 0)
        return {"error": f"setting up {ask['app']}: {words.decode(errors='replace') or 'it died'}"}
    return {"pid": pid}


def become(ask: dict, key_fd: int | None, zygote: int, said: int) -> None:
    """In the child: what Popen's preexec and the exec did for an app started afresh."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as a fresh interpreter has them
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    keep = sorted({0, 1, 2, said} | ({key_fd} if key_fd is not None else set()))
    for low, high in zip(keep, [*keep[1:], os.sysconf("SC_OPEN_MAX")]):
        os.closerange(low + 1, high)  # the zygote's socket and anything else: only stdio and the key
    if ask["uid"] is not None:
        os.setgroups(ask["groups"])
        os.setresgid(ask["gid"], ask["gid"], ask["gid"])
        os.setresuid(ask["uid"], ask["uid"], ask["uid"])
    if os.geteuid() != 0:
        drop_capabilities()  # an exec would have: appd's, which this process has, are not the app's
    confine(zygote)
    ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)  # as after an exec: /proc/PID is its user's
    os.chdir("/")
    env = dict(ask["env"])
    if key_fd is not None:
        env["LENS_KEY_FD"] = str(key_fd)
    os.environ.clear()
    os.environ.update(env)
    set_title([sys.executable, ask["dir"]])


def run(directory: str) -> None:
    """Run the app's directory as ``python DIR`` does: DIR first on the path and its __main__.py as the
    ``__main__`` module, both for good (runpy.run_path would put them back as soon as the module's body
    returned, before its threads and atexit ran). Its end is this process's: SystemExit or an uncaught
    exception leaves through the zygote's frames to the interpreter's own exit (atexit, threads joined)."""
    sys.argv = [directory]
    sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location("__main__", os.path.join(directory, "__main__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["__main__"] = module
    spec.loader.exec_module(module)
    raise SystemExit(0)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """No capability left in any set (the bounding set needs one to change; no_new_privs closes that door).
    capset only when there is one: a unit without CAP_SETUID is not given the call (manager/units.py)."""
    if not any(capabilities().values()):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.capset(ctypes.byref(_CapHeader(_CAPABILITY_VERSION_3, 0)), (_CapData * 2)()) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    left = capabilities()
    if any(left.values()):
        raise PermissionError(f"capabilities left after dropping them: {left}")


def set_title(words: list[str]) -> None:
    """What ps and /proc/PID/cmdline show, written over this process's own argument area (the room the
    zygote's last argument made), as setproctitle does: the title, a NUL, and the rest not NUL, which the
    kernel reads as "a title was set" and shows up to its NUL."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start and arg_end, stat's 48th and 49th
    except (OSError, IndexError, ValueError):
        return  # a title is for people reading ps: never a reason not to start an app
    if not 0 < start < end:
        return  # not shown to this process: nothing known to write over
    title = " ".join(words).encode()[: end - start - 2] + b"\0"
    ctypes.memmove(start, title + b" " * (end - start - len(title)), end - start)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
