"""inputd: the temple touchpad and the capture button, as gestures on the bus.

Raw events (evdev on the board, played-out gestures in simulation) go
through one recognizer per device; what it recognizes is published as
``input.gesture``. Between events inputd sleeps in the node's poll: the
only timer is the recognizer's next deadline (a tap waiting to see whether
it becomes a double tap, a press that may become long), armed only while
something is pending.
"""

from __future__ import annotations

import logging
import time

from bus import service
from bus.envelope import Message
from bus.errors import RequestRefused
from bus.node import Node
from daemons.input.backends import EvdevInput, InputError, SimInput, Source
from daemons.input.gestures import Gesture, Recognizer, Thresholds
from manager.processes import by_module
from policies.checker import PolicyError
from policies.loader import load
from policies.settings import Section
from policies.rules import GESTURES

ROW = by_module("daemons.input")  # its name and command line, from its row of the process table

log = logging.getLogger(ROW.name)


class Inputd:
    def __init__(self, node: Node, backend, thresholds: Thresholds):
        self.node, self.backend = node, backend
        self.recognizers = {s.name: Recognizer(thresholds, s.x_range, s.button_code) for s in backend.sources}
        self.sim_busy: dict[str, float] = {}  # source -> when the simulated finger playing on it lifts
        self.counts = {name: 0 for name in GESTURES}
        self.timer = None
        self.fault: str | None = None
        for source in backend.sources:
            if source.fd is not None:
                node.watch(source.fd, lambda source=source: self.on_readable(source))
        if isinstance(backend, SimInput):
            node.serve("input.sim.request", self.on_sim)

    def on_readable(self, source: Source) -> None:
        try:
            events = self.backend.read(source)
        except InputError as exc:
            log.error("%s", exc)
            self.fault = str(exc)
            self.node.unwatch(source.fd)
            self.publish_state()
            self.node.stop()  # exit non-zero; systemd (or lens up) restarts inputd, which reopens it
            return
        self.feed(source.name, events)

    def on_sim(self, msg: Message) -> dict:
        try:
            source, script = self.backend.script(msg.payload["gesture"])
        except ValueError as exc:
            raise RequestRefused(f"{exc} (known: {', '.join(GESTURES)})") from None
        # Played in real time, as a finger would, and after the one still playing on the same source:
        # a finger cannot press a button it is holding down.
        now = time.monotonic()
        start = max(now, self.sim_busy.get(source, 0.0))
        self.sim_busy[source] = start + script[-1][0] + 0.01
        for offset, *event in script:  # one base for all: events at the same offset keep their order
            self.node.after(start - now + offset, lambda e=(start + offset, *event): self.feed(source, [e]))
        return {"events": len(script)}

    def feed(self, source: str, events: list[tuple[float, int, int, int]]) -> None:
        recognizer = self.recognizers[source]
        for event in events:
            self.emit(recognizer.feed(*event))
        self.schedule()

    def tick(self) -> None:
        self.timer = None
        now = time.monotonic()
        for recognizer in self.recognizers.values():
            self.emit(recognizer.tick(now))
        self.schedule()

    def schedule(self) -> None:
        deadlines = [d for r in self.recognizers.values() if (d := r.next_deadline()) is not None]
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if deadlines:
            self.timer = self.node.after(max(0.0, min(deadlines) - time.monotonic()), self.tick)

    def emit(self, gestures: list[Gesture]) -> None:
        for gesture in gestures:
            self.counts[gesture.name] += 1
            log.debug("%s from the %s", gesture.name, gesture.source)
            self.node.publish("input.gesture", gesture=gesture.name, source=gesture.source,
                              mono_ns=int(gesture.t * 1e9))

    def publish_state(self) -> None:
        self.node.publish("input.state", backend=self.backend.name,
                          devices=[s.name for s in self.backend.sources], fault=self.fault)


def open_backend(kind: str, numbers: Section, thresholds: Thresholds):
    if kind == "real":
        return EvdevInput({"touchpad": numbers.touchpad, "button": numbers.button}, numbers.button_key)
    return SimInput(thresholds)


def main(argv: list[str] | None = None) -> int:
    args = service.arguments(ROW.module, __doc__, backends=ROW.backends).parse_args(argv)
    with service.exits_on(ROW.name, PolicyError, InputError):
        numbers = load(args.policy_dir, args.model).hardware.input
        thresholds = Thresholds.from_policy(numbers)
        backend = open_backend(args.backend, numbers, thresholds)
    with service.node(ROW.name, args) as node:
        inputd = Inputd(node, backend, thresholds)
        node.start()
        inputd.publish_state()
        node.run()
        backend.close()
    return 1 if inputd.fault else 0


if __name__ == "__main__":
    raise SystemExit(main())
