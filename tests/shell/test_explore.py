"""Every sequence of shell events up to a depth, with the safety rules checked after each step.

Breadth-first over the real ShellCore and the real machine table; states that
look the same (same snapshot, same deadlines relative to now) are explored
once, which is what lets the depth be useful. After the search, every state
found must still be able to reach a running state or shutdown.
"""

import json
import os
import time
from collections import deque

from shell import machine
from shell.core import LISTENER, ShellCore
from policies.loader import load

DEPTH = int(os.environ.get("LENS_EXPLORE_DEPTH", "5"))  # from a booted system; deeper takes minutes
SHIPPED = load(model="s1")
# The wake-phrase spotter's policy on, so that listening is among the states explored (off, it never is).
POLICY = SHIPPED._replace(assistant=SHIPPED.assistant.replace(wake=SHIPPED.assistant.wake.replace(listen="on")))
REQUIRED = POLICY.system.boot.required
SHORT, LONG = 0.6, 100.0  # under the heartbeat timeout; past every idle and LED timer


def power(core, now, present=None, percent=None, bridge_s=None):
    """As powerd reports: no charge (None) with no battery in, the last one's again when one is back."""
    p = core.power
    present = p.present if present is None else present
    percent = p.percent if percent is None else percent
    if not any(present):
        percent = None
    elif percent is None:
        percent = 80.0
    core.power_report(present, percent, p.bridge_s if bridge_s is None else bridge_s, now)


def pull(core, now):
    present = list(core.power.present)
    if True in present:
        present[present.index(True)] = False
    power(core, now, present=present, bridge_s=300.0)


def insert(core, now):
    present = list(core.power.present)
    if False in present:
        present[present.index(False)] = True
    power(core, now, present=present)


EVENTS = {
    "boot_ready": lambda c, t: [c.daemon_ready(d, t) for d in REQUIRED],
    "input": lambda c, t: c.input(t),
    "fg_cam": lambda c, t: c.set_foreground("cam", t),
    "fg_maps": lambda c, t: c.set_foreground("maps", t),
    "cam_photo": lambda c, t: c.focus_request("cam", "camera", "exclusive", "foreground", "photo", t),
    "cam_video": lambda c, t: c.focus_request("cam", "camera", "exclusive", "foreground", "video", t,
                                              purpose="video"),
    "cam_release": lambda c, t: c.focus_release("cam", "camera", t),
    "asst_mic": lambda c, t: c.focus_request("assistantd", "mic", "transient", "assistant", "question", t),
    "asst_cam": lambda c, t: c.focus_request("assistantd", "camera", "transient", "assistant", "look", t),
    "asst_release": lambda c, t: [c.focus_release("assistantd", r, t) for r in ("mic", "camera")],
    "notify": lambda c, t: c.focus_request("notes", "display", "transient", "background", "message", t),
    "beat": lambda c, t: [c.heartbeat(o, t) for o in list(c.last_seen)],
    "led_follows": lambda c, t: c.led_report(c.privacy.led_on, None, t),
    "led_fault": lambda c, t: c.led_report(False, "driver error", t),
    "pull": pull,
    "insert": insert,
    "charge_low": lambda c, t: power(c, t, percent=10.0),
    "charge_ok": lambda c, t: power(c, t, percent=80.0),
    "charge_critical": lambda c, t: power(c, t, percent=1.0),
    "bridge_low": lambda c, t: power(c, t, bridge_s=5.0),
    "cam_dies": lambda c, t: c.owner_gone("cam", t, "exited"),
    "camerad_ends": lambda c, t: c.capture_ended("cam", "camera", "the disk is full", t),
    "camerad_dies": lambda c, t: c.owner_gone("camerad", t, "its connection to the bus closed"),
    "saved": lambda c, t: c.save_done(t) if c.state == "critical" else None,
    # The spotter: up (its first heartbeat), gone; the wake phrase it hears is asst_mic (the assistant's ask).
    "spotter_up": lambda c, t: c.daemon_ready(LISTENER, t),
    "spotter_gone": lambda c, t: c.owner_gone(LISTENER, t, "exited"),
}
WAITS = {"wait_short": SHORT, "wait_long": LONG}
# The way back from anywhere: batteries in, charged, daemons up, a tap; or, once critical, shut down.
RECOVERY = ("insert", "insert", "charge_ok", "boot_ready", "input", "saved")


