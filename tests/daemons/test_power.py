"""powerd: the sysfs backend against a fake power_supply tree, the simulation, uevents."""

from __future__ import annotations

import pytest

from bus.node import Node
from daemons.power.backends import SimPower, SysfsPower
from daemons.power.uevent import parse
from policies.loader import load
from tests.conftest import DEADLINE_S, tuned_policies, wait_for
from tests.system import System, running


def fake_supply(root, name, capacity=80, status="Discharging", **extra):
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    files = {"present": "1", "capacity": str(capacity), "status": status, "voltage_now": "3900000",
             "current_now": "150000", "charge_now": "300000", **extra}
    for key, value in files.items():
        (path / key).write_text(value + "\n")
    return path


def fake_tree(tmp_path):
    root = tmp_path / "power_supply"
    fake_supply(root, "battery-left", 80)
    fake_supply(root, "battery-right", 60)
    fake_supply(root, "battery-bridge", 100, time_to_empty_now="240")
    return root


def test_sysfs_reads_each_supply_in_the_kernels_units(tmp_path):
    root = fake_tree(tmp_path)
    reading = SysfsPower(root, ["battery-left", "battery-right"], "battery-bridge").read()
    left, right = reading.batteries
    assert (left.present, left.percent, left.voltage) == (True, 80.0, 3.9)
    assert left.time_to_empty_s == pytest.approx(300000 / 150000 * 3600)
    assert right.percent == 60.0 and reading.bridge.time_to_empty_s == 240.0
    assert reading.errors == []


def test_sysfs_a_pulled_or_broken_battery(tmp_path):
    root = fake_tree(tmp_path)
    (root / "battery-right" / "present").write_text("0\n")
    (root / "battery-left" / "capacity").write_text("garbage\n")
    reading = SysfsPower(root, ["battery-left", "battery-right"], "battery-bridge").read()
    assert reading.batteries[1].present is False
    assert any("capacity" in e and "not a number" in e for e in reading.errors)


def test_sim_drains_faster_with_the_camera_on_and_the_bridge_carries_a_swap():
    numbers = load().hardware["power_sim"]
    idle, busy = SimPower(["l", "r"], numbers, now=0.0), SimPower(["l", "r"], numbers, now=0.0)
    busy.camera = True
    assert busy.read(now=60.0).batteries[0].percent < idle.read(now=60.0).batteries[0].percent
    idle.present["l"] = idle.present["r"] = False
    before = idle.read(now=60.0).bridge.percent
    assert idle.read(now=120.0).bridge.percent < before


def test_uevent_parsing():
    datagram = b"change@/devices/platform/bat/power_supply/battery-left\0ACTION=change\0SUBSYSTEM=power_supply\0"
    assert parse(datagram)["SUBSYSTEM"] == "power_supply"
    assert parse(b"libudev\0\xfe\xed") == {}
    assert parse(b"add@/x\0junk-without-equals\0A=b=c") == {"A": "b=c"}


@pytest.mark.slow
def test_powerd_real_reports_a_pull_and_a_late_subscriber_gets_the_present(procs, runtime, tmp_path):
    root = fake_tree(tmp_path)
    policies = tuned_policies(tmp_path, {"hardware.toml": {"power": {"sysfs_root": str(root), "poll_s": 0.02}}})
    procs.start_broker()
    procs.start_ready("-m", "daemons.power", "--backend", "real", "--policy-dir", str(policies))
    seen = []
    with Node("watcher", runtime) as watcher:
        watcher.subscribe("power", lambda m: seen.append(m))
        watcher.start()
        state = wait_for(lambda: [m.payload for m in seen if m.topic == "power.state"], DEADLINE_S, "power.state",
                         poll=watcher.run_once)[-1]
        assert state["present"] == [True, True] and state["percent"] == 70.0 and state["backend"] == "real"
        assert state["bridge"]["time_s"] == 240.0

        for name in ("present", "capacity", "status", "voltage_now", "current_now", "charge_now"):
            (root / "battery-left" / name).unlink()
        (root / "battery-left").rmdir()  # the driver unbinds a pulled battery
        event = wait_for(lambda: [m for m in seen if m.topic == "power.event"], DEADLINE_S, "removed",
                         poll=watcher.run_once)[0]
        assert event.payload == {"event": "removed", "battery": "left", "percent": 0.0}
        after = [m for m in seen if m.topic == "power.state"][-1]
        assert after.payload["present"] == [False, True] and after.payload["percent"] == 60.0
        # Reported within one poll of the change: the state and the event leave powerd together.
        assert abs(after.mono_ns - event.mono_ns) < 50_000_000

    with Node("late", runtime) as late:
        got = []
        late.subscribe("power.state", lambda m: got.append(m))
        late.start()
        assert got and got[-1].latched and got[-1].payload["present"] == [False, True]


@pytest.mark.slow
def test_both_batteries_out_is_the_bridges_until_it_is_low_and_both_back_in_is_running_again(procs, runtime,
                                                                                            tmp_path):
    system = System(procs, runtime, tmp_path)
    user = system.watcher
    user.wait_state(running, "boot")
    for side in ("left", "right"):
        user.ask("power.sim.request", action="pull", battery=side)
    state = user.wait_state(lambda s: s["power"]["present"] == [False, False], "both out, seen by the shell")
    assert state["state"] == "battery_swap" and state["power"]["percent"] is None, state
    assert user.latest["power.state"]["percent"] is None  # no battery in: no charge, not 0 %
    for side in ("left", "right"):
        user.ask("power.sim.request", action="insert", battery=side)
    user.wait_state(lambda s: s["running"] and s["power"]["present"] == [True, True], "running again")
    assert not [m for m in user.log if m.topic == "shell.state" and m.payload["state"] in ("critical", "shutdown")]

    for side in ("left", "right"):
        user.ask("power.sim.request", action="pull", battery=side)
    user.wait_state(lambda s: s["power"]["present"] == [False, False], "both out again")
    user.ask("power.sim.request", action="charge", battery="bridge", percent=0.5)  # the bridge runs low
    user.wait_state(lambda s: s["state"] == "shutdown", "an orderly shutdown once the bridge is low")
    assert (system.state_dir / "saved-state.json").exists(), "critical saved the state before the shutdown"
