"""The one table of every periodic timer in lensos: who runs it, how often, while what, and why.

Idle glasses should wake for nothing (issue 33: < 20 wake-ups a second for the whole system), so no
timer may run faster than what it serves, and most run only while something needs them. A period is
not copied here: each row names where it is declared (a module's constant, a policy key, the process
table's watchdog), and `lens status --timers` reads it from there. tests/cli/test_timers.py checks
that every file that arms a repeating timer (``every(``) has a row, and that every row's period resolves.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Periodic:
    who: str  # the process (or kind of process) that runs it
    what: str
    # where the period is declared: "module:NAME", "policy:file.section.key", "watchdog" (the process table),
    # or a command-line option ("--window")
    period: str
    when: str  # while what it runs ("always" only where nothing else would tell)
    why: str
    declared_in: str  # the file that arms it


TIMERS: tuple[Periodic, ...] = (
    Periodic("every supervised process (broker, shell, daemons, appd)", "WATCHDOG=1 to its supervisor",
             "watchdog", "always", "a hung loop is restarted within its watchdog (half the timeout, as systemd "
             "asks)", "bus/pace.py"),
    Periodic("every supervised process", "node.heartbeat", "watchdog", "always, in the same wake-up as each "
             "watchdog ping", "the shell calls a hung process silent after 1.5 beats, before its watchdog kills "
             "it (shell/census.py); its list of what runs after a shell restart", "bus/pace.py"),
    Periodic("every app", "node.heartbeat", "apps.sdk.app:IDLE_BEAT_S", "while it holds no focus",
             "the shell's list of what runs; a death is seen at once (bus.departed)", "bus/pace.py"),
    Periodic("every app", "node.heartbeat", "shell.core:HOLDER_BEAT_S", "while it holds or waits for the "
             "display or the speaker (the shell's reply names the pace)",
             "a hung app gives its focus back within three beats", "bus/pace.py"),
    Periodic("a capturing process", "node.heartbeat", "policy:focus.liveness.heartbeat_timeout_s",
             "while it holds or waits for the camera or mic: a third of this",
             "a hung capturer loses the camera or mic within this", "bus/pace.py"),
    Periodic("a node on the developer's key", "node.heartbeat", "policy:focus.liveness.heartbeat_timeout_s",
             "while it holds or waits for any focus: a third of this (the shell's reply names the pace)",
             "the bus cannot tell its death (a shared key): only silence does", "bus/pace.py"),
    Periodic("lens bus sniff, lens bus top", "read the tap", "bus.watching:TAP_PERIOD_S", "while a tool watches",
             "the tool's copy of the traffic, at idle priority, never the broker's work", "bus/watching.py"),
    Periodic("lens trace", "print the traces that went quiet", "--quiet", "while it runs (a quarter second, "
             "or half of --quiet)", "a trace is printed once complete, never a part of it", "cli/trace.py"),
    Periodic("lens bus top", "redraw", "--window", "while it runs (half its --window, at least 0.5 s)",
             "the rates on screen", "cli/bus.py"),
    Periodic("broker", "bus.broker.stats", "broker.broker:STATS_PERIOD_S", "while anyone listens to it, or a "
             "refusal waits to be reported", "lens bus top's lane figures; bus.security's once-a-second summary",
             "broker/broker.py"),
    Periodic("powerd", "read the batteries (sim)", "daemons.power.__main__:SIM_PERIOD_S", "while both are in",
             "a shown percent moves in tens of seconds at the sim's speed-up; a pull is published at once",
             "daemons/power/__main__.py"),
    Periodic("powerd", "read the batteries (board)", "policy:hardware.power.poll_s", "while both are in",
             "the charge moves a shown percent in minutes; a pull wakes powerd at once (kernel uevent)",
             "daemons/power/__main__.py"),
    Periodic("powerd", "read the batteries", "daemons.power.__main__:BRIDGING_PERIOD_S", "while a battery is out",
             "the bridge's countdown, which the wearer sees in seconds", "daemons/power/__main__.py"),
    Periodic("displayd", "redraw the HUD clock", "daemons.display.__main__:CLOCK_PERIOD_S",
             "while the panel is on: at each turn of the minute", "the clock shows minutes",
             "daemons/display/__main__.py"),
    Periodic("home", "the resting card's clock", "apps.home.__main__:CLOCK_PERIOD_S",
             "while home is in front on S1: at each turn of the minute", "the card shows HH:MM",
             "apps/home/__main__.py"),
    Periodic("audiod", "check the devices' work", "daemons.audio.__main__:WORK_CHECK_S",
             "while the speaker or mic is open", "a device that stopped delivering blocks ends the process "
             "(restarted), since its loop would beat on", "daemons/audio/__main__.py"),
    Periodic("ledd", "read the LED back", "policy:hardware.led.check_s", "while lit",
             "an LED that went out while capturing revokes the capture", "daemons/led/__main__.py"),
    Periodic("camerad", "take a frame", "policy:hardware.camera.fps", "while recording (preview_fps while only "
             "previewing)", "the frames asked for", "daemons/camera/__main__.py"),
    Periodic("music", "now playing's position", "apps.music.__main__:TICK_S", "while playing and in front",
             "the position shown, in seconds", "apps/music/__main__.py"),
    Periodic("camera", "the recording's timer card", "apps.camera.__main__:TICK_S", "while recording",
             "the seconds shown", "apps/camera/__main__.py"),
    Periodic("lens bus bridge", "hello to the peers / expire the silent ones", "bustools.bridge:HELLO_EVERY_S",
             "while a bridge runs (not in the default system)", "a peer that went away is forgotten",
             "bustools/bridge.py"),
    Periodic("lens bus bridge --connect", "hello to the glasses", "bustools.bridge:HELLO_EVERY_S",
             "while it runs", "the glasses keep a peer that says hello", "bustools/relay.py"),
    Periodic("python -m bustools.demo", "tick, status, wave", "bustools.demo:TICK_S", "while the demo runs (tests' "
             "traffic, never in the system)", "traffic on every lane for the bus's own tests", "bustools/demo.py"),
)


def period_of(ref: str, policy=None) -> float | None:
    """The period a row names, read from where it is declared (None: a command line's option)."""
    if ref.startswith("--"):
        return None
    if ref == "watchdog":
        from manager.processes import PROCESSES

        return min(p.watchdog_s for p in PROCESSES) / 2
    if ref.startswith("policy:"):
        from policies.loader import load

        file, section, key = ref[len("policy:"):].split(".")
        value = getattr(getattr(getattr(policy or load(), file), section), key)
        if key == "heartbeat_timeout_s":
            from shell.core import MISSED_BEATS

            return value / MISSED_BEATS
        return 1 / value if key.endswith("fps") else value
    value = constant(*ref.split(":"))
    return value


def constant(module: str, name: str) -> float:
    """A module-level ``NAME = number`` read from the module's source, not imported: listing the timers
    loads none of the daemons (numpy, Pillow, PortAudio)."""
    path = REPO / (module.replace(".", "/") + ".py")
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{path}: no {name} = ... at module level")


def rows(policy=None) -> list[dict]:
    return [{"who": t.who, "what": t.what, "period_s": period_of(t.period, policy), "declared": t.period,
             "when": t.when, "why": t.why} for t in TIMERS]


def render(found: list[dict]) -> str:
    lines = [f"{'every':>8}  {'who':34} {'what':34} while / why"]
    for row in found:
        every = "varies" if row["period_s"] is None else f"{row['period_s']:.3g} s"
        lines.append(f"{every:>8}  {row['who'][:34]:34} {row['what'][:34]:34} {row['when']}; {row['why']}")
    return "\n".join(lines)
