"""powerd's backends: Linux power supplies in sysfs, and a simulated pack driven by load.

Both return a Reading: each swappable battery, left first, and the bridge.
Times are in real seconds; the simulation runs ``speedup`` times faster
than the wall clock and converts back, so the shell's thresholds (seconds
of bridge left) mean the same thing on a laptop as on the glasses.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from policies.settings import Section


class Battery(NamedTuple):
    name: str
    present: bool
    percent: float
    charging: bool = False
    voltage: float = 0.0
    time_to_empty_s: float | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "present": self.present, "percent": round(self.percent, 1),
                "charging": self.charging, "voltage": round(self.voltage, 2),
                "time_to_empty_s": None if self.time_to_empty_s is None else round(self.time_to_empty_s)}


class Reading(NamedTuple):
    batteries: list[Battery]
    bridge: Battery
    load_w: float = 0.0
    errors: tuple[str, ...] | list[str] = ()


class SysfsPower:
    """``/sys/class/power_supply/<name>/``: present, capacity, status, voltage_now, current_now.

    A battery whose directory has vanished (the driver unbinds it when it is
    pulled) or whose ``present`` reads 0 is out. Units are the kernel's:
    microvolts, microamps, microamp-hours, microwatt-hours.
    """

    name = "real"

    def __init__(self, root: str | Path, batteries: list[str], bridge: str):
        self.root, self.names, self.bridge_name = Path(root), list(batteries), bridge

    def read(self) -> Reading:
        errors: list[str] = []
        batteries = [self._supply(name, errors) for name in self.names]
        bridge = self._supply(self.bridge_name, errors)
        load = sum(_power_w(self.root / b.name) or 0.0 for b in batteries if b.present)
        return Reading(batteries, bridge, load, errors)

    def _supply(self, name: str, errors: list[str]) -> Battery:
        path = self.root / name
        if not path.is_dir():
            return Battery(name, False, 0.0)
        present = _int(path / "present", 1, errors)
        if not present:
            return Battery(name, False, 0.0)
        status = _text(path / "status", "Unknown", errors)
        voltage = _int(path / "voltage_now", 0, errors) / 1e6
        return Battery(name, True, float(_int(path / "capacity", 0, errors)), status == "Charging", voltage,
                       _time_to_empty(path, status, errors))


def _text(path: Path, default: str, errors: list[str]) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return default
    except OSError as exc:
        errors.append(f"{path}: {exc.strerror}")
        return default


def _int(path: Path, default: int, errors: list[str]) -> int:
    text = _text(path, str(default), errors)
    try:
        return int(text)
    except ValueError:
        errors.append(f"{path}: not a number: {text[:20]!r}")
        return default


def _time_to_empty(path: Path, status: str, errors: list[str]) -> float | None:
    if status != "Discharging":
        return None
    direct = _int(path / "time_to_empty_now", -1, errors)
    if direct >= 0:
        return float(direct)
    current = abs(_int(path / "current_now", 0, errors))
    charge = _int(path / "charge_now", -1, errors)
    if current and charge >= 0:
        return charge / current * 3600
    power = abs(_int(path / "power_now", 0, errors))
    energy = _int(path / "energy_now", -1, errors)
    if power and energy >= 0:
        return energy / power * 3600
    return None


def _power_w(path: Path) -> float | None:
    try:
        if (path / "power_now").exists():
            return abs(int((path / "power_now").read_text())) / 1e6
        return abs(int((path / "current_now").read_text()) * int((path / "voltage_now").read_text())) / 1e12
    except (OSError, ValueError):
        return None


class SimPower:
    """Two swappable batteries and a bridge, drained by what the glasses are doing.

    The load follows the shell: display brightness and whether the camera or
    the mic is capturing. While any battery is in, the batteries share the
    load and top up the bridge; with none in, the bridge carries it alone.
    """

    name = "sim"
    BRIDGE_CHARGE_W = 0.2

    def __init__(self, names: list[str], numbers: Section, now: float | None = None):
        self.n = numbers
        self.names = list(names)
        self.energy = {name: numbers.battery_wh for name in self.names}  # Wh
        self.present = {name: True for name in self.names}
        self.bridge_wh = numbers.bridge_wh
        self.brightness, self.camera, self.mic = 1.0, False, False
        self.clock = time.monotonic() if now is None else now

    def load_w(self) -> float:
        n = self.n
        return n.base_w + n.display_w * self.brightness + n.camera_w * self.camera + n.mic_w * self.mic

    def advance(self, now: float) -> None:
        hours = max(now - self.clock, 0.0) * self.n.speedup / 3600
        self.clock = now
        inside = [name for name in self.names if self.present[name] and self.energy[name] > 0]
        load = self.load_w()
        if inside:
            topping = self.BRIDGE_CHARGE_W if self.bridge_wh < self.n.bridge_wh else 0.0
            share = (load + topping) / len(inside)
            for name in inside:
                self.energy[name] = max(self.energy[name] - share * hours, 0.0)
            self.bridge_wh = min(self.bridge_wh + topping * hours, self.n.bridge_wh)
        else:
            self.bridge_wh = max(self.bridge_wh - load * hours, 0.0)

    def read(self, now: float | None = None) -> Reading:
        self.advance(time.monotonic() if now is None else now)
        load, speed = self.load_w(), self.n.speedup
        inside = [name for name in self.names if self.present[name] and self.energy[name] > 0]
        batteries = []
        for name in self.names:
            if not self.present[name]:
                batteries.append(Battery(name, False, 0.0))
                continue
            frac = self.energy[name] / self.n.battery_wh
            share = load / len(inside) if name in inside else 0.0
            tte = self.energy[name] / share * 3600 / speed if share else None
            batteries.append(Battery(name, True, 100 * frac, False, 3.3 + 0.9 * frac, tte))
        frac = self.bridge_wh / self.n.bridge_wh
        bridge_tte = self.bridge_wh / load * 3600 / speed if load else None
        bridge = Battery("bridge", True, 100 * frac, bool(inside) and frac < 1, 3.3 + 0.9 * frac, bridge_tte)
        return Reading(batteries, bridge, load)

    def resume(self, state: dict) -> None:
        """Take up where a power.state of an earlier powerd left the batteries: their charge, which are out
        (a pulled one's charge was never published: it comes back as it was when this process began)."""
        self.advance(time.monotonic())
        for battery in state["batteries"]:
            name = battery["name"]
            if name in self.present:
                self.present[name] = bool(battery["present"])
                if battery["present"] and battery["percent"] is not None:
                    self.energy[name] = self.n.battery_wh * min(max(battery["percent"], 0.0), 100.0) / 100
        self.bridge_wh = self.n.bridge_wh * min(max(state["bridge"]["percent"], 0.0), 100.0) / 100

    def pull(self, name: str) -> None:
        self.advance(time.monotonic())
        self.present[name] = False

    def insert(self, name: str) -> None:
        self.advance(time.monotonic())
        self.present[name] = True

    def charge(self, name: str, percent: float) -> None:
        self.advance(time.monotonic())
        if name == "bridge":
            self.bridge_wh = self.n.bridge_wh * percent / 100
        else:
            self.energy[name] = self.n.battery_wh * percent / 100
