"""powerd: the sysfs backend against a fake power_supply tree, the simulation, uevents."""

from __future__ import annotations

import pytest

from bus.node import Node
from daemons.power.__main__ import BRIDGING_PERIOD_S, Powerd
from daemons.power.backends import Battery, Reading, SimPower, SysfsPower
from daemons.power.uevent import parse
from policies.loader import load
from tests.conftest import DEADLINE_S, tuned_policies, wait_for
from tests.system import FAST, System, running


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


@pytest.mark.fault
def test_sim_drains_faster_with_the_camera_on_and_the_bridge_carries_a_swap():
    numbers = load().hardware.power_sim
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


@pytest.mark.fault
def test_a_bridge_without_a_time_estimate_carries_a_swap_and_is_not_taken_for_empty(procs, runtime, tmp_path):
    # Found booting the board image (test_power's bridge reads "Full", with no time to empty): powerd published
    # the bridge's seconds as 0, so the shell took one battery pulled for a bridge about to die and went to
    # critical at once, never battery_swap. Unknown is now null, and only a known low time is bridge_low.
    root = tmp_path / "power_supply"
    fake_supply(root, "battery-left", 80)
    fake_supply(root, "battery-right", 60)
    fake_supply(root, "battery-bridge", 100, status="Full")
    changes = {**FAST, "hardware.toml": {**FAST["hardware.toml"], "power": {"sysfs_root": str(root), "poll_s": 0.05}}}
    system = System(procs, runtime, tmp_path, changes)
    procs.stop(system.powerd)
    system.powerd = procs.start_ready("-m", "daemons.power", "--backend", "real")
    user = system.watcher
    user.wait_state(lambda s: running(s) and s["power"]["present"] == [True, True], "running on the real backend")
    (root / "battery-left" / "present").write_text("0\n")
    state = user.wait_state(lambda s: s["power"]["present"] == [False, True], "the pull, seen by the shell")
    assert state["state"] == "battery_swap", state["state"]
    assert user.latest["power.state"]["bridge"]["time_s"] is None
    (root / "battery-left" / "present").write_text("1\n")
    user.wait_state(lambda s: running(s) and s["power"]["present"] == [True, True], "running again")
    assert not [m for m in user.log if m.topic == "shell.state" and m.payload["state"] in ("critical", "shutdown")]
    assert not [m for m in user.log if m.topic == "power.event" and m.payload["event"] == "bridge_low"]


@pytest.mark.fault
@pytest.mark.slow
def test_both_batteries_out_is_the_bridges_until_it_is_low_and_both_back_in_is_running_again(procs, runtime,
                                                                                            tmp_path):
    system = System(procs, runtime, tmp_path)
    user = system.watcher
    user.wait_state(running, "boot")
    for side in ("left", "right"):
        user.ask("power.sim.request", action="pull", battery=side)
    state = user.wait_state(lambda s: s["power"]["present"] == [False, False], "both out, seen by the shell")
    assert state["state"] == "battery_swap", state
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


@pytest.mark.fault
def test_a_restarted_powerd_takes_the_simulated_batteries_up_where_they_were(procs, runtime, tmp_path):
    """Issue 28, line 6: a killed powerd came back with its simulated batteries full again (56 % -> 100 %),
    and a pulled one back in. Real batteries keep their charge; simulated ones now do too."""
    import signal

    procs.start_broker()
    powerd = procs.start_ready("-m", "daemons.power", "--backend", "sim")
    seen = []
    with Node("watcher", runtime) as watcher:
        watcher.subscribe("power", seen.append)
        watcher.start()
        watcher.request("power.sim.request", action="charge", battery="left", percent=56.0, timeout=DEADLINE_S)
        watcher.request("power.sim.request", action="pull", battery="right", timeout=DEADLINE_S)
        before = wait_for(lambda: [m for m in seen if m.topic == "power.state" and m.payload["present"] == [True, False]
                                   and round(m.payload["batteries"][0]["percent"]) == 56], DEADLINE_S,
                          "left at 56 %, right out", poll=watcher.run_once)[-1]
        powerd.send_signal(signal.SIGKILL)
        powerd.wait(timeout=DEADLINE_S)
        seen.clear()
        procs.start_ready("-m", "daemons.power", "--backend", "sim")
        after = wait_for(lambda: [m for m in seen if m.topic == "power.state" and not m.latched
                                  and m.incarnation != before.incarnation], DEADLINE_S, "the new powerd's state",
                         poll=watcher.run_once)[0].payload
        assert after["present"] == [True, False], after
        assert after["batteries"][0]["percent"] == pytest.approx(56.0, abs=1.0), after
        assert after["bridge"]["percent"] == pytest.approx(before.payload["bridge"]["percent"], abs=1.0)
        watcher.run_once(0.2)
        assert not [m for m in seen if m.topic == "power.event" and m.payload["event"] in ("inserted", "removed")], \
            "a restart is no pull and no insert"


