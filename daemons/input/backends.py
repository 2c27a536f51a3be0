"""Where inputd's raw events come from: evdev devices on the board, or played-out gestures in simulation.

Both hand inputd the same thing: lists of (t, type, code, value) on the
monotonic clock, per source ("touchpad", "button"), so the recognizer and
its timers cannot tell them apart.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import NamedTuple

from daemons.input.gestures import ABS_MT_POSITION_X, ABS_X, BTN_TOUCH, EV_ABS, EV_KEY, EV_SYN, KEY_CAMERA

_EVENT = struct.Struct("llHHi")  # struct input_event on 64-bit Linux: timeval, type, code, value
_BATCH = 64  # events read per wake-up; the rest wait for the next poll
CLOCK_MONOTONIC = 1


class InputError(RuntimeError):
    """An input device cannot be opened or went away."""


class Source(NamedTuple):
    name: str  # "touchpad" or "button"
    fd: int | None  # None: nothing to poll (simulated)
    x_range: tuple[int, int]
    button_code: int


class EvdevInput:
    """The board's input devices through the kernel's evdev interface (linuxpy for the ioctls).

    Each device is grabbed, so nothing else on the board (a console, a
    stray Xorg) sees touches meant for the glasses, and its timestamps are
    switched to CLOCK_MONOTONIC, the clock inputd's timers run on."""

    name = "evdev"

    def __init__(self, paths: dict[str, str], button_key: str):
        from linuxpy.input import raw  # only the real backend pays for linuxpy

        try:
            self.button_code = raw.Key[button_key].value
        except KeyError:
            raise InputError(f"unknown key name {button_key!r} (e.g. KEY_CAMERA)") from None
        self.devices, self.sources = [], []
        for name, path in paths.items():
            if path:
                self._open(name, path)

    def _open(self, name: str, path: str) -> None:
        from linuxpy.input import device as evdev
        from linuxpy.ioctl import IOW
        from linuxpy.ctypes import cint

        try:
            dev = evdev.Device(path, read_write=False, blocking=False)
            dev.open()
        except OSError as exc:
            raise InputError(f"{name}: cannot open {path}: {exc.strerror or exc}") from None
        try:
            dev.grab()
            evdev.ioctl(dev.fileno(), IOW(ord("E"), 0xA0, cint), cint(CLOCK_MONOTONIC))  # EVIOCSCLOCKID
            x_range = (0, 1000)
            for code in (ABS_MT_POSITION_X, ABS_X):
                try:
                    info = evdev.abs_info(dev.fileno(), code)
                    x_range = (info.minimum, info.maximum)
                    break
                except OSError:
                    continue  # the device has no such axis (a button)
        except OSError as exc:
            dev.close()
            raise InputError(f"{name}: {path} is not a usable input device: {exc.strerror or exc}") from None
        self.devices.append(dev)
        self.sources.append(Source(name, dev.fileno(), x_range, self.button_code))

    def read(self, source: Source) -> list[tuple[float, int, int, int]]:
        try:
            data = os.read(source.fd, _EVENT.size * _BATCH)
        except BlockingIOError:
            return []
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise InputError(f"{source.name}: the device went away") from None
            raise InputError(f"{source.name}: read failed: {exc.strerror}") from None
        return [(sec + usec / 1e6, type_, code, value)
                for sec, usec, type_, code, value in _EVENT.iter_unpack(data[: len(data) // _EVENT.size * _EVENT.size])]

    def close(self) -> None:
        for dev in self.devices:
            dev.close()


class SimInput:
    """Gestures played out as the raw events a real finger makes, in real time.

    `lens input tap` ends up here; the events then go through the same
    recognizer as the board's, so the simulation tests the recognizer too."""

    name = "sim"
    BUTTON = KEY_CAMERA

    def __init__(self, thresholds):
        self.th = thresholds
        self.sources = [Source("touchpad", None, (0, 1000), self.BUTTON),
                        Source("button", None, (0, 1000), self.BUTTON)]

    def script(self, gesture: str) -> tuple[str, list[tuple[float, int, int, int]]]:
        """(source, events with offsets in seconds from now) for a named gesture."""
        th = self.th
        tap_s = min(0.08, th.tap_max_s / 2)
        sweep = int(1000 * min(0.9, th.swipe_min * 2))
        if gesture == "tap":
            return "touchpad", _touch(0.0, [500], tap_s)
        if gesture == "double_tap":
            gap = max(th.debounce_s * 2, min(0.12, th.double_s / 2))
            return "touchpad", _touch(0.0, [500], tap_s) + _touch(tap_s + gap, [505], tap_s)
        if gesture == "long_press":
            return "touchpad", _touch(0.0, [500], th.long_s + 0.15)
        if gesture in ("swipe_forward", "swipe_back"):
            forward = (gesture == "swipe_forward") == th.forward_increasing
            xs = [500 + (i - 3) * sweep // 6 * (1 if forward else -1) for i in range(7)]
            return "touchpad", _touch(0.0, xs, min(0.2, th.swipe_max_s / 2))
        if gesture in ("button", "button_long"):
            held = th.long_s + 0.15 if gesture == "button_long" else max(0.08, th.debounce_s * 2)
            return "button", [(0.0, EV_KEY, self.BUTTON, 1), (0.0, EV_SYN, 0, 0),
                              (held, EV_KEY, self.BUTTON, 0), (held, EV_SYN, 0, 0)]
        raise ValueError(f"unknown gesture {gesture!r}")

    def close(self) -> None:
        pass


def _touch(start: float, xs: list[int], held: float) -> list[tuple[float, int, int, int]]:
    """A finger down at xs[0], moving through xs evenly, lifted after ``held`` seconds."""
    events = [(start, EV_KEY, BTN_TOUCH, 1)]
    for i, x in enumerate(xs):
        t = start + held * i / max(1, len(xs))
        events += [(t, EV_ABS, ABS_X, x), (t, EV_SYN, 0, 0)]
    return events + [(start + held, EV_KEY, BTN_TOUCH, 0), (start + held, EV_SYN, 0, 0)]
