"""appd: the app host. It starts, watches and stops app processes, on the shell's word only.

The shell decides which app may run and which is in front (manifests,
model, power); appd does the processes, so the shell keeps no children and
apps never run inside the shell's sandbox (they would see its state and its key). Each app is
``python APPS_DIR/<id>`` (its __main__.py), forked by the apps' zygote (apphost.zygote: a warm parent
that imported the SDK once, so the apps share its pages) in its own session, as a user of its own
(apphost.appusers); it dies with the zygote, which dies with appd, and is watched through a pidfd in the
node's own poll (no SIGCHLD handler, no polling timer). An app that crashes is started again after a
backoff; one that exits 0 (stopped, or done) stays stopped. If the zygote dies, appd exits, to be
restarted with the apps it had (below).

What should run is latched in ``appd.state``: a restarted appd reads its
predecessor's word and starts those apps again; a fresh boot starts
``policies/system.toml [apps] boot``. Each app has a state directory of its
own, ``<state dir>/apps/<id>`` (its ``$LENS_STATE_DIR``, its user's alone),
where it keeps what must outlive its process (``bus.kept``): an app started
again, after its own crash or appd's, carries on where it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from apps.sdk.manifest import Manifest, hidden_reason, load_all
from bus import keys, service
from bus.envelope import Message
from bus.errors import RequestRefused
from bus.node import Node
from bus.runtime import state_dir
from policies.checker import PolicyError
from policies.loader import load
from policies.names import unknown_names
from apphost.appusers import AppUsers
from apphost.zygote import Zygote
from manager.launcher import BACKOFF_FIRST_S, backoff
from manager.processes import by_module

ROW = by_module("apphost.appd")  # its name and command line, from its row of the process table

STOP_DEADLINE_S = 3.0  # SIGTERM, then SIGKILL
log = logging.getLogger(ROW.name)


@dataclass
class Child:
    pid: int  # the zygote's child: appd signals it through its pidfd and asks the zygote how it ended
    pidfd: int
    started: float
    stopping: bool = False


class Appd:
    def __init__(self, node: Node, manifests: dict[str, Manifest], boot: list[str], model: str,
                 has_display: bool, users: AppUsers, state: Path | None = None):
        self.node, self.users = node, users
        self.state = state  # each app's own directory is under it
        self.manifests = manifests
        self.boot = boot
        self.model, self.has_display = model, has_display
        self.children: dict[str, Child] = {}
        self.wanted: list[str] = []
        self.failed: dict[str, str] = {}
        self.backoff: dict[str, float] = {}
        self.restored: list[str] | None = None
        self.starting: set[str] = set()  # asked of the zygote, not answered yet
        self.zygote = Zygote(self.app_env())
        node.watch(self.zygote.pidfd, self._zygote_gone)
        node.watch(self.zygote.fd, self._zygote_said)
        node.serve("appd.process.request", self.on_request)
        node.subscribe("appd.state", self.on_own_state)

    def on_own_state(self, msg: Message) -> None:
        if msg.incarnation != self.node.incarnation and self.restored is None:
            self.restored = list(msg.payload["wanted"])  # only the previous appd's word, and only once

    def begin(self) -> None:
        """After the node started (the latched word is in): start what the last appd ran, or the boot apps."""
        self.forget_keys()
        for app in self.restored if self.restored is not None else self.boot:
            if app in self.manifests and hidden_reason(self.manifests[app], self.model, self.has_display) is None:
                self.want(app)
        self.publish()

    def on_request(self, msg: Message) -> dict:
        # Only the shell asks (the table's askers, held at the broker): an app's ask never arrives.
        app, action = msg.payload["app"], msg.payload["action"]
        if app not in self.manifests:
            raise RequestRefused(f"no app {app!r} is installed")
        if action == "start":
            self.want(app)
        elif action == "stop":
            self.unwant(app)
        else:
            raise RequestRefused(f"unknown action {action!r} (start, stop)")
        self.publish()
        child = self.children.get(app)
        return {"pid": child.pid if child and not child.stopping else None}

    def want(self, app: str) -> None:
        if app not in self.wanted:
            self.wanted.append(app)
        self.failed.pop(app, None)
        if app not in self.children and app not in self.starting:
            self.spawn(app)

    def unwant(self, app: str) -> None:
        if app in self.wanted:
            self.wanted.remove(app)
        child = self.children.get(app)
        if child is not None and not child.stopping:
            self._stop(app, child)  # one still being started is stopped once it is (_spawned)

    def _stop(self, app: str, child: Child) -> None:
        child.stopping = True
        _signal(child, signal.SIGTERM)
        self.node.after(STOP_DEADLINE_S, lambda: self._kill_if_alive(app, child))

    def app_env(self) -> dict[str, str]:
        """Every app's environment (and the zygote's, which imports what they import under it)."""
        env = dict(os.environ, PYTHONUNBUFFERED="1", LENS_MODEL=self.model,
                   LENS_RUNTIME_DIR=str(self.node.runtime.dir))
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LENS_KEY", "CREDENTIALS_DIRECTORY",
                     "LENS_STATE_DIR", "STATE_DIRECTORY"):
            env.pop(name, None)  # appd's, not the app's
        return env

    def spawn(self, app: str) -> None:
        env = self.app_env()
        # A key of its own, new at each start (the last one is refused from now on): its identity on the bus.
        # The broker (group lensos) reads the public half in appkeys; the secret half goes down a pipe, so
        # no file holds it for another app to read. The broker's public key comes along: an app, a user
        # of its own, may not read the keys directory.
        uid = self.users.take(app)  # first: with no user left, no key is minted for nobody
        secret = keys.mint(keys.app_keys_dir(self.node.runtime), app)
        env["LENS_BROKER_KEY"] = self.node.broker_key.decode()
        read_end, write_end = os.pipe()
        os.write(write_end, secret)  # a few hundred bytes: far below a pipe's buffer, never blocks
        os.close(write_end)
        env["LENS_KEY_NAME"] = app  # and LENS_KEY_FD, the pipe's number in the app (the zygote's to say)
        # The app's directory, run as a script: the shipped apps and those of $LENS_APPS_DIR alike.
        try:
            if self.state is not None:
                env["LENS_STATE_DIR"] = str(self.app_state_dir(app, uid))
            ask = {"app": app, "dir": str(self.manifests[app].path.parent), "env": env, **self.users.identity(uid)}
        except BaseException:
            os.close(read_end)
            self._forget(app)
            raise
        self.starting.add(app)
        self.zygote.spawn(ask, read_end, lambda reply: self._spawned(app, reply))  # it closes read_end

    def _spawned(self, app: str, reply: dict) -> None:
        """The zygote's answer to a start: the app runs, watched through its pidfd, or it failed, said why."""
        self.starting.discard(app)
        pid = reply.get("pid")
        if pid is not None:
            try:
                pidfd = os.pidfd_open(pid)  # a zombie until the zygote is asked how it ended: never another's pid
            except OSError as exc:
                os.kill(pid, signal.SIGKILL)  # out of descriptors: an app appd cannot watch or stop must not run
                self.zygote.status(pid, lambda _: None)  # and reaped
                pid, reply = None, {"error": f"watching it: {exc}"}
        if pid is None:
            self._forget(app)
            self.failed[app] = f"could not be started: {reply['error']}"
            log.error("%s %s", app, self.failed[app])
            self.publish()
            return
        child = self.children[app] = Child(pid, pidfd, time.monotonic())
        self.node.watch(pidfd, lambda: self.reap(app))
        if app not in self.wanted:  # stopped while the zygote was starting it
            self._stop(app, child)
        self.publish()

    def _forget(self, app: str) -> None:
        keys.forget(keys.app_keys_dir(self.node.runtime), app)
        self.users.release(app)

    def app_state_dir(self, app: str, uid: int | None) -> Path:
        """``<state dir>/apps/<app>``, 0700 and the app's user's: no other app may read what it keeps. The
        directories above it are opened to its user for passing through only (o+x: nothing there is listed,
        and every file keeps its own 0600)."""
        directory = self.state / "apps" / app
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if uid is not None:
            for above in (self.state, self.state / "apps"):
                mode = stat.S_IMODE(os.stat(above).st_mode)
                if not mode & stat.S_IXOTH:
                    os.chmod(above, mode | stat.S_IXOTH)
            info = os.stat(directory)
            if (info.st_uid, info.st_gid) != (uid, uid):
                for path in [directory, *directory.rglob("*")]:  # the same user at each start; not after a re-range
                    os.chown(path, uid, uid, follow_symlinks=False)
        return directory

    def reap(self, app: str) -> None:
        child = self.children.pop(app)
        self._forget(app)
        self.node.unwatch(child.pidfd)
        os.close(child.pidfd)
        self.zygote.status(child.pid, lambda status: self._ended(app, child, status))
        self.publish()  # gone now; how it ended (and what follows) once the zygote says

    def _ended(self, app: str, child: Child, status: int | None) -> None:
        if status is None:  # its pidfd said it ended; the zygote has not seen it end: count it a crash
            status = -signal.SIGKILL
            log.error("%s (pid %d) ended, but the zygote could not say how", app, child.pid)
        if child.stopping or status == 0:  # stopped, or it finished by itself: done, not crashed
            if app in self.wanted and not child.stopping:
                self.wanted.remove(app)
            self.publish()
            return
        lived = time.monotonic() - child.started
        delay, self.backoff[app] = backoff(self.backoff.get(app, BACKOFF_FIRST_S), lived)
        why = f"signal {-status}" if status < 0 else f"status {status}"
        self.failed[app] = f"exited with {why}; starting again in {delay:.1f} s"
        log.warning("%s %s", app, self.failed[app])
        self.node.after(delay, lambda: self._respawn(app))
        self.publish()

    def _respawn(self, app: str) -> None:
        if app in self.wanted and app not in self.children and app not in self.starting:
            self.failed.pop(app, None)  # running again; failed again if it crashes again
            self.spawn(app)
            self.publish()

    def _kill_if_alive(self, app: str, child: Child) -> None:
        if self.children.get(app) is child:  # not reaped yet
            _signal(child, signal.SIGKILL)

    def _zygote_said(self) -> None:
        if not self.zygote.readable():
            self.node.unwatch(self.zygote.fd)  # its end: the pidfd says it is gone, in this same loop

    def _zygote_gone(self) -> None:
        service.fatal(f"the apps' zygote exited (status {self.zygote.popen.wait()}); its apps went with it")

    def publish(self) -> None:
        running = {app: c.pid for app, c in self.children.items() if not c.stopping}
        self.node.publish("appd.state", running=running, failed=dict(self.failed), wanted=list(self.wanted),
                          users=dict(self.users.taken), shared_user=self.users.shared_because)

    def close(self) -> None:
        for child in self.children.values():
            _signal(child, signal.SIGTERM)
        deadline = time.monotonic() + STOP_DEADLINE_S
        for child in self.children.values():
            if not _ended(child, deadline - time.monotonic()):
                _signal(child, signal.SIGKILL)
                _ended(child, STOP_DEADLINE_S)
            os.close(child.pidfd)
        self.node.unwatch(self.zygote.pidfd)
        self.node.unwatch(self.zygote.fd)
        self.zygote.close()
        self.forget_keys()

    def forget_keys(self) -> None:
        """No app's key outlives it; the apps of an appd that died went with it, so theirs go at start too."""
        directory = keys.app_keys_dir(self.node.runtime)
        for path in directory.glob("*.key") if directory.is_dir() else ():
            keys.forget(directory, path.name.removesuffix(".key"))