def check_invariants(core, trail):
    privacy, arbiter = core.privacy, core.arbiter
    for owner, resource in privacy.granted:
        assert privacy.confirmed, f"capture by {owner} without a confirmed LED after {trail}"
        assert arbiter.holds(owner, resource), f"{owner} captures {resource} without focus after {trail}"
    assert not (privacy.fault and privacy.granted), f"capture granted during an LED fault after {trail}"
    for resource, stack in arbiter.stacks.items():
        priorities = [c.priority for c in stack]
        assert priorities == sorted(priorities), f"{resource} stack out of order after {trail}"
        assert len({c.owner for c in stack}) == len(stack), f"{resource}: an owner twice after {trail}"
    if core.state in ("battery_swap", "critical", "shutdown"):
        assert not core.recording_allowed, f"recording allowed in {core.state} after {trail}"
    if core.state in ("sleep", "shutdown"):
        assert not privacy.granted, f"capturing in {core.state} after {trail}"
    if privacy.led_on and not privacy.granted and not privacy.pending:
        assert privacy.hold_until is not None, f"the LED is left on with nothing capturing after {trail}"
    # Nothing but the spotter hears the mic while the LED is off; the spotter only while nobody captures it
    # (granted or waiting for the LED), in a state that listens, and where the policy lets it.
    readers = {owner for owner, resource in privacy.granted if resource == "mic"} | {core.listening} - {None}
    if not privacy.confirmed:
        assert readers <= {LISTENER}, f"{readers} hear the mic with the LED off after {trail}"
    if core.listening is not None:
        assert core.listening == LISTENER and core.policy.wake_listening, f"{core.listening} listens after {trail}"
        assert not [key for key in [*privacy.granted, *privacy.pending] if key[1] == "mic"], \
            f"the spotter listens while the mic is captured after {trail}"
        assert machine.has(core.state, "wake_listening"), f"listening in {core.state} after {trail}"


def key_of(core, now):
    def rel(t):
        return None if t is None else max(-200.0, min(200.0, round(t - now, 2)))
    snap = core.snapshot()
    snap["privacy"]["hold_until"] = rel(core.privacy.hold_until)
    extra = [rel(core.last_activity), rel(core.boot_deadline), core.resume_state,
             sorted((o, rel(t)) for o, t in core.last_seen.items()),
             sorted((f"{k}", rel(d)) for k, (_, d) in core.privacy.pending.items()), core.privacy.listener]
    return json.dumps([snap, extra], sort_keys=True, default=str)


def test_every_event_sequence_keeps_the_safety_rules(capsys):
    started = time.monotonic()
    # Two roots: just powered on, and booted with every required daemon ready (so the
    # depth is spent on what happens afterwards; booting itself is covered from the first).
    cold = ShellCore(POLICY, 0.0)
    booted = ShellCore(POLICY, 0.0)
    EVENTS["boot_ready"](booted, 0.0)
    EVENTS["spotter_up"](booted, 0.0)
    core = cold
    seen, nodes, states, edges, frontier = {}, [], [], [], deque()
    listening = set()  # the states in which the spotter was found listening
    for root in (cold, booted):
        seen[key_of(root, 0.0)] = len(nodes)
        frontier.append((len(nodes), 0, ("boot_ready",) if root is booted else ()))
        nodes.append((root.export(), 0.0))
        states.append(root.state)
        edges.append(set())
    expanded = set()  # nodes whose every successor was explored
    sequences = 0
    while frontier:
        index, depth, trail = frontier.popleft()
        if depth == DEPTH:
            continue
        expanded.add(index)
        data, now = nodes[index]
        for name in [*EVENTS, *WAITS]:
            core.restore(data)
            core.notices.clear()
            t = now + WAITS.get(name, 0.0)
            if name in WAITS:
                core.tick(t)
            else:
                EVENTS[name](core, t)
                core.tick(t)
            sequences += 1
            check_invariants(core, (*trail, name))
            key = key_of(core, t)
            target = seen.get(key)
            if target is None:
                target = seen[key] = len(nodes)
                nodes.append((core.export(), t))
                states.append(core.state)
                if core.listening:
                    listening.add(core.state)
                edges.append(set())
                frontier.append((target, depth + 1, (*trail, name)))
            edges[index].add(target)
    # Liveness: from every state found, a witness sequence reaches running or shutdown.
    stuck = []
    for data, now in nodes:
        core.restore(data)
        for name in RECOVERY:
            if core.state in ("active", "idle", "shutdown"):
                break
            EVENTS[name](core, now)
            core.tick(now)
        if core.state not in ("active", "idle", "shutdown"):
            stuck.append(core.state)
    assert not stuck, f"{len(stuck)} states cannot reach running or shutdown, e.g. {stuck[:5]}"
    assert {"booting", "active", "idle", "sleep", "low_power", "battery_swap", "critical", "shutdown"} <= set(states)
    assert {"active", "idle", "sleep"} <= set(listening), "listening was not among the states explored"
    with capsys.disabled():
        print(f"\nshell explorer: {len(nodes)} distinct states ({len(expanded)} fully expanded), "
              f"{sequences} event steps, depth {DEPTH}, "
              f"{len(EVENTS) + len(WAITS)} events, {time.monotonic() - started:.1f} s")
