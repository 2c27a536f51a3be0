"""Gestures from raw evdev events: the temple touchpad and the button.

The recognizer is fed what the kernel sends (type, code, value, with the
event's own timestamp) and says which gestures happened. It does no I/O and
reads no clock: time moves only with the events and with ``tick(now)``, so
a recorded stream gives the same gestures every time it is played.

The touchpad runs along the temple; only its x axis matters, scaled to 0..1
of the pad's length. Evdev semantics are kept: changes count from the
SYN_REPORT that closes their frame, and a SYN_DROPPED throws away the touch
in progress (half a gesture is worse than none: it could take a photo).

Noise the recognizer rides over:
- bounces: a lift followed by a touch within ``debounce_s`` is one contact;
- overlapping touches: the first finger down decides; others are ignored,
  and no new contact starts until every finger is up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from policies.settings import Section

EV_SYN, EV_KEY, EV_ABS = 0x00, 0x01, 0x03
SYN_REPORT, SYN_DROPPED = 0, 3
BTN_TOUCH = 0x14A
KEY_CAMERA = 212  # the simulated capture button (the real one is named in policy)
ABS_X, ABS_MT_SLOT, ABS_MT_POSITION_X, ABS_MT_TRACKING_ID = 0x00, 0x2F, 0x35, 0x39



class Gesture(NamedTuple):
    name: str  # one of policies.rules.GESTURES
    t: float  # when it was recognized, on the events' clock
    source: str  # "touchpad" or "button"


class Thresholds(NamedTuple):
    tap_max_s: float  # a touch longer than this is not a tap
    double_s: float  # a second tap within this of the first lift is a double tap
    long_s: float  # held still this long: long press (reported while still held)
    slop: float  # movement (fraction of the pad) that still counts as still
    swipe_min: float  # movement (fraction of the pad) that makes a swipe
    swipe_max_s: float  # a slower movement is a drag, not a swipe
    debounce_s: float  # a lift shorter than this is a bounce, not a lift
    forward_increasing: bool  # whether moving toward larger x is "forward"

    @classmethod
    def from_policy(cls, section: Section) -> "Thresholds":
        """From hardware.toml [input] (policies.settings' view of it)."""
        return cls(tap_max_s=section.tap_max_s, double_s=section.double_s, long_s=section.long_s, slop=section.slop,
                   swipe_min=section.swipe_min, swipe_max_s=section.swipe_max_s, debounce_s=section.debounce_s,
                   forward_increasing=section.forward_increasing)


class Recognizer:
    def __init__(self, thresholds: Thresholds, x_range: tuple[int, int] = (0, 1000), button_code: int = -1):
        self.th = thresholds
        self.x_min, self.x_span = x_range[0], max(1, x_range[1] - x_range[0])
        self.button_code = button_code
        self.now = float("-inf")
        # the frame being assembled (applied at SYN_REPORT)
        self.frame: list[tuple[int, int, int]] = []
        self.slot = 0
        self.slots: dict[int, float | None] = {}  # MT slot -> x of the finger in it (None: not yet known)
        self.btn_touch: bool | None = None  # None until the device shows it sends BTN_TOUCH
        self.single_x: float | None = None  # single-touch ABS_X
        # the contact
        self.primary: int | None = None  # MT slot of the finger that decides (0 for single-touch)
        self.down_t = self.x0 = self.x = 0.0
        self.touching = False
        self.long_sent = False
        self.still = True  # the contact has stayed within slop of where it began (a long press may come)
        self.lift_t: float | None = None  # a lift waiting out the debounce time
        self.tap_t: float | None = None  # a tap waiting to see if a second one follows
        self.blocked = False  # extra fingers still down after the primary lifted
        self.button_t: float | None = None
        self.button_long_sent = False
        self.dropped = 0  # SYN_DROPPED seen (the kernel's buffer overflowed)

    # --- input ------------------------------------------------------------------------
    def feed(self, t: float, type_: int, code: int, value: int) -> list[Gesture]:
        out = self.tick(t)
        if type_ == EV_SYN:
            if code == SYN_REPORT:
                out += self._apply(t)
            elif code == SYN_DROPPED:
                self.dropped += 1
                self.frame.clear()
                self._cancel()
        else:
            self.frame.append((type_, code, value))
        return out

    def tick(self, now: float) -> list[Gesture]:
        """Let time pass: lifts that were not bounces, taps that stayed single, presses that got long."""
        if now < self.now:
            return []
        self.now = now
        out: list[Gesture] = []
        if self.lift_t is not None and now >= self.lift_t + self.th.debounce_s:
            out += self._lifted(self.lift_t)
        if self.tap_t is not None and self.lift_t is None and not self.touching \
                and now >= self.tap_t + self.th.double_s:
            out.append(Gesture("tap", self.tap_t + self.th.double_s, "touchpad"))
            self.tap_t = None
        if self.touching and not self.long_sent and self.still and now >= self.down_t + self.th.long_s:
            self.long_sent = True
            out += self._flush_tap()
            out.append(Gesture("long_press", self.down_t + self.th.long_s, "touchpad"))
        if self.button_t is not None and not self.button_long_sent and now >= self.button_t + self.th.long_s:
            self.button_long_sent = True
            out.append(Gesture("button_long", self.button_t + self.th.long_s, "button"))
        return out

    def next_deadline(self) -> float | None:
        """When tick() may next have something to say; None when nothing is pending."""
        times = []
        if self.lift_t is not None:
            times.append(self.lift_t + self.th.debounce_s)
        elif self.tap_t is not None and not self.touching:
            times.append(self.tap_t + self.th.double_s)
        if self.touching and not self.long_sent and self.still:
            # Only a still finger has a long press coming: a deadline tick() does not clear
            # would come back at once, forever, for a finger that moved and stays down.
            times.append(self.down_t + self.th.long_s)
        if self.button_t is not None and not self.button_long_sent:
            times.append(self.button_t + self.th.long_s)
        return min(times, default=None)

    # --- one frame of events -----------------------------------------------------------
    def _apply(self, t: float) -> list[Gesture]:
        out: list[Gesture] = []
        frame, self.frame = self.frame, []
        for type_, code, value in frame:
            if type_ == EV_KEY and code == self.button_code:
                out += self._button(t, value)
            elif type_ == EV_KEY and code == BTN_TOUCH:
                self.btn_touch = bool(value)
            elif type_ == EV_ABS and code == ABS_X:
                self.single_x = self._scale(value)
            elif type_ == EV_ABS and code == ABS_MT_SLOT:
                self.slot = value
            elif type_ == EV_ABS and code == ABS_MT_TRACKING_ID:
                if value < 0:
                    self.slots.pop(self.slot, None)
                else:
                    self.slots[self.slot] = None
            elif type_ == EV_ABS and code == ABS_MT_POSITION_X and self.slot in self.slots:
                self.slots[self.slot] = self._scale(value)
        return out + self._contact(t)

    def _contact(self, t: float) -> list[Gesture]:
        """Turn the fingers now down into the one contact that decides."""
        fingers = {s: x for s, x in self.slots.items() if x is not None}
        if not self.slots and self.btn_touch is not None:  # single-touch pad: BTN_TOUCH and ABS_X
            fingers = {0: self.single_x} if self.btn_touch and self.single_x is not None else {}
        elif self.slots and self.btn_touch is False:
            fingers = {}  # BTN_TOUCH is the kernel's word on "nothing touches"
        if self.touching:
            if self.primary in fingers:
                self.x = fingers[self.primary]
                self.still = self.still and abs(self.x - self.x0) < self.th.slop  # a drag stays one
                return []
            self.lift_t = t  # the deciding finger is up: a lift, unless it bounces back
            self.touching = False
            self.blocked = len(fingers) > 0
            return []
        if not fingers:
            self.blocked = False
            return []
        if self.blocked:
            return []  # a finger left over from an earlier contact
        slot = min(fingers)
        if self.lift_t is not None and abs(fingers[slot] - self.x) < self.th.slop:
            self.lift_t, self.touching, self.primary = None, True, slot  # a bounce: the same contact
            self.x = fingers[slot]
            return []
        out = self._lifted(self.lift_t) if self.lift_t is not None else []
        self.primary, self.touching, self.long_sent, self.still = slot, True, False, True
        self.down_t, self.x0 = t, fingers[slot]
        self.x = self.x0
        return out

    def _lifted(self, t: float) -> list[Gesture]:
        """The contact ended at t: what was it?"""
        self.lift_t = None
        held, moved = t - self.down_t, self.x - self.x0
        if self.long_sent:
            return []
        if abs(moved) < self.th.slop and held <= self.th.tap_max_s:
            if self.tap_t is not None and self.down_t - self.tap_t <= self.th.double_s:
                self.tap_t = None
                return [Gesture("double_tap", t, "touchpad")]
            out, self.tap_t = self._flush_tap(), t
            return out
        out = self._flush_tap()  # a tap followed by something else was a tap
        if abs(moved) >= self.th.swipe_min and held <= self.th.swipe_max_s:
            forward = (moved > 0) == self.th.forward_increasing
            out.append(Gesture("swipe_forward" if forward else "swipe_back", t, "touchpad"))
        return out

    def _flush_tap(self) -> list[Gesture]:
        tap_t, self.tap_t = self.tap_t, None
        return [Gesture("tap", tap_t, "touchpad")] if tap_t is not None else []

    def _button(self, t: float, value: int) -> list[Gesture]:
        if value == 1 and self.button_t is None:
            self.button_t, self.button_long_sent = t, False
            return []
        if value == 0 and self.button_t is not None:
            pressed, self.button_t = self.button_t, None
            if not self.button_long_sent and t - pressed >= self.th.debounce_s:
                return [Gesture("button", t, "button")]
        return []  # 2 is autorepeat: the long press comes from the clock, not from repeats

    def _cancel(self) -> None:
        self.touching, self.lift_t, self.tap_t, self.blocked = False, None, None, False
        self.slots.clear()
        self.btn_touch = None if self.btn_touch is None else False
        self.button_t = None

    def _scale(self, value: int) -> float:
        return (value - self.x_min) / self.x_span


def parse_evemu(text: str) -> list[tuple[float, int, int, int]]:
    """Events of an ``evemu-record`` recording ("E: 12.345678 0003 0035 0512"), the format
    developers capture on a board; other lines (device description, comments) are skipped."""
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("E:"):
            continue
        parts = line[2:].split("#", 1)[0].split()
        try:
            t, type_, code, value = float(parts[0]), int(parts[1], 16), int(parts[2], 16), int(parts[3])
        except (IndexError, ValueError):
            raise ValueError(f"line {number}: not an evemu event: {line!r}") from None
        events.append((t, type_, code, value))
    return events


def evemu_x_range(text: str) -> tuple[int, int]:
    """The touchpad's x range from a recording's "A:" lines (MT position, else ABS_X)."""
    ranges = {}
    for line in text.splitlines():
        if line.startswith("A:"):
            code, low, high = line[2:].split()[:3]
            ranges[int(code, 16)] = (int(low), int(high))
    return ranges.get(ABS_MT_POSITION_X) or ranges.get(ABS_X) or (0, 1000)


def play(recognizer: Recognizer, events: list[tuple[float, int, int, int]]) -> list[Gesture]:
    """Every gesture of a recorded stream, including those decided after its last event."""
    out = []
    for event in events:
        out += recognizer.feed(*event)
    while (deadline := recognizer.next_deadline()) is not None:
        out += recognizer.tick(deadline)
    return out