def _signal(child: Child, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended already
        signal.pidfd_send_signal(child.pidfd, signum)


def _ended(child: Child, timeout: float) -> bool:
    poll = select.poll()
    poll.register(child.pidfd, select.POLLIN)
    return bool(poll.poll(max(0.0, timeout) * 1000))


def main(argv: list[str] | None = None) -> int:
    args = service.arguments(ROW.module, __doc__, state_dir="each app's own state directory, apps/<id>"
                             ).parse_args(argv)
    with service.exits_on(ROW.name, PolicyError):
        policy = load(args.policy_dir, args.model)
    manifests, errors = load_all()
    with service.node(ROW.name, args) as node:
        for error in unknown_names(policy):
            log.warning("%s", error)
        for error in errors:
            log.error("%s (that app is not started)", error)
        apps = policy.system.apps
        users = AppUsers(apps.first_uid, apps.uids, node.runtime.dir)
        if not users.isolated:  # the usual development setup, not a fault: said once, with the way out
            log.info("apps share appd's user here, as in development: %s. On the board each app is a user of "
                     "its own; to have that here, %s", users.shared_because, users.remedy)
        appd = Appd(node, manifests, apps.boot, policy.model, policy.has_display, users,
                    state_dir(args.state_dir, node.runtime.dir))
        node.start()
        appd.begin()
        try:
            node.run()
        finally:
            appd.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
