"""The systemd units: written from the process table, agreeing with it and with `lens up`, and clean
under `systemd-analyze verify`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from bus.runtime import Runtime
from policies.loader import load
from policies.rules import MODELS
from manager.launcher import Launcher
from manager.processes import PROCESSES, by_name
from manager import units
from manager.units import parse, render_all, service_name
from tests.conftest import REPO

PYTHON = sys.executable


def values(sections: dict, section: str, key: str) -> list[str]:
    return [v for k, v in sections.get(section, []) if k == key]


BOARD = [p for p in PROCESSES if not p.dev_only]


@pytest.mark.parametrize("process", BOARD, ids=lambda p: p.name)
def test_each_unit_says_what_the_table_says(process, tmp_path):
    unit = parse(render_all(PYTHON)[service_name(process.name)])
    assert values(unit, "Service", "Type") == ["notify"]
    assert values(unit, "Service", "WatchdogSec") == [f"{process.watchdog_s:g}"]
    assert values(unit, "Service", "LimitNOFILE") == [str(process.files)]
    assert values(unit, "Service", "Restart") == ["on-failure"]
    # Wants=, never Requires=: a broker restarted by systemd must not restart every process that reconnects itself
    assert values(unit, "Unit", "After") == values(unit, "Unit", "Wants") == \
        [service_name(name) for name in process.after]
    assert values(unit, "Unit", "Requires") == values(unit, "Unit", "BindsTo") == []
    exec_start = values(unit, "Service", "ExecStart")[0].split()
    launcher = Launcher([process], Runtime.resolve(tmp_path / "bus"), backends={process.name: "real"})
    try:
        assert exec_start == launcher.command(process), "lens up and systemd start it differently"
    finally:
        launcher.shutdown()
    assert values(unit, "Service", "DeviceAllow") == list(process.devices)
    groups = values(unit, "Service", "SupplementaryGroups")
    assert process.name == "broker" or groups[0].split() == ["lensos", *process.groups]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "DynamicUser"):
        assert values(unit, "Service", key) == ["yes"], key
    assert values(unit, "Service", "ProtectSystem") == ["strict"]
    # ProcSubset=pid hides /proc/sys: the boot's id (a crash or a reboot?) comes from systemd's specifier
    assert values(unit, "Service", "ProcSubset") == ["pid"] and "LENS_BOOT_ID=%b" in values(unit, "Service", "Environment")
    assert values(unit, "Service", "DevicePolicy") == ["closed"]
    if process.name != "broker":
        assert "/run/lensos" in values(unit, "Service", "ReadWritePaths")
    assert values(unit, "Service", "RestrictAddressFamilies") == [" ".join(process.sockets)]
    assert values(unit, "Service", "MemoryDenyWriteExecute") == ([] if process.jit else ["yes"])
    networked = process.name == "assistantd"  # the only process that may leave the glasses
    assert values(unit, "Service", "PrivateNetwork") == ([] if networked else ["yes"])
    # No privilege at all, but appd's four: to start each app as a user of its own, give it its own state
    # directory, and stop it; with the system calls they are for, which ~@privileged took away.
    kept = "CAP_SETUID CAP_SETGID CAP_KILL CAP_CHOWN" if process.name == "appd" else ""
    assert values(unit, "Service", "CapabilityBoundingSet") == [kept]
    assert values(unit, "Service", "AmbientCapabilities") == ([kept] if kept else [])
    filters = values(unit, "Service", "SystemCallFilter")
    assert filters[:2] == ["@system-service", "~@privileged"]
    assert filters[2:] == (["@setuid capset", "@chown"] if kept else [])  # capset: the zygote drops them


CHOWN = re.compile(r"\bos\.(f|l)?chown\(")


@pytest.mark.parametrize("process", BOARD, ids=lambda p: p.name)
def test_a_process_whose_code_changes_owners_keeps_the_capability_and_the_calls_for_it(process):
    """appd gave each app's state directory to the app's user with os.chown, but its row kept no CAP_CHOWN:
    on the board, seccomp (~@privileged) killed appd at its first start, five times, and no app ran."""
    package = REPO / process.module.split(".")[0]
    if process.module.startswith("daemons."):
        package = REPO / "daemons" / process.module.split(".")[1]
    calls = [str(path.relative_to(REPO)) for path in sorted(package.rglob("*.py")) if CHOWN.search(path.read_text())]
    unit = parse(units.unit(process, PYTHON))
    if calls:
        assert "CAP_CHOWN" in process.capabilities, calls
        assert "@chown" in values(unit, "Service", "SystemCallFilter"), calls


def test_the_target_wants_every_unit_and_nothing_else_is_written():
    files = render_all(PYTHON)
    assert set(files) == {service_name(p.name) for p in BOARD} | {"lensos.target", "lensos.sysusers.conf",
                                                                  "lensos.tmpfiles.conf", "lensos.udev.rules"}
    wants = values(parse(files["lensos.target"]), "Unit", "Wants")[0].split()
    assert wants == [service_name(p.name) for p in BOARD], "the development-only webview is no unit"
    # setgid: what any process makes in the bus directory (camerad's door) belongs to the bus group too;
    # sticky: the broker's bus/ in it stays its own
    assert files["lensos.tmpfiles.conf"].splitlines()[1:] == ["d /run/lensos 3770 root lensos -"]


def test_every_unit_reaches_the_bus_directory_the_system_makes():
    """Under a real systemd a DynamicUser's RuntimeDirectory= with RuntimeDirectoryPreserve= is made in
    /run/private (0700) and reached through a link only its own unit may follow: the first boot in the VM
    saw every unit but the broker fail with "runtime directory /run/lensos: Permission denied"."""
    files = render_all(PYTHON)
    for process in BOARD:
        unit = parse(files[service_name(process.name)])
        assert values(unit, "Service", "DynamicUser") == ["yes"]
        assert not values(unit, "Service", "RuntimeDirectory"), process.name
        assert not values(unit, "Service", "RuntimeDirectoryPreserve"), process.name
        assert "/run/lensos" in values(unit, "Service", "ReadWritePaths"), process.name
        groups = values(unit, "Service", "Group") + " ".join(values(unit, "Service", "SupplementaryGroups")).split()
        assert "lensos" in groups, process.name


def test_ledd_may_write_the_capture_led_the_udev_rule_hands_to_its_group():
    """sysfs attributes are root's: on the first boot under a real systemd ledd could not write its LED's
    trigger ("Permission denied") though ReadWritePaths= named /sys/class/leds."""
    files = render_all(PYTHON)
    rule = files["lensos.udev.rules"].splitlines()[1]
    group = re.search(r"chgrp (\S+) ", rule).group(1)
    assert 'KERNEL=="lensos:capture"' in rule and "/sys%p/trigger" in rule and "/sys%p/brightness" in rule
    assert f"g {group} -" in files["lensos.sysusers.conf"].splitlines()
    ledd = parse(files[service_name("ledd")])
    assert group in values(ledd, "Service", "SupplementaryGroups")[0].split()


def test_each_unit_logs_under_its_own_name():
    """The first boot under a real systemd: every daemon's journal lines were tagged "python"."""
    files = render_all(PYTHON)
    for process in BOARD:
        unit = parse(files[service_name(process.name)])
        assert values(unit, "Service", "SyslogIdentifier") == [f"lensos-{process.name}"]


