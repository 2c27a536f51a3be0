"""Gestures recognized from recorded evdev streams (evemu-record format), clean and noisy."""

from pathlib import Path

import pytest

from daemons.input.gestures import (
    ABS_X, BTN_TOUCH, EV_ABS, EV_KEY, EV_SYN, KEY_CAMERA, Recognizer, Thresholds, evemu_x_range, parse_evemu,
    play,
)
from policies.loader import load

RECORDINGS = Path(__file__).resolve().parent.parent / "data" / "input"


def thresholds() -> Thresholds:
    return Thresholds.from_policy(load().hardware.input)


def replay(name: str) -> list[str]:
    text = (RECORDINGS / name).read_text()
    recognizer = Recognizer(thresholds(), evemu_x_range(text), button_code=KEY_CAMERA)
    return [g.name for g in play(recognizer, parse_evemu(text))]


@pytest.mark.parametrize("recording, gestures", [
    ("tap.evemu", ["tap"]),
    ("double_tap.evemu", ["double_tap"]),
    ("long_press.evemu", ["long_press"]),
    ("swipes.evemu", ["swipe_forward", "swipe_back"]),
    ("bouncy_tap.evemu", ["tap"]),
    ("tap_then_swipe.evemu", ["tap", "swipe_forward"]),
    ("dropped.evemu", ["tap"]),
    ("multitouch_overlap.evemu", ["swipe_forward", "tap"]),
    ("button.evemu", ["button", "button_long"]),
])
def test_recorded_streams_give_their_gestures(recording, gestures):
    assert replay(recording) == gestures


def test_every_recording_is_tested():
    tested = {"tap", "double_tap", "long_press", "swipes", "bouncy_tap", "tap_then_swipe", "dropped",
              "multitouch_overlap", "button"}
    assert {p.stem for p in RECORDINGS.glob("*.evemu")} == tested


def touch(t: float, x: int, down: bool | None = None) -> list[tuple]:
    events = [(t, EV_KEY, BTN_TOUCH, int(down))] if down is not None else []
    return events + [(t, EV_ABS, ABS_X, x), (t, EV_SYN, 0, 0)]


def test_a_single_tap_waits_for_the_double_tap_window_and_not_longer():
    th = thresholds()
    r = Recognizer(th)
    for event in touch(0.0, 500, True) + [(0.05, EV_KEY, BTN_TOUCH, 0), (0.05, EV_SYN, 0, 0)]:
        assert r.feed(*event) == []
    deadline = r.next_deadline()
    assert deadline is not None and deadline <= 0.05 + th.debounce_s + th.double_s + 1e-9
    assert r.tick(0.05 + th.debounce_s) == []  # the lift is real, the tap may still become a double
    tapped = []
    while not tapped:
        tapped = r.tick(r.next_deadline())
    assert [g.name for g in tapped] == ["tap"] and tapped[0].t == pytest.approx(0.05 + th.double_s)
    assert r.next_deadline() is None  # nothing left pending: the daemon sleeps


def test_a_long_press_is_reported_while_still_held():
    th = thresholds()
    r = Recognizer(th)
    r.feed(*touch(0.0, 500, True)[0]), r.feed(*touch(0.0, 500, True)[1]), r.feed(*touch(0.0, 500, True)[2])
    assert r.tick(th.long_s - 0.01) == []
    assert [g.name for g in r.tick(th.long_s)] == ["long_press"]
    assert r.tick(th.long_s * 3) == []  # once


def test_a_slow_drag_is_nothing():
    th = thresholds()
    r = Recognizer(th)
    events = touch(0.0, 100, True)
    events += [e for i in range(1, 30) for e in touch(i * 0.1, 100 + i * 20)]
    events += [(3.0, EV_KEY, BTN_TOUCH, 0), (3.0, EV_SYN, 0, 0)]
    assert [g.name for g in play(r, events)] == []


def test_a_finger_that_moved_and_stays_down_has_no_deadline_pending():
    th = thresholds()
    r = Recognizer(th)
    events = touch(0.0, 100, True) + touch(0.05, 100 + int(th.slop * 1000) + 50)  # moved, then held still
    for event in events:
        r.feed(*event)
    assert r.tick(th.long_s + 1.0) == []  # a drag held: no long press
    assert r.next_deadline() is None  # and nothing to wake inputd for until the next event
    for event in touch(2.0, 100):  # back where it began: still a drag, never a long press
        assert r.feed(*event) == []
    assert r.tick(3.0) == [] and r.next_deadline() is None


def test_a_broken_recording_names_its_line():
    with pytest.raises(ValueError, match="line 2"):
        parse_evemu("N: pad\nE: 1.0 0003 zz 5\n")
