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

ROW = by_module("daemons.power")  # its name and command line, from its row of the process table

log = logging.getLogger(ROW.name)

SIM_PERIOD_S = 5.0  # the simulation moves a shown percent in tens of seconds; a pull or insert is published at once
BRIDGING_PERIOD_S = 1.0  # while the bridge carries the glasses, the wearer sees its countdown in seconds
SIDES = ("left", "right")


class Powerd:
    def __init__(self, node: Node, backend, policy):
        self.node, self.backend = node, backend
        self.low_percent = policy.hardware.power.low_percent
        self.critical_percent = policy.system.power.critical_percent
        self.bridge_low_s = policy.system.swap.bridge_low_s
        self.last: dict | None = None
        self.period: float | None = None  # between samples while both batteries are in (keep_sampling)
        self.timer = None
        self.published: dict | None = None  # the last power.state sent: a reader knows that one
        # Every threshold a reader acts on: a crossing is published at once, even within one shown percent.
        self.marks = sorted({self.low_percent, self.critical_percent, policy.system.power.low_percent,
                             policy.system.power.recover_percent})
        self.flags: set[str] = set()  # (battery, condition) already announced, so each event fires once
        if isinstance(backend, SimPower):
            node.serve("power.sim.request", self.on_sim)
            node.subscribe("shell.state", self.on_load)
            node.subscribe("privacy.capture", self.on_load)
            # Real batteries keep their charge when powerd dies; simulated ones live in this process. Its
            # predecessor's last word is latched at the broker (which keeps it across its own restart), so
            # a restarted powerd takes the charge and the pulled batteries up from there (issue 28, line 6:
            # a crash had put 56 % back to 100 %).
            node.subscribe("power.state", self.on_own_state)

    def on_own_state(self, msg: Message) -> None:
        p = msg.payload
        if not msg.latched or msg.incarnation == self.node.incarnation or self.last is not None \
                or p.get("backend") != SimPower.name:
            return
        self.backend.resume(p)
        self.last = p  # the events it brought were announced; the state is published anew at the first sample
        self.events(None, p, quiet=True)
        log.info("took up the simulated batteries where the last powerd left them: %s",
                 ", ".join(f"{b['side']} {'%.0f %%' % b['percent'] if b['present'] else 'out'}"
                           for b in p["batteries"]))

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
        self.schedule()  # a pull starts the countdown's pace now
        return {"present": [self.backend.present[n] for n in names]}

    def keep_sampling(self, period: float) -> None:
        """Sample every ``period`` seconds, and every BRIDGING_PERIOD_S while a battery is out."""
        self.period = period
        self.schedule()

    def schedule(self) -> None:
        if self.period is None:
            return
        if self.timer is not None:
            self.timer.cancel()
        bridging = self.last is not None and not all(self.last["present"])
        self.timer = self.node.after(min(self.period, BRIDGING_PERIOD_S) if bridging else self.period, self._tick)

    def _tick(self) -> None:
        self.sample()
        self.schedule()

    def sample(self) -> None:
        reading = self.backend.read()
        for error in reading.errors:
            log.warning("%s", error)
        state = self.state_of(reading)
        previous, self.last = self.last, state
        if self.published is None or _differs(self.published, state, self.marks):
            self.node.publish("power.state", **state)
            self.published = state
        self.events(previous, state)  # after the state, so a reader of the event finds it current

    def state_of(self, reading: Reading) -> dict:
        present = [b.present for b in reading.batteries]
        inside = [b.percent for b in reading.batteries if b.present]
        return {
            "batteries": [b.as_dict() | {"side": side} for b, side in zip(reading.batteries, SIDES)],
            # None when the kernel gives no estimate (a bridge that reads "Full" is not discharging yet): not 0 s,
            # which the shell would take for a bridge about to die, and shut the glasses down at a battery's pull
            "bridge": {"percent": round(reading.bridge.percent, 1), "charging": reading.bridge.charging,
                       "time_s": None if reading.bridge.time_to_empty_s is None
                       else round(reading.bridge.time_to_empty_s, 1)},
            # None with no battery in: there is no charge to speak of, the bridge carries the glasses (and its
            # own seconds say how long); 0 % would read as a critical charge and shut them down at once.
            "percent": round(sum(inside) / len(inside), 1) if inside else None,
            "present": present,
            "load_w": round(reading.load_w, 3),
            "backend": self.backend.name,
        }

    def events(self, previous: dict | None, state: dict, quiet: bool = False) -> None:
        """The events ``state`` brings after ``previous``; quiet: only note which conditions hold (a restarted
        powerd's predecessor announced them)."""
        for i, battery in enumerate(state["batteries"]):
            side = battery["side"]
            if previous is not None and previous["present"][i] != battery["present"]:
                self._event("inserted" if battery["present"] else "removed", side, battery["percent"])
            self._once(battery["present"] and battery["percent"] < self.low_percent, "low", side, battery["percent"],
                       quiet)
        self._once(any(state["present"]) and state["percent"] < self.critical_percent, "critical", "all",
                   state["percent"], quiet)
        bridging = not all(state["present"])
        bridge_s = state["bridge"]["time_s"]
        self._once(bridging and bridge_s is not None and bridge_s < self.bridge_low_s, "bridge_low", "bridge",
                   state["bridge"]["percent"], quiet)

    def _once(self, condition: bool, event: str, battery: str, percent: float, quiet: bool = False) -> None:
        key = f"{battery}:{event}"
        if condition and key not in self.flags:
            self.flags.add(key)
            if not quiet:
                self._event(event, battery, percent)
        elif not condition:
            self.flags.discard(key)

    def _event(self, event: str, battery: str, percent: float) -> None:
        log.info("%s %s (%.1f %%)", battery, event, percent)
        self.node.publish("power.event", event=event, battery=battery, percent=percent)


