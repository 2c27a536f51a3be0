"""The shell's decisions, without I/O: events in, state and notices out.

The daemon (shell/daemon.py) feeds it what arrives on the bus and publishes
what it says; tests and the exhaustive explorer drive the very same object.
Time is always passed in, so every timeout is deterministic under test.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from shell import machine
from shell.focus import Arbiter, Decision, FocusError, Notice
from policies.loader import Policy
from shell.privacy import CAPTURE_RESOURCES, CaptureNotice, Privacy


CAPTURERS = {"camerad": "camera", "audiod": "mic"}  # the daemon that captures for each capture resource
LISTENER = "waked"  # the wake-phrase spotter (manager/processes.py): the one ear on the mic with the LED off
WAKING = ("display", "audio_out")  # a transient claim on these wakes sleeping glasses
MISSED_BEATS = 3  # heartbeats an owner may miss (a busy machine's late ones) before it counts as hung
HOLDER_BEAT_S = 5.0  # an app's pace while it holds focus (beat_for); holding nothing, its own, slower
# The idle clock, from the machine's own table: where inactivity dims the glasses, and where it puts them to sleep
DIMS = machine.sources("inactive")
SLEEPS = machine.sources("idle_timeout")
WAKES_FROM = tuple(s for s in machine.sources("activity", machine.AWAKE) if s != machine.AWAKE)  # a swap ends awake


@dataclass
class Power:
    present: list[bool] = field(default_factory=lambda: [True, True])
    percent: float | None = 100.0  # of the batteries inside; None with none in (the bridge carries the glasses)
    bridge_s: float | None = 600.0  # seconds the bridge battery can carry the system alone; None: no estimate


class ShellCore:
    def __init__(self, policy: Policy, now: float, restored: dict | None = None):
        self.policy = policy
        self.arbiter = Arbiter(policy.profile.resources)
        led = policy.privacy.led
        self.privacy = Privacy(led.hold_s, led.confirm_timeout_s)
        self.power = Power(present=[True] * policy.profile.batteries)
        self.ready: set[str] = set()
        self.missing: list[str] = []  # required daemons that missed the boot deadline
        self.boot_deadline = now + policy.system.boot.deadline_s
        self.last_activity = now
        self.resume_state = machine.AWAKE
        self.foreground: str | None = (restored or {}).get("foreground")
        self.saved_state: dict | None = None
        self.notices: list[Notice | CaptureNotice] = []  # to deliver; the daemon empties it
        self.ended: tuple[str, str] | None = None  # the last capture the system ended; the daemon takes it
        self.last_seen: dict[str, float] = {}  # focus owners' liveness
        self.periods: dict[str, float] = {}  # each process's heartbeat period, as it says
        self.clock = now  # the time handed to callbacks that have no argument for it
        self.state = machine.INITIAL
        self.machine = machine.build(self)

    # --- events ----------------------------------------------------------------
    def daemon_ready(self, name: str, now: float) -> None:
        self.clock = now
        self.ready.add(name)
        if name == LISTENER and self.policy.wake_listening:  # where the policy is off, it is never heard
            self.privacy.listener = name
        if self.state == machine.INITIAL and set(self.policy.system.boot.required) <= self.ready:
            self._finish_boot()
        elif name in self.missing:
            self.missing.remove(name)

    def input(self, now: float) -> None:
        self.clock = now
        self.last_activity = now
        self.activity()

    def power_report(self, present: list[bool], percent: float | None, bridge_s: float | None, now: float) -> None:
        self.clock = now
        before = sum(self.power.present)
        self.power = Power(list(present), percent, bridge_s)
        if sum(present) < before:
            self.battery_out()
        elif sum(present) > before:
            self.battery_in()
        self._apply_power()

    def focus_request(self, owner: str, resource: str, kind: str, cls: str, reason: str, now: float,
                      purpose: str = "", behalf: str | None = None) -> Decision:
        self.clock = now
        refusal = self._refusal(owner, resource, cls, purpose)
        if refusal:
            return Decision("denied", refusal)
        try:
            decision = self.arbiter.request(owner, resource, kind, self.policy.priority(cls), cls, reason, behalf)
        except FocusError as exc:
            return Decision("denied", str(exc))
        self.last_seen[owner] = now
        if decision.status == "granted":
            self._wake_after_swap()
            if resource in WAKING and kind != "exclusive" and machine.has(self.state, "asleep"):
                self.input(now)  # a notification, an alert, a call: the wearer should see or hear it
        self._deliver(decision.notices, now)
        if decision.status == "granted" and resource in CAPTURE_RESOURCES:
            self.notices += self.privacy.want(owner, resource, reason, now, behalf)
        return decision

    def focus_release(self, owner: str, resource: str, now: float, why: str = "released") -> None:
        self.clock = now
        if resource in CAPTURE_RESOURCES:
            self.notices += self.privacy.stop(owner, resource, now, why)
        self._deliver(self.arbiter.release(owner, resource, why), now)

    def owner_gone(self, owner: str, now: float, why: str) -> list[str]:
        """A focus owner exited or went silent: it loses everything; returns what it held."""
        held = [r for r in self.arbiter.stacks if self.arbiter.holds(owner, r)]
        for resource in self.arbiter.stacks:
            self.focus_release(owner, resource, now, why)
        # Told even so: a hung owner that wakes up must learn it no longer holds anything.
        self.notices += [Notice(owner, resource, "lost", why) for resource in held]
        self.last_seen.pop(owner, None)
        if owner == self.privacy.listener:
            self.privacy.listener = None
        if self.foreground == owner:
            self.foreground = None
        if owner in CAPTURERS:  # nothing is captured for anyone now: they are told, the LED goes out after its hold
            resource = CAPTURERS[owner]
            for claim in list(self.arbiter.stacks.get(resource, ())):
                self.capture_ended(claim.owner, resource, f"{owner} stopped ({why})", now)
        return held

    def capture_ended(self, owner: str, resource: str, why: str, now: float) -> None:
        """The capturing daemon ended ``owner``'s capture itself (a full disk, a failed camera, camerad gone):
        the owner loses the resource and is told why, so no grant or lit LED is left for a capture that is
        over; the LED goes out after its hold time."""
        self.clock = now
        if not any(claim.owner == owner for claim in self.arbiter.stacks.get(resource, ())):
            return
        self.focus_release(owner, resource, now, why)
        self.notices.append(Notice(owner, resource, "lost", why))
        self.ended = (resource, why)  # the wearer is told too (the daemon's HUD notice), whatever the app does

    def heartbeat(self, owner: str, now: float, period: float = 0.0) -> None:
        self.periods[owner] = period
        if owner in self.last_seen:
            self.last_seen[owner] = now

    def silence_limit(self, owner: str) -> float:
        """How long ``owner`` may be silent before it loses its focus: the policy's timeout, or
        MISSED_BEATS of its own heartbeat period if that is longer. A process with a key of its own
        beats slowly while it holds focus (its death is seen at once on the bus, bus.departed), so
        only a hang waits for this; but a camera or mic is never left with a hung owner longer than
        the policy says: a capturing owner is told to beat faster (beat_for)."""
        limit = self.policy.focus.liveness.heartbeat_timeout_s
        return limit if self.claims_capture(owner) else max(limit, MISSED_BEATS * self.periods.get(owner, 0.0))

    def claims_capture(self, owner: str) -> bool:
        """Does ``owner`` hold, or wait for, the camera or the mic?"""
        return any(claim.owner == owner for resource in CAPTURE_RESOURCES
                   for claim in self.arbiter.stacks.get(resource, ()))

    def beat_for(self, owner: str, app: bool = False, shared: bool = False) -> float | None:
        """The heartbeat period ``owner`` must keep from now on (None: its own): while it captures, the
        policy's timeout over MISSED_BEATS, so that a late beat is not yet a hang. So too for a node on a
        shared key (``shared``: the developer's) while it holds or waits for anything, since the bus cannot
        tell when one of those dies (no bus.departed): only its silence can. An app (which nothing restarts
        when it hangs) beats slowly while it holds nothing, and every HOLDER_BEAT_S while it holds or waits
        for any focus, so that a hung one gives the display or the speaker back within MISSED_BEATS of that.

        The shell alone decides these paces; the transport only keeps what the reply names (bus.pace)."""
        watched = self.policy.focus.liveness.heartbeat_timeout_s / MISSED_BEATS
        if self.claims_capture(owner):
            return watched
        holds = any(claim.owner == owner for stack in self.arbiter.stacks.values() for claim in stack)
        if holds and shared:
            return watched
        if holds and app:
            return HOLDER_BEAT_S
        return None

    def set_foreground(self, app: str, now: float) -> str | None:
        """Only one foreground app: the previous one is backgrounded and loses the display."""
        previous, self.foreground = self.foreground, app
        if previous and previous != app and "display" in self.arbiter.stacks:
            self.focus_release(previous, "display", now, f"backgrounded by {app}")
        return previous if previous != app else None

    def led_report(self, lit: bool, fault: str | None, now: float) -> None:
        self.clock = now
        notices = self.privacy.led_report(lit, fault, now)
        self.notices += notices
        for notice in notices:  # a revoked capture also loses its focus (and is told): capture must stop
            if notice.status in ("revoked", "refused"):
                self.capture_ended(notice.owner, notice.resource, notice.reason, now)

    def tick(self, now: float) -> None:
        """Timers: boot deadline, idle, LED confirm/hold, silent owners, the bridge."""
        self.clock = now
        for notice in self.privacy.tick(now):
            self.notices.append(notice)
            self._deliver(self.arbiter.release(notice.owner, notice.resource, "LED not confirmed"), now)
        for owner, seen in list(self.last_seen.items()):
            if now - seen > self.silence_limit(owner):
                self.owner_gone(owner, now, f"silent for {now - seen:.1f} s")
        if self.state == machine.INITIAL and now >= self.boot_deadline:
            self.missing = sorted(set(self.policy.system.boot.required) - self.ready)
            self._finish_boot()
        idle = self.policy.system.idle
        if self.state in DIMS and now - self.last_activity >= idle.dim_after_s:
            self.inactive()
        if self.state in SLEEPS and \
                now - self.last_activity >= idle.dim_after_s + idle.sleep_after_s:
            self.idle_timeout()

    def save_done(self, now: float) -> None:
        """The daemon has written saved_state to disk: shutdown may proceed, capture stops."""
        self.clock = now
        self.saved()

    def next_deadline(self) -> float | None:
        idle = self.policy.system.idle
        candidates = [self.privacy.next_deadline()]
        if self.state == machine.INITIAL:
            candidates.append(self.boot_deadline)
        if self.state in DIMS:
            candidates.append(self.last_activity + idle.dim_after_s)
        if self.state in SLEEPS:
            candidates.append(self.last_activity + idle.dim_after_s + idle.sleep_after_s)
        candidates += [seen + self.silence_limit(owner) for owner, seen in self.last_seen.items()]
        return min((c for c in candidates if c is not None), default=None)

    # --- saving and restoring the whole decision state (the explorer's undo) ----------
    _DATA = ("arbiter", "privacy", "power", "ready", "missing", "boot_deadline", "last_activity", "resume_state",
             "foreground", "saved_state", "notices", "last_seen", "periods", "clock")

    def export(self) -> dict:
        return copy.deepcopy({name: getattr(self, name) for name in self._DATA} | {"state": self.state})

    def restore(self, data: dict) -> None:
        data = copy.deepcopy(data)
        self.machine.set_state(data.pop("state"), model=self)
        for name, value in data.items():
            setattr(self, name, value)

    def resumed(self, now: float) -> None:
        """A crashed shell's checkpoint, restored and taken up at ``now``. Its beat times are from its last
        change of state, minutes before the crash on glasses left alone: the shell's own absence is nobody's
        silence, so each owner's is counted from now (a board's resumed shell took the app in front for gone,
        and home took the front). The same for the wearer's last touch: a touch while active changes no state,
        so the checkpoint's was old, and the first tick dimmed and slept glasses in use; and for a capture
        waiting for the LED (Privacy.resumed)."""
        self.clock = now
        self.last_seen = {owner: max(seen, now) for owner, seen in self.last_seen.items()}
        self.last_activity = max(self.last_activity, now)
        self.privacy.resumed(now)

    # --- what the rest of the system sees -------------------------------------------
    def snapshot(self) -> dict:
        return {
            "state": self.state,
            "degraded": list(self.missing),
            "ready": sorted(self.ready),
            "foreground": self.foreground,
            "brightness": machine.brightness(self.state, self.policy.system) if self.policy.has_display else 0.0,
            **{tag: machine.has(self.state, tag) for tag in machine.TAGS},  # each state's properties
            # Which batteries are in, what the shell acts on; not powerd's figures (its percent and bridge time,
            # in power.state, where every reader takes them): a copy here sent shell.state, which wakes every
            # process, each time the charge moved by a percent (issue 33).
            "power": {"present": self.power.present},
            "focus": self.arbiter.snapshot(),
            "privacy": self.privacy.snapshot() | {"listening": self.listening},
        }

    @property
    def listening(self) -> str | None:
        """The process that may hear the mic with the LED off now (the wake-phrase spotter), or None."""
        return self.privacy.listening(self.policy.wake_listening and machine.has(self.state, "wake_listening"))

    @property
    def recording_allowed(self) -> bool:
        """False tells camerad to checkpoint and hold (swap, critical) or refuses new video (low_power)."""
        return machine.has(self.state, "recording_allowed")

    # --- transitions' callbacks (named in shell/machine.py) ---------------------------
    def capturing(self) -> bool:
        return bool(self.privacy.granted or self.privacy.pending)

    def all_batteries_in(self) -> bool:
        return all(self.power.present)

    def remember_state(self) -> None:
        self.resume_state = self.state

    def enter_critical(self) -> None:
        self._stop_all_capture("the system is shutting down")
        self.saved_state = {"foreground": self.foreground, "resume_state": self.resume_state}

    def enter_shutdown(self) -> None:
        self._stop_all_capture("the system is shut down")

    def _stop_all_capture(self, why: str) -> None:
        for resource in (r for r in CAPTURE_RESOURCES if r in self.arbiter.stacks):
            for claim in list(self.arbiter.stacks[resource]):
                self.focus_release(claim.owner, resource, self.clock, why)

    def note_activity(self) -> None:
        self._wake_after_swap()

    def _wake_after_swap(self) -> None:
        """Someone is using the glasses during a swap: it must end awake, not back asleep."""
        if machine.has(self.state, "swapping") and self.resume_state in WAKES_FROM:
            self.resume_state = machine.AWAKE

    # --- internals -----------------------------------------------------------------------
    def _finish_boot(self) -> None:
        """Leave booting, then act on the power reading that was only noted while booting."""
        self.booted()
        self._apply_power()

    def _apply_power(self) -> None:
        """Turn the latest power reading into the machine's triggers."""
        power, thresholds = self.power, self.policy.system.power
        if machine.has(self.state, "shutting_down"):
            return
        if not any(power.present) or power.percent is None:  # all out: the bridge's to say, until it is low
            if machine.has(self.state, "swapping") and self._bridge_low():
                self.bridge_low()
            return
        if power.percent < thresholds.critical_percent:
            self.power_critical()
        elif machine.has(self.state, "swapping") and self._bridge_low():
            self.bridge_low()
        elif power.percent < thresholds.low_percent:
            self.power_low()
        elif power.percent > thresholds.recover_percent:
            self.power_ok()

    def _bridge_low(self) -> bool:
        """Known to be low: a bridge the kernel gives no estimate for (not discharging yet) is not taken for empty."""
        return self.power.bridge_s is not None and self.power.bridge_s < self.policy.system.swap.bridge_low_s

    def _refusal(self, owner: str, resource: str, cls: str, purpose: str) -> str | None:
        if cls not in self.policy.focus.priorities:
            return f"unknown priority class {cls!r}"
        allowed = self.policy.focus.roles.get(owner, "foreground" if owner == self.foreground else "background")
        if self.policy.priority(cls) > self.policy.priority(allowed):
            return f"{owner} may not claim {cls} (at most {allowed}, policies/focus.toml [roles])"
        if machine.has(self.state, "shutting_down"):
            return f"the system is shutting down ({self.state})"
        if resource in CAPTURE_RESOURCES and machine.has(self.state, "asleep"):
            return "the glasses are asleep"
        if purpose == "video" and not self.recording_allowed:
            return f"video recording is not allowed in {self.state}"
        return None

    def _deliver(self, notices: list[Notice], now: float) -> None:
        """Focus notices go out; an owner that lost camera or mic must also stop capturing."""
        for notice in notices:
            self.notices.append(notice)
            if notice.resource in CAPTURE_RESOURCES:
                if notice.status in ("lost", "suspended"):
                    self.notices += self.privacy.stop(notice.owner, notice.resource, now)
                elif notice.status == "granted" and not (machine.has(self.state, "asleep")
                                                         or machine.has(self.state, "shutting_down")):
                    claim = self.arbiter.holder(notice.resource)
                    self.notices += self.privacy.want(notice.owner, notice.resource, claim.reason, now,
                                                      claim.behalf)


# The battery swap's way back, one condition per state it may return to (shell/machine.py names them
# resumes_<state>): made from the machine's list, so a state added there needs nothing written here.
for _state in machine.RESUMABLE:
    setattr(ShellCore, f"resumes_{_state}", lambda self, state=_state: self.resume_state == state)
