"""Timers for a node's poll loop: the loop sleeps until the next deadline, never on a fixed tick."""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Callable


class Timer:
    __slots__ = ("deadline", "period", "callback", "cancelled")

    def __init__(self, deadline: float, period: float | None, callback: Callable[[], None]):
        self.deadline = deadline
        self.period = period
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    def __init__(self):
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()

    def after(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self._push(Timer(time.monotonic() + delay, None, callback))

    def every(self, period: float, callback: Callable[[], None], *, first: float | None = None,
              aligned: bool = False) -> Timer:
        """Every ``period`` seconds, the first after ``first`` (default: one period); ``aligned``: at the
        multiples of ``period`` on the monotonic clock instead (see ``aligned_deadline``)."""
        if period <= 0:
            raise ValueError(f"timer period must be positive, got {period}")
        now = time.monotonic()
        deadline = aligned_deadline(period, now) if aligned else now + (period if first is None else first)
        return self._push(Timer(deadline, period, callback))

    def _push(self, timer: Timer) -> Timer:
        heapq.heappush(self._heap, (timer.deadline, next(self._order), timer))
        return timer

    def next_deadline(self) -> float | None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def run_due(self) -> None:
        now = time.monotonic()
        while self._heap and self._heap[0][0] <= now:
            _, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            if timer.period is not None:
                # Skip missed periods instead of firing a burst after a stall.
                timer.deadline += timer.period * max(1, int((now - timer.deadline) // timer.period) + 1)
                self._push(timer)
            timer.callback()


def aligned_deadline(period: float, now: float) -> float:
    """The next multiple of ``period`` after ``now`` on the monotonic clock. Every process of a boot reads
    the same CLOCK_MONOTONIC, so timers of one period in many processes (the watchdog pings and heartbeats
    of every supervised process) fire together, and those they wake (the supervisor, the broker, the shell)
    wake once a round for all of them rather than once for each."""
    return (now // period + 1) * period


def earliest(a: float | None, b: float | None) -> float | None:
    """The sooner of two deadlines, either of which may be None (none)."""
    return b if a is None else a if b is None else min(a, b)
