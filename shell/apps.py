"""The shell's side of apps: which may run on this model, which should, and which is in front.

The manifests say what an app is; this decides what happens to it and
appd does the processes. An app's state, as ``shell.apps`` shows it:

    hidden    this model cannot run it (no display, not in its models): never started, and why
    stopped   not running
    starting  asked of appd, not yet on the bus
    running   on the bus (heartbeating)
    stopping  asked to stop, still on the bus
    failed    its process exited with an error; appd starts it again after a backoff

An app started by name comes to the foreground once it is on the bus. When
nothing is in front (the foreground app stopped or died), the home app is;
an app in front that a just-started shell has not heard yet (its checkpoint
says who was in front when it crashed) keeps the front while appd runs it,
for up to COMING_S, since its beat is on its way;
an app that was in front when it crashed (appd starts it again, or appd
crashed and took every app with it) comes back to the front once it is back.
The app in front at a critical shutdown is started again at the next boot
(``bring_back``), and comes to the front once it is on the bus, home or not.
An app whose manifest says background = false is stopped when another comes
to the front. An app whose process appd saw exit has left, at once, whatever
it managed to say.
"""

from __future__ import annotations

import logging
from typing import Callable

from apps.sdk.manifest import hidden_reason, load_all
from bus.errors import BusError, RequestRefused
from bus.node import Node
from policies.loader import Policy
from shell.core import ShellCore

log = logging.getLogger(__name__)

ACTIONS = ("start", "stop")
# How long an app in front that this shell has not yet heard, and that appd runs, keeps the front: a shell
# killed and restarted hears the apps' next beats within their 5 s period, and within 5-40 s under TCG on a
# loaded board, where home (heard first) took the front from the camera app in a kill -9 check
COMING_S = 45.0


class Apps:
    def __init__(self, node: Node, policy: Policy, core: ShellCore, settle: Callable[[], None]):
        self.node, self.core, self.settle = node, core, settle
        self.manifests, self.errors = load_all()  # a wrong manifest is named and its app gets nothing
        for error in self.errors:
            log.error("shell: %s", error)
        self.home = policy.system.apps.home
        self.hidden = {app: why for app, m in self.manifests.items()
                       if (why := hidden_reason(m, policy.model, policy.has_display)) is not None}
        self.host = {"running": {}, "failed": {}, "wanted": []}  # appd's latest word
        self.starting: set[str] = set()
        self.stopping: set[str] = set()
        self.to_front: str | None = None  # started by name: in front once it is on the bus
        self.to_start: str | None = None  # to ask appd for as soon as it is there (bring_back)
        self.front: str | None = None  # the foreground app as last arranged
        self.heard: set[str] = set()  # every app this shell has heard on the bus
        self.since: float | None = None  # this shell's first arrangement

    def bring_back(self, app: str | None) -> None:
        """The app that was in front when the glasses shut down: started once appd is up (it may not be
        in the boot list), in front once it is on the bus."""
        if app is None or app == self.home or app not in self.manifests or app in self.hidden:
            return
        self.to_front = self.to_start = app
        if self.core.foreground == app:
            self.core.foreground = None  # not yet there: home may stand in until it is

    def on_host(self, payload: dict) -> None:
        self.host = payload
        self.starting -= set(payload["failed"])

    def request(self, sender: str, app: str, action: str, alive: set[str], now: float) -> dict:
        if action not in ACTIONS:
            raise RequestRefused(f"unknown action {action!r} ({', '.join(ACTIONS)})")
        if app not in self.manifests:
            broken = [e for e in self.errors if f"/{app}/manifest.toml" in e]
            raise RequestRefused(broken[0] if broken else
                                 f"no app {app!r} (installed: {', '.join(sorted(self.manifests)) or 'none'})")
        if app in self.hidden:
            raise RequestRefused(self.hidden[app])
        if action == "stop" and sender in self.manifests and sender not in (app, self.home):
            raise RequestRefused(f"{sender} may stop only itself, not {app}")
        if "appd" not in alive:
            raise RequestRefused("the app host (appd) is not running, so no app can be started or stopped")
        if action == "start":
            self.stopping.discard(app)
            if app in alive:
                self.core.set_foreground(app, now)
                return {"status": "foreground"}
            self.starting.add(app)
            self.to_front, status = app, "starting"
        else:
            self.starting.discard(app)
            if self.to_front == app:
                self.to_front = None
            running = app in alive or app in self.host["running"]
            if running:
                self.stopping.add(app)
            status = "stopping" if running else "stopped"  # appd hears it even so: a failed one stays down
        self.node.request_async("appd.process.request", self._answered(app), app=app, action=action)
        return {"status": status}

    def _answered(self, app: str) -> Callable:
        def done(result: dict | None, error: BusError | None) -> None:
            if error is not None:
                log.warning("shell: appd did not do it for %s: %s", app, error)
                self.starting.discard(app)
                self.stopping.discard(app)
                self.settle()
        return done

    def arrange(self, alive: set[str], now: float) -> None:
        """Before the state goes out: the started app in front once it is there, else home when nobody is."""
        self.starting -= alive
        self.heard |= alive
        self.since = now if self.since is None else self.since
        self.stopping &= alive | set(self.host["running"])
        if self.to_start is not None and "appd" in alive:
            app, self.to_start = self.to_start, None
            if app not in alive:
                self.starting.add(app)
                self.node.request_async("appd.process.request", self._answered(app), app=app, action="start")
        if self.to_front in alive:
            self.core.set_foreground(self.to_front, now)
            self.to_front = None
        front = self.core.foreground
        if front is None and self.front not in (None, self.home) and self.front not in alive \
                and self.front in self.host["wanted"] and self.to_front is None:
            self.to_front = self.front  # it crashed (appd starts it again): back in front once it is there
        if (front is None or front not in alive and not self._coming(front, now)) and self.home in alive:
            self.core.set_foreground(self.home, now)
        left, self.front = self.front, self.core.foreground
        manifest = self.manifests.get(left)
        if left != self.front and left in alive and manifest is not None and not manifest.background:
            # Its manifest says it does not run behind another app: it is stopped (and saves, on_stop).
            self.stopping.add(left)
            self.node.request_async("appd.process.request", self._answered(left), app=left, action="stop")

    def _coming(self, app: str, now: float) -> bool:
        """In front, not heard by this shell yet, run by appd, and this shell is new: its beat is on its way."""
        return app not in self.heard and app in self.host["running"] and now - self.since < COMING_S

    def state(self, alive: set[str]) -> dict:
        apps = {}
        for app, manifest in sorted(self.manifests.items()):
            state, why = self._state_of(app, alive)
            apps[app] = {"name": manifest.name, "state": state, "why": why, "permissions": list(manifest.permissions)}
        return {"apps": apps, "foreground": self.core.foreground, "errors": list(self.errors)}

    def _state_of(self, app: str, alive: set[str]) -> tuple[str, str]:
        if app in self.hidden:
            return "hidden", self.hidden[app]
        if app in alive:
            return ("stopping", "asked to stop") if app in self.stopping else ("running", "")
        if app in self.host["failed"]:
            return "failed", self.host["failed"][app]
        if app in self.starting or app in self.host["running"]:
            return "starting", ""
        return "stopped", ""