def test_the_processes_boot_waits_for_are_in_the_table_and_run_on_the_board_and_every_model():
    """Which processes boot needs is said once, by policies/system.toml [boot] required."""
    table = {p.name: p for p in PROCESSES}
    for name in load().system.boot.required:
        assert name in table and not table[name].dev_only and set(table[name].models) == set(MODELS), name
    assert all(p.after == () or "broker" in p.after for p in PROCESSES)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is missing (make install adds it)")
def test_every_unit_verifies_without_a_single_warning(tmp_path):
    written = subprocess.run([PYTHON, "-m", "cli.main", "units", "install", "--prefix", str(tmp_path), "--json"],
                             cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    paths = [p for p in json.loads(written.stdout) if p.endswith((".service", ".target"))]
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{tmp_path}:", SYSTEMD_LOG_COLOR="0")
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *paths], capture_output=True, text=True,
                            env=env, timeout=120)
    said = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not said, said


def test_lens_units_show_prints_one_unit_and_names_an_unknown_one():
    shown = subprocess.run([PYTHON, "-m", "cli.main", "units", "show", "camerad"], cwd=REPO, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0 and "DeviceAllow=/dev/video0 rw" in shown.stdout
    missing = subprocess.run([PYTHON, "-m", "cli.main", "units", "show", "ghostd"], cwd=REPO, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2 and "no process 'ghostd'" in missing.stderr
    assert by_name()["camerad"].devices == ("/dev/video0 rw",)


def test_the_broker_unit_lets_it_hold_the_descriptors_it_raises_itself_to():
    from broker.connections import WANTED_LIMIT
    from manager.processes import by_name
    assert by_name()["broker"].files == WANTED_LIMIT


def test_camerads_media_dir_is_opened_to_its_unit_and_made_for_its_group(tmp_path, monkeypatch):
    """[camera] media_dir (a media partition) was not in camerad's ReadWritePaths=: under ProtectSystem=strict
    camerad could not write a photo there."""
    from tests.conftest import tuned_policies

    plain = render_all(PYTHON)
    assert "/media" not in plain[service_name("camerad")] and "/media" not in plain["lensos.tmpfiles.conf"]
    monkeypatch.setenv("LENS_POLICY_DIR", str(tuned_policies(tmp_path, {
        "hardware.toml": {"camera": {"media_dir": "/media/lensos"}}})))
    files = render_all(PYTHON)
    camerad = parse(files[service_name("camerad")])
    assert "/media/lensos" in values(camerad, "Service", "ReadWritePaths")
    group = values(camerad, "Service", "SupplementaryGroups")[0].split()[-1]
    assert f"d /media/lensos 2770 root {group} -" in files["lensos.tmpfiles.conf"].splitlines()
    assert f"g {group} -" in files["lensos.sysusers.conf"].splitlines()
    for process in BOARD:  # nobody else's
        if process.name != "camerad":
            unit = parse(files[service_name(process.name)])
            assert "/media/lensos" not in values(unit, "Service", "ReadWritePaths"), process.name
            assert group not in " ".join(values(unit, "Service", "SupplementaryGroups")), process.name
    shown = subprocess.run([PYTHON, "-m", "cli.main", "units", "show", "camerad"], cwd=REPO, capture_output=True,
                           text=True, timeout=60, env=dict(os.environ))
    assert "ReadWritePaths=/media/lensos" in shown.stdout


def test_every_process_that_keeps_state_has_a_state_directory_on_the_board():
    """displayd keeps its cards across its restarts (bus.kept) but had no StateDirectory=: on the board it
    would have written under a home it may not write."""
    for process in BOARD:
        helped = subprocess.run([PYTHON, "-m", process.module, "--help"], cwd=REPO, capture_output=True, text=True,
                                timeout=60)
        assert helped.returncode == 0, helped.stderr
        keeps = "--state-dir" in helped.stdout
        unit = parse(render_all(PYTHON)[service_name(process.name)])
        assert process.state == keeps, f"{process.name}: --state-dir {keeps}, state {process.state}"
        assert bool(values(unit, "Service", "StateDirectory")) == keeps, process.name


@pytest.mark.parametrize("process", [p for p in PROCESSES if p.backends], ids=lambda p: p.name)
def test_a_daemons_command_line_offers_the_backends_of_its_row(process):
    """Written once, in the process table: the daemon's --backend choices and default come from its row."""
    shown = subprocess.run([PYTHON, "-m", process.module, "--backend", "nosuch"], cwd=REPO, capture_output=True,
                           text=True, timeout=60)
    choices = ", ".join(repr(b) for b in process.backends)
    assert shown.returncode == 2 and f"(choose from {choices})" in shown.stderr, shown.stderr


def test_the_wake_phrase_spotters_unit_has_no_network_no_storage_no_device_and_runs_only_where_allowed(tmp_path):
    unit = parse(render_all(PYTHON)[service_name("waked")])
    service = dict(unit["Service"])
    assert values(unit, "Service", "ReadWritePaths") == ["/run/lensos"], "writable: the bus directory alone"
    assert "StateDirectory" not in service and "DeviceAllow" not in service
    assert (service["PrivateNetwork"], service["RestrictAddressFamilies"]) == ("yes", "AF_UNIX")
    assert (service["PrivateDevices"], service["ProtectSystem"], service["CapabilityBoundingSet"]) == \
        ("yes", "strict", "")
    assert values(unit, "Service", "ExecCondition") == [f"{PYTHON} -m manager.condition waked"]
    # The shipped policy on a product image (systemd sets no development flag): the condition says no.
    env = {k: v for k, v in os.environ.items() if k not in ("LENS_DEVELOPMENT", "LENS_POLICY_DIR")}
    said = subprocess.run([PYTHON, "-m", "manager.condition", "waked"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert said.returncode == 1 and "policy turns it off" in said.stderr, said.stderr
    assert subprocess.run([PYTHON, "-m", "manager.condition", "waked"], cwd=REPO, env=dict(env, LENS_DEVELOPMENT="1"),
                          timeout=60).returncode == 0
    assert all(not p.runs_if for p in PROCESSES if p.name != "waked"), "only the spotter has a condition"


def test_a_percent_in_a_value_is_a_percent_and_only_the_boot_id_is_a_specifier():
    """systemd reads % as a specifier in a unit's values: only LENS_BOOT_ID=%b means one."""
    text = units._render([("Service", [("Description", "100% sure"), ("Environment", units.Specifier("A=%b"))])])
    assert parse(text)["Service"] == [("Description", "100%% sure"), ("Environment", "A=%b")]


def test_each_process_takes_its_name_and_command_line_from_its_row():
    """The table is the only truth (issue 30): a process that wrote its own name beside its row could differ
    from what systemd and `lens up` call it. Every module of the table names itself with ROW = by_module(its
    module), and its node, its arguments and its exits use ROW."""
    for process in PROCESSES:
        path = REPO / f"{process.module.replace('.', '/')}.py"
        if not path.exists():  # a package run as python -m: its __main__
            path = REPO / process.module.replace(".", "/") / "__main__.py"
        text = path.read_text()
        if process.module == "broker":  # below the manager, it cannot read its row: its usage says the same
            shown = subprocess.run([PYTHON, "-m", process.module, "--help"], cwd=REPO, capture_output=True,
                                   text=True, timeout=60)
            assert shown.stdout.startswith(f"usage: python -m {process.module} "), shown.stdout
            continue
        assert f'ROW = by_module("{process.module}")' in text, path
        calls = re.findall(r"service\.(?:node|exits_on|arguments)\(([^,]+),", text)
        assert calls and set(calls) <= {"ROW.name", "ROW.module"}, (path, calls)