ESTIMATE_SLACK = (60.0, 0.1)  # a time estimate is sent again when off by a minute and a tenth of itself


def _differs(a: dict, b: dict, marks: list[float]) -> bool:
    """Worth publishing: what a reader shows or acts on changed. Percents as shown (whole: the HUD's and
    home's), and which side of every threshold of ``marks`` they are on (the shell's low, recover and
    critical, powerd's own low); presence and charging; a time estimate by a minute and a tenth of itself
    (an estimate from the present load is no better: it jumps by a quarter when the panel dims), the
    bridge's by a second while it carries the glasses (the wearer's countdown). Not the tenths of a
    percent a drain moves every few seconds, which woke every reader of power.state, the shell, and every
    reader of shell.state with it."""
    def shown(percent: float | None):
        return None if percent is None else (round(percent), tuple(percent < mark for mark in marks))

    def coarse(state: dict) -> tuple:
        return ([(x["present"], x["charging"], shown(x["percent"])) for x in state["batteries"]],
                state["present"], shown(state["percent"]), state["bridge"]["charging"],
                round(state["bridge"]["percent"]), state["backend"])

    def moved(old: float | None, new: float | None, least: float, share: float) -> bool:
        if old is None or new is None:
            return (old is None) != (new is None)
        return abs(new - old) >= max(least, share * min(abs(old), abs(new)))

    if coarse(a) != coarse(b):
        return True
    if not all(b["present"]):
        return moved(a["bridge"]["time_s"], b["bridge"]["time_s"], 1.0, 0.0)
    estimates = zip([x["time_to_empty_s"] for x in a["batteries"]] + [a["bridge"]["time_s"]],
                    [x["time_to_empty_s"] for x in b["batteries"]] + [b["bridge"]["time_s"]])
    return any(moved(old, new, *ESTIMATE_SLACK) for old, new in estimates)


def open_backend(kind: str, policy):
    power = policy.hardware.power
    if kind == "real":
        return SysfsPower(power.sysfs_root, power.batteries, power.bridge)
    return SimPower(power.batteries, policy.hardware.power_sim)


def main(argv: list[str] | None = None) -> int:
    args = service.arguments(ROW.module, __doc__, backends=ROW.backends).parse_args(argv)
    with service.exits_on(ROW.name, PolicyError):
        policy = load(args.policy_dir, args.model)
    backend = open_backend(args.backend, policy)
    with service.node(ROW.name, args) as node:
        powerd = Powerd(node, backend, policy)
        uevents = PowerUevents() if args.backend == "real" else None
        if uevents is not None and uevents.fileno() is not None:
            node.watch(uevents.fileno(), lambda: uevents.drain() and (powerd.sample(), powerd.schedule()))
        period = policy.hardware.power.poll_s if args.backend == "real" else SIM_PERIOD_S
        node.start()
        powerd.sample()
        powerd.keep_sampling(period)
        node.run()
        if uevents is not None:
            uevents.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