class Recorder:
    """A node that keeps what powerd publishes."""

    def __init__(self):
        self.sent, self.timers = [], []

    def publish(self, topic, **payload):
        self.sent.append((topic, payload))

    def after(self, delay, callback):
        from bus.timers import Timer

        self.timers.append(Timer(delay, None, callback))  # deadline: the delay asked for
        return self.timers[-1]


class Scripted:
    """A backend that reads what the test says, one reading a sample."""

    name = "real"

    def __init__(self):
        self.reading = None

    def set(self, left: float, right: float = 80.0, left_in: bool = True, time_s: float = 3600.0) -> None:
        batteries = [Battery("battery-left", left_in, left if left_in else 0.0, time_to_empty_s=time_s),
                     Battery("battery-right", True, right, time_to_empty_s=time_s)]
        self.reading = Reading(batteries, Battery("battery-bridge", True, 100.0, time_to_empty_s=240.0))

    def read(self):
        return self.reading


def test_powerd_publishes_what_a_reader_shows_or_acts_on_not_every_tenth_of_a_percent():
    """A drain moves the charge by a tenth of a percent every few seconds; the HUD and home show whole
    percents and the shell acts on thresholds. Each power.state sent woke the shell, which sent shell.state,
    which woke every daemon: idle glasses spent most of their wake-ups on it (issue 33)."""
    policy = load()
    node, backend = Recorder(), Scripted()
    powerd = Powerd(node, backend, policy)
    states = lambda: [p for topic, p in node.sent if topic == "power.state"]  # noqa: E731

    backend.set(80.4)
    powerd.sample()
    for left in (80.3, 80.2, 80.1, 79.9, 79.6):  # shown as 80 throughout, no threshold near
        backend.set(left)
        powerd.sample()
    assert len(states()) == 1, [s["batteries"][0]["percent"] for s in states()]
    backend.set(79.4)  # shown as 79 now
    powerd.sample()
    assert len(states()) == 2 and states()[-1]["batteries"][0]["percent"] == 79.4

    critical = policy.system.power.critical_percent
    backend.set(critical + 0.3, critical + 0.3)
    powerd.sample()
    sent = len(states())
    backend.set(critical - 0.1, critical - 0.1)  # the same whole percent shown, but below critical now
    powerd.sample()
    assert len(states()) == sent + 1 and states()[-1]["percent"] < critical

    backend.set(50.0, time_s=3600.0)
    powerd.sample()
    sent = len(states())
    backend.set(50.0, time_s=3590.0)  # an estimate ten seconds shorter: not news
    powerd.sample()
    assert len(states()) == sent
    backend.set(50.0, time_s=3000.0)
    powerd.sample()
    assert len(states()) == sent + 1

    backend.set(50.0, left_in=False)  # pulled: at once
    powerd.sample()
    assert states()[-1]["present"] == [False, True]


def test_powerd_samples_at_its_period_and_every_second_only_while_the_bridge_carries_the_glasses():
    node, backend = Recorder(), Scripted()
    powerd = Powerd(node, backend, load())
    backend.set(80.0)
    powerd.sample()
    powerd.keep_sampling(5.0)
    assert [t.deadline for t in node.timers] == [5.0]
    backend.set(80.0, left_in=False)
    node.timers[-1].callback()  # the sample finds a battery out: the countdown's pace
    assert node.timers[-1].deadline == BRIDGING_PERIOD_S
    backend.set(80.0)
    node.timers[-1].callback()  # back in: the period again
    assert node.timers[-1].deadline == 5.0
    assert sum(not t.cancelled for t in node.timers) == 1  # one sample due at a time
