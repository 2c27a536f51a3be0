"""bus.timers: aligned timers, so that the periodic work of many processes wakes those it reaches once."""

from __future__ import annotations

from bus import timers
from bus.timers import Timers


def test_aligned_timers_armed_at_different_moments_in_different_processes_share_their_deadlines(monkeypatch):
    clock = iter([100.3, 103.9, 104.2])  # CLOCK_MONOTONIC, which every process of a boot reads alike
    monkeypatch.setattr(timers.time, "monotonic", lambda: next(clock))
    ping, beat, other = Timers(), Timers(), Timers()  # as if in three processes
    ping.every(5.0, lambda: None, aligned=True)
    beat.every(5.0, lambda: None, aligned=True)
    other.every(5.0, lambda: None)  # not aligned: a period from when it was armed
    assert ping.next_deadline() == beat.next_deadline() == 105.0
    assert other.next_deadline() == 109.2


def test_an_aligned_timer_keeps_to_the_multiples_of_its_period(monkeypatch):
    now = [12.5]
    monkeypatch.setattr(timers.time, "monotonic", lambda: now[0])
    fired = []
    t = Timers()
    t.every(5.0, lambda: fired.append(now[0]), aligned=True)
    for now[0] in (15.0, 20.001, 31.0):  # on time, a little late, after a stall (missed rounds skipped)
        t.run_due()
    assert fired == [15.0, 20.001, 31.0]
    assert t.next_deadline() == 35.0
    assert timers.aligned_deadline(5.0, 35.0) == 40.0  # on a multiple: the next one, never now
