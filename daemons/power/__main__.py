"""powerd: the two swappable batteries and the bridge, published as power.state within 50 ms.

Reads its backend (sysfs on the glasses, a load-driven simulation in
development), publishes ``power.state`` (latched) whenever something a
reader would act on changed, and ``power.event`` for removed, inserted,
low, critical and bridge_low. A pull is seen at once (sim request, kernel
uevent) or within ``poll_s``.
"""

from __future__ import annotations

import logging
import time

from bus import service
from bus.envelope import Message
from bus.errors import RequestRefused
from bus.node import Node
from daemons.power.backends import Reading, SimPower, SysfsPower
from daemons.power.uevent import PowerUevents
from manager.processes import by_module
from policies.checker import PolicyError
from policies.loader import load

log = logging.getLogger("powerd")

SIM_PERIOD_S = 1.0  # the simulation changes slowly; a pull or insert is published at once anyway
SIDES = ("left", "right")


class Powerd:
    def __init__(self, node: Node, backend, policy):
        self.node, self.backend = node, backend
        self.low_percent = policy.hardware["power"]["low_percent"]
        self.critical_percent = policy.system["power"]["critical_percent"]
        self.bridge_low_s = policy.system["swap"]["bridge_low_s"]
        self.last: dict | None = None
        self.flags: set[str] = set()  # (battery, condition) already announced, so each event fires once
        if isinstance(backend, SimPower):
            node.serve("power.sim.request", self.on_sim)
            node.subscribe("shell.state", self.on_load)
            node.subscribe("privacy.capture", self.on_load)

    def on_load(self, msg: Message) -> None:
        """The simulation's draw follows what the glasses do."""
        self.backend.advance(time.monotonic())
        if msg.topic == "shell.state":
            self.backend.brightness = msg.payload["brightness"]
        else:
            grants = msg.payload["grants"]
            self.backend.camera = any(g.endswith(":camera") for g in grants)
            self.backend.mic = any(g.endswith(":mic") for g in grants)

    def on_sim(self, msg: Message) -> dict:
        action, side = msg.payload["action"], msg.payload["battery"]
        names = self.backend.names
        if side not in (*SIDES[:len(names)], "bridge") or (side == "bridge" and action != "charge"):
            raise RequestRefused(f"no battery {side!r} to {action} (have: {', '.join(SIDES[:len(names)])})")
        name = "bridge" if side == "bridge" else names[SIDES.index(side)]
        if action == "pull":
            self.backend.pull(name)
        elif action == "insert":
            self.backend.insert(name)
        elif action == "charge" and msg.payload.get("percent") is not None:
            self.backend.charge(name, min(max(msg.payload["percent"], 0.0), 100.0))
        else:
            raise RequestRefused(f"unknown action {action!r} (pull, insert, charge with a percent)")
        self.sample()
        return {"present": [self.backend.present[n] for n in names]}

    def sample(self) -> None:
        reading = self.backend.read()
        for error in reading.errors:
            log.warning("%s", error)
        state = self.state_of(reading)
        previous, self.last = self.last, state
        if previous is None or _differs(previous, state):
            self.node.publish("power.state", **state)
        self.events(previous, state)  # after the state, so a reader of the event finds it current

    def state_of(self, reading: Reading) -> dict:
        present = [b.present for b in reading.batteries]
        inside = [b.percent for b in reading.batteries if b.present]
        return {
            "batteries": [b.as_dict() | {"side": side} for b, side in zip(reading.batteries, SIDES)],
            "bridge": {"percent": round(reading.bridge.percent, 1), "charging": reading.bridge.charging,
                       "time_s": round(reading.bridge.time_to_empty_s or 0.0, 1)},
            # None with no battery in: there is no charge to speak of, the bridge carries the glasses (and its
            # own seconds say how long); 0 % would read as a critical charge and shut them down at once.
            "percent": round(sum(inside) / len(inside), 1) if inside else None,
            "present": present,
            "load_w": round(reading.load_w, 3),
            "backend": self.backend.name,
        }

    def events(self, previous: dict | None, state: dict) -> None:
        for i, battery in enumerate(state["batteries"]):
            side = battery["side"]
            if previous is not None and previous["present"][i] != battery["present"]:
                self._event("inserted" if battery["present"] else "removed", side, battery["percent"])
            self._once(battery["present"] and battery["percent"] < self.low_percent, "low", side, battery["percent"])
        self._once(any(state["present"]) and state["percent"] < self.critical_percent, "critical", "all",
                   state["percent"])
        bridging = not all(state["present"])
        self._once(bridging and state["bridge"]["time_s"] < self.bridge_low_s, "bridge_low", "bridge",
                   state["bridge"]["percent"])

    def _once(self, condition: bool, event: str, battery: str, percent: float) -> None:
        key = f"{battery}:{event}"
        if condition and key not in self.flags:
            self.flags.add(key)
            self._event(event, battery, percent)
        elif not condition:
            self.flags.discard(key)

    def _event(self, event: str, battery: str, percent: float) -> None:
        log.info("%s %s (%.1f %%)", battery, event, percent)
        self.node.publish("power.event", event=event, battery=battery, percent=percent)


def _differs(a: dict, b: dict) -> bool:
    """Worth publishing: anything but the time estimates, or those by more than a little."""
    def coarse(state: dict) -> dict:
        out = dict(state, batteries=[dict(x, time_to_empty_s=None) for x in state["batteries"]],
                   bridge=dict(state["bridge"], time_s=None), load_w=None)
        return out
    if coarse(a) != coarse(b):
        return True
    bridging = not all(b["present"])
    return abs(a["bridge"]["time_s"] - b["bridge"]["time_s"]) >= (1.0 if bridging else 60.0)


def open_backend(kind: str, policy):
    power = policy.hardware["power"]
    if kind == "real":
        return SysfsPower(power["sysfs_root"], power["batteries"], power["bridge"])
    return SimPower(power["batteries"], policy.hardware["power_sim"])


def main(argv: list[str] | None = None) -> int:
    row = by_module("daemons.power")  # its command line, from its row of the process table
    args = service.arguments(row.module, __doc__, backends=row.backends).parse_args(argv)
    with service.exits_on("powerd", PolicyError):
        policy = load(args.policy_dir, args.model)
    backend = open_backend(args.backend, policy)
    with service.node("powerd", args) as node:
        powerd = Powerd(node, backend, policy)
        uevents = PowerUevents() if args.backend == "real" else None
        if uevents is not None and uevents.fileno() is not None:
            node.watch(uevents.fileno(), lambda: uevents.drain() and powerd.sample())
        period = policy.hardware["power"]["poll_s"] if args.backend == "real" else SIM_PERIOD_S
        node.start()
        powerd.sample()
        node.every(period, powerd.sample)
        node.run()
        if uevents is not None:
            uevents.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
