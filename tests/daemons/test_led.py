"""ledd: the real sysfs backend against a fake /sys/class/leds tree, over the real bus."""

from __future__ import annotations

import pytest

from bus.node import Node
from daemons.led.backends import LedFault, SimLed, SysfsLed
from tests.conftest import DEADLINE_S, tuned_policies, wait_for


def fake_led(tmp_path, max_brightness="255"):
    led = tmp_path / "sys" / "class" / "leds" / "lensos:capture"
    led.mkdir(parents=True)
    (led / "max_brightness").write_text(max_brightness + "\n")
    (led / "brightness").write_text("0\n")
    (led / "trigger").write_text("none [heartbeat] timer\n")
    return led


def test_sysfs_led_writes_max_brightness_clears_the_trigger_and_reads_back(tmp_path):
    path = fake_led(tmp_path, "7")
    led = SysfsLed(path)
    assert (path / "trigger").read_text() == "none"
    led.set(True)
    assert (path / "brightness").read_text() == "7" and led.read() is True
    led.set(False)
    assert led.read() is False


def test_sysfs_led_names_what_is_wrong(tmp_path):
    with pytest.raises(LedFault, match="max_brightness"):
        SysfsLed(tmp_path / "nothing-here")
    path = fake_led(tmp_path, "0")
    with pytest.raises(LedFault, match="cannot be lit"):
        SysfsLed(path)
    (path / "max_brightness").write_text("1")
    led = SysfsLed(path)
    (path / "brightness").unlink()
    (path / "brightness").mkdir()  # a write that fails, as a driver error would
    with pytest.raises(LedFault, match="brightness"):
        led.set(True)


def test_sim_led_that_is_broken_is_dark_and_says_why():
    led = SimLed()
    led.set(True)
    led.break_("burnt out")
    with pytest.raises(LedFault, match="burnt out"):
        led.read()
    led.break_(None)
    assert led.read() is False


@pytest.mark.slow
def test_ledd_real_backend_follows_only_the_shell_and_reports_a_dying_led(procs, runtime, tmp_path):
    path = fake_led(tmp_path)
    policies = tuned_policies(tmp_path, {"hardware.toml": {"led": {"sysfs_dir": str(path), "check_s": 0.05}}})
    procs.start_broker()
    procs.start_ready("-m", "daemons.led", "--backend", "real", "--policy-dir", str(policies))
    reports = []
    with Node("shell", runtime) as shell:  # the topic table lets only "shell" command the LED
        shell.subscribe("led.state", lambda m: reports.append(m.payload))
        shell.start()
        wait_for(lambda: reports and reports[-1]["backend"] == "real", DEADLINE_S, "ledd's first report",
                 poll=shell.run_once)
        shell.publish("privacy.indicator", on=True, cmd=41, reason="test")
        lit = wait_for(lambda: [r for r in reports if r["cmd"] == 41], DEADLINE_S, "the read-back", poll=shell.run_once)
        assert lit[-1]["lit"] is True and lit[-1]["fault"] is None and lit[-1]["brightness"] == 255
        assert (path / "brightness").read_text() == "255"

        (path / "brightness").unlink()  # the driver went away under a lit LED
        fault = wait_for(lambda: [r for r in reports if r["fault"]], DEADLINE_S, "a fault", poll=shell.run_once)
        assert fault[-1]["lit"] is False and "brightness" in fault[-1]["fault"] and fault[-1]["cmd"] == 41

        (path / "brightness").write_text("0")
        shell.publish("privacy.indicator", on=True, cmd=42, reason="test")
        wait_for(lambda: any(r["cmd"] == 42 and r["lit"] and not r["fault"] for r in reports), DEADLINE_S,
                 "working again", poll=shell.run_once)


@pytest.mark.slow
def test_ledd_ignores_an_indicator_from_anyone_but_the_shell(procs, runtime):
    procs.start_broker()
    procs.start_ready("-m", "daemons.led")
    reports = []
    with Node("shell", runtime) as shell, Node("rogue", runtime, publish_any=True) as rogue:
        shell.subscribe("led.state", lambda m: reports.append(m.payload))
        shell.start()
        rogue.start()
        rogue.publish("privacy.indicator", on=True, cmd=99, reason="spoof")
        shell.publish("privacy.indicator", on=False, cmd=100, reason="test")
        wait_for(lambda: any(r["cmd"] == 100 for r in reports), DEADLINE_S, "the shell's command answered",
                 poll=shell.run_once)
        assert not any(r["cmd"] == 99 for r in reports)


@pytest.mark.slow
def test_a_clean_stop_tells_the_bus_the_led_is_unwatched_and_logs_no_error(procs, runtime):
    procs.start_broker()
    ledd = procs.start_ready("-m", "daemons.led")
    reports = []
    with Node("shell", runtime) as shell:
        shell.subscribe("led.state", lambda m: reports.append(m.payload))
        shell.start()
        wait_for(lambda: reports, DEADLINE_S, "ledd's first report", poll=shell.run_once)
        assert procs.stop(ledd) == 0
        last = wait_for(lambda: [r for r in reports if r["fault"]], DEADLINE_S, "the stop told", poll=shell.run_once)
        assert last[-1]["fault"] == "ledd stopped" and last[-1]["lit"] is False  # capture must stop: as before
    said = procs.logs[-1][1].read_text()
    assert "ERROR" not in said and "the LED is unwatched from now on" in said, said
