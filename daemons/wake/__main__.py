"""waked: the wake-phrase spotter, the one ear on the mic while nobody captures it.

The shell names it the listener (``privacy.capture`` listening) while the
policy lets it run (assistant.toml [wake] listen), the glasses are in a
state that listens, and nobody captures or waits to capture the mic; the HUD
shows a listening mark and the privacy log records every listening span.
audiod then sends it the mic as ``audio.wake.mic``, which the broker hands to
this identity alone. It hears with ``spotter.WakeSpotter``: a window no
longer than the phrase, decoded in place and zeroed on every detection.

On the phrase it publishes ``assistant.wake`` (which block, when: no audio,
no words), the only topic the broker lets it say. assistantd asks the shell
for the mic at once, so the capture LED is lit before a word of the request
is heard; the shell names no listener from that moment, and what the wearer
says next is the assistant's, behind the LED. Its unit has no network, no
writable storage and no device (manager/processes.py): what it hears has
nowhere to go but this process's memory, which keeps at most the window.
"""

from __future__ import annotations

import logging
import time

from bus import service
from bus.envelope import Message
from bus.node import Node
from daemons.wake.spotter import RATE, SpotterError, WakeSpotter
from policies.checker import PolicyError
from policies.loader import load
from manager.processes import by_module

ROW = by_module("daemons.wake")  # its name and command line, from its row of the process table

log = logging.getLogger(ROW.name)
# A block older than this means blocks are waiting behind it: they fill the window undecoded until the spotter
# is level with the mic again. A decode costs 6x real time over a 1.5 s window every 0.25 s; where the CPU
# cannot keep up (the board under load, the image under QEMU's TCG) decoding every stale hop made the backlog
# grow without bound, the loop never got back to its watchdog pings, and systemd killed waked over and over.
BEHIND_S = 0.5


class Waked:
    def __init__(self, node: Node, spotter: WakeSpotter):
        self.node, self.spotter = node, spotter
        self.heard = 0
        self.skipped = 0  # blocks kept undecoded because the spotter was behind the mic
        self.told_at = -60.0  # when it last said it fell behind: once a minute at most
        node.subscribe("audio.wake.mic", self.on_block)
        node.subscribe("privacy.capture", self.on_capture)

    def on_block(self, msg: Message) -> None:
        p = msg.payload
        if p["owner"] != self.node.name or p["rate"] != RATE:  # audiod's alone: the node holds it to its owner
            return
        behind = time.monotonic_ns() - p["mono_ns"] > BEHIND_S * 1e9  # audiod's clock: CLOCK_MONOTONIC too
        if behind:
            self.skipped += 1
            if time.monotonic() - self.told_at > 60:
                self.told_at = time.monotonic()
                log.warning("the spotter fell behind the mic; catching up without decoding (%d blocks so far)",
                            self.skipped)
        if self.spotter.feed(p["pcm"], decode=not behind):  # the window is empty again before anyone is told
            self.heard += 1
            log.info("the wake phrase was heard (%d so far)", self.heard)
            self.node.publish("assistant.wake", seq=p["seq"], mono_ns=p["mono_ns"])

    def on_capture(self, msg: Message) -> None:
        """No longer the listener (the mic is someone's capture now): what the window holds is forgotten, so
        a span heard before the capture can never join one heard after it."""
        if msg.payload.get("listening") != self.node.name:
            self.spotter.clear()


def main(argv: list[str] | None = None) -> int:
    args = service.arguments(ROW.module, __doc__).parse_args(argv)
    with service.exits_on(ROW.name, PolicyError, SpotterError):
        policy = load(args.policy_dir, args.model)
        if not policy.wake_listening:  # started by hand where the policy is off: it does not listen
            raise PolicyError(f"{policy.directory / 'assistant.toml'}: [wake] listen = "
                              f"{policy.assistant.wake.listen!r} turns the wake-phrase spotter off here")
        spotter = WakeSpotter(policy.assistant.trigger.wake_phrase)
    with service.node(ROW.name, args) as node:
        Waked(node, spotter)
        node.start()
        node.run()
        spotter.clear()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
