"""ledd: drives the capture LED on the shell's word and reports what it reads back.

The shell publishes ``privacy.indicator`` (on/off and a command number);
ledd writes it, reads it back, and publishes ``led.state`` with the same
command number, lit or not, and a fault when the driver fails or the
read-back disagrees. While lit it reads back every ``check_s`` so an LED
that dies mid-capture is reported, and capture stops, within that time.
"""

from __future__ import annotations

import logging

from bus import service
from bus.envelope import Message
from bus.node import Node
from daemons.led.backends import LedFault, SimLed, SysfsLed
from manager.processes import by_module
from policies.checker import PolicyError
from policies.loader import load

ROW = by_module("daemons.led")  # its name and command line, from its row of the process table

log = logging.getLogger(ROW.name)

STOPPED = "ledd stopped"  # led.state's fault once ledd has stopped: nobody watches the LED


class Ledd:
    def __init__(self, node: Node, backend, retries: int, check_s: float):
        self.node, self.backend = node, backend
        self.retries, self.check_s = retries, check_s
        self.want, self.cmd = False, 0
        self.lit, self.fault = False, None
        self.reported: tuple | None = None  # (lit, fault) last published, for this cmd
        self.check_timer = None
        node.subscribe("privacy.indicator", self.on_indicator)
        if isinstance(backend, SimLed):
            node.serve("led.sim.request", self.on_sim)

    def on_indicator(self, msg: Message) -> None:
        self.want, self.cmd = msg.payload["on"], msg.payload["cmd"]
        self.reported = None  # every command is answered, even when nothing changed
        self.apply()

    def on_sim(self, msg: Message) -> dict:
        self.backend.break_(msg.payload.get("fault"))
        self.apply()
        return {"fault": self.fault}

    def apply(self) -> None:
        """Write what the shell wants, read it back (retrying a little), report."""
        fault = None
        try:
            for _ in range(self.retries + 1):
                self.backend.set(self.want)
                self.lit = self.backend.read()
                if self.lit == self.want:
                    break
            else:
                fault = f"read back {'lit' if self.lit else 'dark'} after switching it {'on' if self.want else 'off'}"
        except LedFault as exc:
            self.lit, fault = False, str(exc)
        self.report(fault)
        self._watch()

    def check(self) -> None:
        """While lit: is it still? A LED that went dark on its own is a fault."""
        try:
            lit, fault = self.backend.read(), None
            if lit != self.want:
                fault = f"read back {'lit' if lit else 'dark'} while it should be {'on' if self.want else 'off'}"
        except LedFault as exc:
            lit, fault = False, str(exc)
        self.lit = lit
        self.report(fault)

    def report(self, fault: str | None, expected: bool = False) -> None:
        """Publish what the LED does; a fault is logged as an error unless ``expected`` (a clean stop)."""
        if fault != self.fault and not expected:
            (log.error if fault else log.info)("LED %s", f"fault: {fault}" if fault else "working")
        if (self.lit, fault) == self.reported:
            return  # latched: a read-back that changes nothing is not news
        self.reported = (self.lit, fault)
        self.fault = fault
        self.node.publish("led.state", lit=self.lit, cmd=self.cmd, fault=fault,
                          brightness=self.backend.brightness, backend=self.backend.name)

    def _watch(self) -> None:
        if self.check_timer is not None:
            self.check_timer.cancel()
            self.check_timer = None
        if self.want:  # dark and off costs nothing: no timer
            self.check_timer = self.node.every(self.check_s, self.check)


def open_backend(kind: str, policy) -> SimLed | SysfsLed:
    return SysfsLed(policy.hardware.led.sysfs_dir) if kind == "real" else SimLed()


def main(argv: list[str] | None = None) -> int:
    args = service.arguments(ROW.module, __doc__, backends=ROW.backends).parse_args(argv)
    with service.exits_on(ROW.name, PolicyError, LedFault):
        policy = load(args.policy_dir, args.model)
        backend = open_backend(args.backend, policy)
    led = policy.hardware.led
    with service.node(ROW.name, args) as node:
        ledd = Ledd(node, backend, led.confirm_retries, led.check_s)
        node.start()
        if ledd.cmd == 0:
            ledd.apply()  # no word from the shell yet: dark, and say so
        node.run()
        # Nobody watches the LED from now on: capture must stop, so the bus is told it as a fault. A lit
        # LED is left lit (over-telling is safe); one that should be off is switched off. Asked to stop,
        # this is no error, and not logged as one.
        ledd.report(STOPPED, expected=True)
        log.info("the LED is unwatched from now on (led.state says %r), so nothing captures", STOPPED)
        if not ledd.want:
            try:
                backend.set(False)
            except LedFault:
                pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
