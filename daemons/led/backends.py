"""The capture LED's backends: the Linux LED class in sysfs, and a simulated LED.

Both only switch and read back; deciding whether the read-back is good
enough is ledd's job, so it is the same for both.
"""

from __future__ import annotations

from pathlib import Path


class LedFault(Exception):
    """The LED cannot be driven or read: the message says what the driver said."""


class SysfsLed:
    """``/sys/class/leds/<name>``: write ``brightness``, read it back.

    A trigger (heartbeat, disk activity...) would blink the LED behind the
    shell's back, so it is set to ``none`` on open.
    """

    name = "real"

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        try:
            self.max = int((self.dir / "max_brightness").read_text().strip() or 0)
        except (OSError, ValueError) as exc:
            raise LedFault(f"{self.dir}/max_brightness: {_why(exc)}") from None
        if self.max <= 0:
            raise LedFault(f"{self.dir}/max_brightness is {self.max}: this LED cannot be lit")
        trigger = self.dir / "trigger"
        if trigger.exists():
            self._write(trigger, "none")
        self.brightness = 0

    def set(self, on: bool) -> None:
        self._write(self.dir / "brightness", str(self.max if on else 0))

    def read(self) -> bool:
        try:
            self.brightness = int((self.dir / "brightness").read_text().strip())
        except (OSError, ValueError) as exc:
            raise LedFault(f"{self.dir}/brightness: {_why(exc)}") from None
        return self.brightness > 0

    @staticmethod
    def _write(path: Path, text: str) -> None:
        try:
            with open(path, "w") as f:  # one write(2), as sysfs attributes expect
                f.write(text)
        except OSError as exc:
            raise LedFault(f"{path}: {_why(exc)}") from None


class SimLed:
    """An LED in memory that can be broken on purpose (``lens led fault``) to test the fail-closed path."""

    name = "sim"

    def __init__(self):
        self.lit = False
        self.broken: str | None = None
        self.brightness = 0

    def set(self, on: bool) -> None:
        if self.broken:
            raise LedFault(self.broken)
        self.lit = on
        self.brightness = 255 if on else 0

    def read(self) -> bool:
        if self.broken:
            raise LedFault(self.broken)
        return self.lit

    def break_(self, why: str | None) -> None:
        self.broken = why
        if why:
            self.lit = False  # a broken LED is dark
            self.brightness = 0


def _why(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
