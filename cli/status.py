"""`lens status` and `lens privacy log`: the system at a glance, from the latched state on the bus."""

from __future__ import annotations

import datetime
import time

from bus.errors import BusError
from cli.connect import tool_node

STATUS_TOPICS = ("shell.state", "power.state", "led.state", "privacy.capture", "appd.state", "display.state")


def gather(runtime_dir: str | None, timeout: float = 3.0) -> dict[str, dict]:
    """The latest latched message of each status topic, straight from the broker's cache."""
    found: dict[str, dict] = {}
    with tool_node("status", runtime_dir) as node:
        for topic in STATUS_TOPICS:
            node.subscribe(topic, lambda msg: found.__setitem__(msg.topic, msg.payload))
        node.start(timeout=timeout)
    if "shell.state" not in found:
        raise BusError("no shell.state on the bus: is the shell running (`lens up`)?")
    return found


def render(found: dict[str, dict]) -> str:
    shell = found["shell.state"]
    silent = shell.get("silent") or {}
    troubles = []
    for word, names in (("missing", [n for n in shell["degraded"] if n not in silent]),
                        ("silent", [n for n in shell["degraded"] if n in silent])):
        if names:
            troubles.append(f"{', '.join(names)} {word}")
    lines = [f"state      {shell['state']}" + (f"  (degraded: {'; '.join(troubles)})" if troubles else "")
             + f"   model {shell['model']}   boot {_secs(shell.get('boot_s'))}",
             f"foreground {shell['foreground'] or '-'}   brightness {_brightness(shell, found.get('display.state'))}   "
             f"recording {'allowed' if shell['recording_allowed'] else 'refused'}   "
             f"remote calls {'on' if shell['remote_calls'] else 'off'}"]
    lines.append("focus")
    for resource, info in shell["focus"].items():
        stack = info["stack"]
        below = ", ".join(f"{c['owner']} ({c['class']})" for c in stack[1:])
        owner = f"{stack[0]['owner']} ({stack[0]['class']}, {stack[0]['kind']})" if stack else "-"
        lines.append(f"  {resource:<10} {owner}" + (f"   waiting: {below}" if below else ""))
    privacy, led = shell["privacy"], found.get("led.state")
    lit = "no report" if led is None else ("lit" if led["lit"] else "dark") + (f", FAULT: {led['fault']}"
                                                                             if led["fault"] else "")
    lines.append(f"led        {privacy['led']} (confirmed {'yes' if privacy['led_confirmed'] else 'no'}; "
                 f"reads {lit})")
    behalf = privacy.get("behalf", {})
    capture = [f"{c} (for {behalf[c]})" if c in behalf else c for c in privacy["capture"]]
    lines.append(f"capture    {', '.join(capture) or '-'}"
                 + (f"   waiting for LED: {', '.join(privacy['waiting_for_led'])}" if privacy["waiting_for_led"] else ""))
    if privacy.get("listening"):  # the mic heard with the LED off: said as plainly as a capture
        lines.append(f"listening  {privacy['listening']}, for the wake phrase (the mic, with the LED off; nothing kept)")
    power = found.get("power.state")
    if power is None:
        lines.append("power      no report")
    else:
        cells = [f"{b['side']} " + (f"{b['percent']:.0f}%" if b["present"] else "OUT") for b in power["batteries"]]
        bridge = power["bridge"]
        left = f" ({_secs(bridge['time_s'])} left)" if not all(power["present"]) else ""  # only while it may carry
        together = "--" if power["percent"] is None else f"{power['percent']:.0f}%"  # none in: on the bridge
        lines.append(f"power      {together}  [{', '.join(cells)}]  bridge {bridge['percent']:.0f}%"
                     f"{left}  load {power['load_w']:.2f} W")
    host = found.get("appd.state")
    if host is not None:
        # Sharing appd's user is development's usual way (appd said why, and what would change it, when it
        # started; --json has it): a fact here, not repeated as an alarm on every call.
        kept = "each a user of its own" if host["shared_user"] is None else "sharing appd's user"
        lines.append(f"apps       {', '.join(host['running']) or '-'}   ({kept})")
    lines.append(f"ready      {', '.join(n for n in shell['ready'] if n not in silent) or '-'}")
    alive = ", ".join(f"{name}[{info['pid']}]" for name, info in shell["nodes"].items() if name not in silent)
    lines.append(f"alive      {alive or '-'}")
    if silent:  # listed still (a hang may pass; its supervisor restarts it if not), but not as alive
        now = time.time()
        lines.append("silent     " + ", ".join(f"{name}[{info['pid']}] no heartbeat for {now - info['since']:.0f} s"
                                               for name, info in silent.items()) + " (hung?)")
    if shell.get("lost"):  # messages a process accepted and could not deliver (node.lost): none is lost unsaid
        lines.append("lost       " + ", ".join(f"{name} {count} messages" for name, count in shell["lost"].items())
                     + " (their logs say why)")
    return "\n".join(lines)


def render_log(sessions: list[dict]) -> str:
    if not sessions:
        return "no capture sessions recorded"
    rows = ["START                END                  WHO          WHAT    SECONDS  TAKEN         WHY / ENDED"]
    for s in sessions:
        listening = s["resource"] == "listen"  # the wake-phrase spotter: heard, never kept nor sent
        end = _when(s["end"]) if s["end"] else f"(still {'listening' if listening else 'capturing'})"
        frames = s["frames"] or 0
        taken = f"{s.get('audio_s') or 0:.1f} s audio" if s["resource"] == "mic" else \
            "nothing kept" if listening else f"{frames} frame{'' if frames == 1 else 's'}"
        who = f"{s['behalf']} (by {s['owner']})" if s.get("behalf") else s["owner"] or "?"
        rows.append(f"{_when(s['start']):<20} {end:<20} {who:<12} {s['resource'] or '?':<7} "
                    f"{s['seconds'] or 0:>7.1f}  {taken:<12}  {s['reason'] or ''}"
                    + (f" / {s['why_ended']}" if s["why_ended"] else ""))
    return "\n".join(rows)


def _brightness(shell: dict, display: dict | None) -> str:
    """The panel's, as the wearer sees it: the state's level times the wearer's own (displayd's word)."""
    if display is None or not display["on"]:
        return f"{shell['brightness']:.0%}"
    mine = display["user_level"]
    return f"{display['brightness']:.0%}" + (f" (the wearer's {mine:.0%})" if mine != 1.0 else "")


def _when(wall: float | None) -> str:
    return "?" if wall is None else datetime.datetime.fromtimestamp(wall).strftime("%Y-%m-%d %H:%M:%S")


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"
