"""A node's heartbeat: READY=1 and the watchdog once it is on the bus, then node.heartbeat at its pace.

Only the mechanism lives here: a node beats at the period it was given, or at the one the shell's last
reply named (``beat_s``: faster while it captures, or holds anything on a shared key), and answers the
shell's census. Which pace the shell expects, and why, is the shell's policy (shell.core.beat_for).
"""

from __future__ import annotations

import logging
import os
import time

from bus import sdnotify
from bus.envelope import Message

log = logging.getLogger(__name__)

CENSUS_MIN_S = 0.1  # a node answers node.census with a beat unless it answered one this recently


class Pace:
    """A node's heartbeat (a part of bus.node.Node, which holds the state)."""

    def _announce_if_ready(self) -> None:
        """READY=1 (and the watchdog timer) once, the first time every lane and the snapshot are in."""
        if self._announced or not self.ready:
            return
        self._announced = True
        sdnotify.notify("READY=1", f"STATUS={self.name} on the bus")
        period = sdnotify.watchdog_period()
        if period:  # aligned: see bus.timers.aligned_deadline (and the beat below, in the same wake-up)
            self.timers.every(period, lambda: sdnotify.notify("WATCHDOG=1"), aligned=True)
        if self.heartbeat:
            self._keep_beating()

    def _follow_pace(self, result: dict) -> None:
        """A reply of the shell's that names the pace it now expects (``beat_s``): keep it, or go back to
        this node's own (null). The shell's last word holds: it answers every focus and release request."""
        if "beat_s" not in result or not self._own_pace:
            return
        beat = result["beat_s"]
        if beat is not None and not beat > 0:
            log.warning("%s: a pace of %r s named by the shell ignored", self.name, beat)
            return  # no pace at all, or a beat loop that never sleeps
        self._set_pace(self._own_pace if beat is None else min(self._own_pace, beat))

    def _set_pace(self, period: float) -> None:
        if period == self.heartbeat:
            return
        self.heartbeat = period
        if self._beat_timer is not None:  # announced: say so now, then keep the new pace
            # Slower too: the shell allows silence by the pace it last heard, and would take a slower
            # one's first gap for a hang.
            self._beat_timer.cancel()
            self._keep_beating()

    def _keep_beating(self) -> None:
        """Beat now, then every ``self.heartbeat`` seconds."""
        self._beat()
        self._beat_timer = self.timers.every(self.heartbeat, self._beat, aligned=True)

    def _on_census(self, msg: Message) -> None:
        # At most one answer per census period, however many censuses arrive: no amplifier. Limited by
        # the last answer, not the last beat: a beat sent just before the shell's subscription was live
        # (a boot, where both start together) is one the census's sender never heard.
        now = time.monotonic()
        if self._announced and now - self._last_census > CENSUS_MIN_S:
            self._last_census = now
            self._beat()

    def _beat(self) -> None:
        self.publish("node.heartbeat", node=self.name, pid=os.getpid(), incarnation=self.incarnation,
                     period_s=self.heartbeat)
