"""Who is on the bus, as the shell hears it: each process's heartbeats and what its silence means.

Every process beats at a period it names in each beat (``bus.service``: every
5 s; with every watchdog ping when a supervisor watches it, so every 5 s
under the table's 10 s watchdog). The shell judges each by its own period:

    alive    beating
    silent   no beat for SILENT_BEATS of its periods (at least the policy's
             heartbeat timeout): late enough that it is not a busy machine's
             jitter; a loop that hangs (SIGSTOP, a deadlock) looks like this.
             For a supervised process that is 3/4 of its watchdog timeout, so
             the shell says so before the supervisor kills it. It stays
             listed (what daemons keep for it is not dropped), and is named
             in ``shell.state`` (``silent``, and ``degraded`` for a system
             process), by `lens status` and once in the log. A beat of the
             same process again clears it; a new pid is a restart.
    gone     no beat for GONE_AFTER of its periods (or heartbeat timeouts):
             dropped from the list. A process that exits is seen gone at once
             without this (node.bye, bus.departed, appd's reaping).

A hung bus is not a hung process: a process is only called silent, or
gone, when someone else's beat (the shell's own counts) got through after
its own was due. When none has yet, the shell calls the roll (``node.census``:
every process that is up beats at once, the shell too); while nothing at all
comes back (a hung broker), it blames no one. And when beats come again after
an outage (no beat of anyone, the shell's own neither, for OUTAGE_BEATS of
the shell's periods), the outage is nobody's silence: every process's last
beat moves forward by the part of it past the shell's own period (the beats
are aligned, so a round every period is what a working bus shows), so a
process whose next beat is simply on its way
is not counted gone for a while the bus was out (a broker hung until its
watchdog killed it: 13 s of silence, every process beating again within a
period, and camerad "gone" before its beat came in a board boot).
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

SILENT_BEATS = 1.5  # periods without a beat before a process counts as silent (hung, most likely)
GONE_AFTER = 3.0  # heartbeat timeouts (or periods, if longer) after which a silent process is dropped
OUTAGE_BEATS = 1.5  # the shell's own periods with no beat of anyone at all: the bus was out


class Census:
    def __init__(self, me: str, timeout: float):
        self.me = me  # the shell's own name: its own beats prove the bus carries beats
        self.timeout = timeout  # the policy's heartbeat_timeout_s: no process is silent sooner
        self.nodes: dict[str, dict] = {}  # name -> pid, seen (monotonic), period, identity, silent (wall)
        self.heard = float("-inf")  # the last beat of anyone
        self.unproven = False  # someone is overdue, but nothing came in since: the next beat decides
        self.called = float("-inf")  # the last roll call

    def silent_after(self, name: str) -> float:
        return max(self.timeout, SILENT_BEATS * self.nodes[name]["period"])

    def beat(self, name: str, pid: int, period: float, identity: str | None, now: float) -> str:
        """A heartbeat: "new" (first heard, or a new pid), "back" (was silent), "same" (nothing changed for
        anyone, unless ``unproven`` says a silence may now be judged)."""
        me = self.nodes.get(self.me)
        outage = now - self.heard
        if me is not None and outage > OUTAGE_BEATS * me["period"]:
            log.info("shell: no beat of anyone for %.1f s (the bus was out): nobody's silence", outage)
            for node in self.nodes.values():
                node["seen"] += outage - me["period"]
        self.heard = max(self.heard, now)
        known = self.nodes.get(name)
        self.nodes[name] = {"pid": pid, "seen": now, "period": period, "identity": identity, "silent": None}
        if known is None or known["pid"] != pid:
            return "new"
        if known["silent"] is not None:
            log.info("shell: %s (pid %d) beats again after %.1f s of silence", name, pid, now - known["seen"])
            return "back"
        return "same"

    def resume(self, name: str, pid: int, period: float, now: float) -> None:
        """A node a crashed shell listed: kept until its silence says otherwise."""
        self.nodes[name] = {"pid": pid, "seen": now, "period": period, "identity": None, "silent": None}

    def check(self, now: float) -> tuple[list[str], list[tuple[str, float]], float | None, str | None]:
        """(newly silent, gone with seconds of silence, next deadline, why to call the roll now or None): the
        rules above, applied at ``now``."""
        silenced, gone, deadlines, roll_call = [], [], [], None
        self.unproven = False
        for name, node in list(self.nodes.items()):
            if name == self.me:
                continue
            quiet = now - node["seen"]
            expiry = max(self.timeout, node["period"]) * GONE_AFTER
            proven = self.heard > node["seen"] + node["period"]  # the bus carried beats after its own was due
            if quiet > expiry and proven:
                log.warning("shell: no heartbeat from %s for %.1f s; counted as gone", name, quiet)
                del self.nodes[name]
                gone.append((name, quiet))
                continue
            if quiet > expiry:
                self.unproven = True  # the next beat of anyone decides
            else:
                deadlines.append(node["seen"] + expiry)
            if node["silent"] is not None:
                continue
            if quiet <= self.silent_after(name):
                deadlines.append(node["seen"] + self.silent_after(name))
            elif proven:
                node["silent"] = round(time.time() - quiet, 1)
                silenced.append(name)
                log.warning("shell: %s (pid %d) is silent: no heartbeat for %.1f s, %g of its %g s periods; "
                            "hung?", name, node["pid"], quiet, SILENT_BEATS, node["period"])
            else:
                self.unproven = True
                if self.called < node["seen"] + node["period"]:  # once per overdue beat
                    self.called = now
                    roll_call = f"{name} silent for {quiet:.1f} s: who is there?"
        return silenced, gone, min(deadlines, default=None), roll_call

    def silent(self) -> dict[str, dict]:
        """For shell.state: each silent process, its pid and the wall time of its last beat."""
        return {name: {"pid": n["pid"], "since": n["silent"]} for name, n in sorted(self.nodes.items())
                if n["silent"] is not None}
