"""Who left: the one rule daemons that keep things for others (cards, sounds) use to let go of them.

A process is gone when it says ``node.bye`` for itself, or when it was among
the shell's live nodes and is no longer (it died, or stopped heartbeating).
A sender the shell never listed (a `lens bus call` from a terminal) is not
dropped for that: only what was seen alive can be seen leaving.
"""

from __future__ import annotations

from typing import Callable

from bus.envelope import Message
from bus.node import Node


class Departures:
    def __init__(self, node: Node, on_gone: Callable[[str], None]):
        self.on_gone = on_gone
        self.seen: set[str] = set()
        node.subscribe("node.bye", self._on_bye)
        node.subscribe("shell.state", self._on_shell)

    def _on_bye(self, msg: Message) -> None:
        if msg.payload["node"] == msg.source:
            self.on_gone(msg.source)

    def _on_shell(self, msg: Message) -> None:
        nodes = set(msg.payload.get("nodes") or {})
        for gone in sorted(self.seen - nodes):  # silent for too long
            self.on_gone(gone)
        self.seen = nodes
