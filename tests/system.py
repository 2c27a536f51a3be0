"""A whole lensos system for multi-process tests: broker, shell, ledd, powerd, camerad (sim backends),
and in-process apps that keep everything the shell, the LED, power and the camera say."""

from __future__ import annotations

import json
import signal

from bus import keys
from bus.node import Node
from bus.service import HEARTBEAT_S
from shell.daemon import AUDIT_FILE
from tests.checked import CheckedBus
from tests.conftest import DEADLINE_S, tuned_policies, wait_for

FAST = {
    "system.toml": {"boot": {"required": ["ledd", "powerd"], "deadline_s": 3.0},
                    "idle": {"dim_after_s": 600.0, "sleep_after_s": 600.0}},
    "privacy.toml": {"led": {"hold_s": 0.5}},
    # In-process test apps heartbeat only while the test polls their node: give them slack.
    # The SIGKILL test runs its owner as a process of its own, against the product's 1 s.
    "focus.toml": {"liveness": {"heartbeat_timeout_s": 5.0}},
    "hardware.toml": {"led": {"check_s": 0.1}},
}


class System:
    """broker + shell + ledd + powerd as real processes, and in-process apps that watch the bus."""

    def __init__(self, procs, runtime, tmp_path, changes=FAST, checked: bool = True):
        self.procs, self.runtime = procs, runtime
        self.state_dir = tmp_path / "state"
        self.env = procs.use_env(LENS_POLICY_DIR=str(tuned_policies(tmp_path, changes)),  # every child of
                                 LENS_STATE_DIR=str(self.state_dir))  # this test sees the same system
        self.apps: list[App] = []
        procs.cleanups.append(self.close)
        procs.start_broker()
        # The scenario's bus, recorded from here and checked against the privacy rules once the test passed.
        self.checked = CheckedBus(procs, tmp_path / "bus.mcap") if checked else None
        self.shell = procs.start_ready("-m", "shell")
        self.ledd = procs.start_ready("-m", "daemons.led")
        self.powerd = procs.start_ready("-m", "daemons.power")
        self.camerad = procs.start_ready("-m", "daemons.camera")
        self.watcher = self.app("watcher", heartbeat=None)  # closed with the other apps

    def app(self, name: str, heartbeat: float | None = HEARTBEAT_S, own_key: bool = False) -> "App":
        """An in-process app: the developer's key speaking as ``name``, or (own_key) a key of its own."""
        key = None
        if own_key:
            keys.generate(keys.app_keys_dir(self.runtime), [name])
            key = keys.app_keys_dir(self.runtime) / f"{name}.key_secret"
        app = App(Node(name, self.runtime, heartbeat=heartbeat, key=key))
        self.apps.append(app)
        self.declare(name, "camera", "mic")
        return app

    def declare(self, name: str, *permissions: str) -> None:
        """What a capturer the test plays may capture, as its manifest would say (tests/checked.py)."""
        if self.checked is not None:
            self.checked.declared.setdefault(name, set()).update(permissions)

    def close(self) -> None:
        """Every app's node, even when a test failed half-way."""
        for app in self.apps:
            app.close()

    def restart_shell(self, sig=signal.SIGKILL) -> None:
        self.procs.stop(self.shell, sig)
        self.shell = self.procs.start_ready("-m", "shell")

    @property
    def audit(self) -> list[dict]:
        path = self.state_dir / AUDIT_FILE
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class App:
    """A node that keeps, in arrival order, everything the shell and the LED say."""

    def __init__(self, node: Node):
        self.node = node
        self.log: list = []
        self.latest: dict[str, dict] = {}
        for prefix in ("shell.state", "shell.focus.notice", "shell.capture.notice", "led.state",
                       "privacy", "power", "camera", "audio"):
            node.subscribe(prefix, self._keep)
        node.start()

    def _keep(self, msg) -> None:
        self.log.append(msg)
        self.latest[msg.topic] = msg.payload

    def wait(self, condition, what: str, timeout: float = DEADLINE_S):
        return wait_for(condition, timeout, what, poll=lambda remaining: self.node.run_once(remaining))

    def wait_state(self, predicate, what: str, timeout: float = DEADLINE_S) -> dict:
        def check():
            state = self.latest.get("shell.state")
            return state if state is not None and predicate(state) else None
        return self.wait(check, what, timeout)

    def notices(self, topic: str, **match) -> list[dict]:
        return [m.payload for m in self.log if m.topic == topic
                and all(m.payload.get(k) == v for k, v in match.items())]

    def ask(self, topic: str, **fields) -> dict:
        return self.node.request(topic, timeout=DEADLINE_S, **fields)

    def take_camera(self, reason: str = "test", resource: str = "camera") -> dict:
        """Come to the foreground, ask for the camera (or mic), wait until capture is granted (LED lit)."""
        name = self.node.name
        self.ask("shell.foreground.request", app=name)
        self.ask("shell.focus.request", resource=resource, kind="exclusive", cls="foreground", reason=reason)
        return self.wait(lambda: self.notices("shell.capture.notice", owner=name, resource=resource,
                                              status="granted"), "capture granted")[0]

    def close(self) -> None:
        self.node.close()


def running(state: dict) -> bool:
    return state["running"]
