"""The one table of every process lensos runs.

`lens up` starts these in order, each after the ones it names in ``after``
have reported READY=1; the systemd units will be generated from the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Process:
    name: str
    module: str  # run as `python -m MODULE`
    args: tuple[str, ...] = ()
    after: tuple[str, ...] = ()  # must be READY before this one starts
    required: bool = True  # boot is not complete without it
    doc: str = ""


PROCESSES: tuple[Process, ...] = (
    Process("broker", "bus.broker", doc="the bus: XSUB/XPUB per lane and the latched cache"),
    Process("shell", "shell", after=("broker",), doc="the state machine: focus, the capture LED, battery swap"),
    Process("ledd", "daemons.led", after=("broker",), doc="the capture LED, lit only on the shell's word"),
    Process("powerd", "daemons.power", after=("broker",), doc="two swappable batteries and the bridge"),
    Process("inputd", "daemons.input", after=("broker",), doc="the temple touchpad and button, as gestures"),
    Process("displayd", "daemons.display", after=("broker",),
            doc="the compositor: HUD, the focused app's card, toasts, alerts (G1: cards spoken)"),
    Process("audiod", "daemons.audio", after=("broker",),
            doc="the speaker, mixed under the focus rules, and the mic, only with the LED lit"),
    Process("assistantd", "daemons.assistant", after=("broker",), required=False,
            doc="ask and hear or see the answer: offline intents, an optional OpenAI-compatible LLM"),
    Process("camerad", "daemons.camera", after=("broker",), required=False,
            doc="frames into a shared-memory ring, photos, video segments; only with the LED lit"),
    Process("demo", "bus.demo", after=("broker",), required=False,
            doc="a demo publisher to sniff until the daemons exist"),
)


def by_name() -> dict[str, Process]:
    return {p.name: p for p in PROCESSES}
