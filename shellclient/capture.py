"""The capture rule every capture daemon applies itself, fail closed.

camerad and audiod both follow the shell's grants (``privacy.capture``) and
the LED's read-back (``led.state``) and capture for an owner only while the
shell granted that owner the resource AND ledd confirms the LED lit for the
very command that granted it. Either message missing, stale or faulty means
no capture: the daemon stops on its own, whatever the shell is doing.
"""

from __future__ import annotations

from typing import Callable

from bus.envelope import Message
from bus.node import Node


class CaptureGate:
    def __init__(self, node: Node, resource: str, on_change: Callable[[], None]):
        self.resource, self.on_change = resource, on_change
        self.capture = {"grants": [], "cmd": -1, "fault": None}
        self.led = {"lit": False, "cmd": -2, "fault": None}  # never equal to a capture cmd until ledd says so
        node.subscribe("privacy.capture", self._on_message)
        node.subscribe("led.state", self._on_message)

    def _on_message(self, msg: Message) -> None:
        # Only the shell grants and only ledd reads the LED back: the node hears these from their owners only.
        if msg.topic == "privacy.capture":
            self.capture = msg.payload
        else:
            self.led = msg.payload
        self.on_change()

    def refusal(self, owner: str) -> str | None:
        """Why ``owner`` may not capture now, or None: the grant, the LED, the same command."""
        if f"{owner}:{self.resource}" not in self.capture["grants"]:
            return f"the shell has not granted {owner} {self.resource} capture"
        if self.led["fault"]:
            return f"the capture LED reports a fault: {self.led['fault']}"
        if not self.led["lit"] or self.led["cmd"] != self.capture["cmd"]:
            return "the capture LED is not confirmed lit"
        return None
