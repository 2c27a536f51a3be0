"""Boot it like a board (issue 29): the development image under QEMU, checked from inside, asserted here.

board/build-image builds the image (the base cached in /var/cache/lensos), board/run-vm boots it with
`lensos.check` on the kernel line, and the VM's board/overlay-development/.../check.py writes one JSON line
per check to a virtio-serial port, read here. Each test is one line of the issue's boot test; a line the
VM does not prove yet is skipped with its reason, never passed. Without root or QEMU the whole module is
skipped and says why (`make board-test` installs what it needs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

BOARD = REPO / "board"
IMAGE = Path(os.environ.get("LENSOS_BOARD_IMAGE", REPO / "build" / "board" / "development-amd64"))
BOOT_TIMEOUT_S = 900  # TCG on 2 cores shared with other work: a boot plus the checks took 2-5 minutes here
NOT_YET = {
    "camera": "camerad's vivid frames through the ring are not checked in the VM yet",
    "display": "displayd's framebuffer read-back is not checked in the VM yet",
    "audio": "audiod into snd-aloop and the mic behind the LED are not checked in the VM yet",
    "led_refuses_capture": "capture refused by the shell with the LED removed is not checked in the VM yet",
    "watchdog": "a SIGSTOPped daemon restarted by its watchdog is not checked in the VM yet",
    "broker_restart": "a SIGKILLed broker restarted and its clients reconnecting is not checked in the VM yet",
}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(BOOT_TIMEOUT_S + 600)]


def _why_not() -> str | None:
    if os.environ.get("LENS_BOARD_TEST") != "1":
        return ("the boot test runs with `make board-test` (LENS_BOARD_TEST=1); `make test` does not run it yet: "
                "its time on a fresh CI machine is not measured")
    if os.geteuid() != 0:
        return "the board test needs root (mmdebstrap's root mode, the image's file owners)"
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("mmdebstrap", "mmdebstrap"),
                          ("mke2fs", "e2fsprogs")):
        if shutil.which(tool) is None:
            return f"no {tool} (`make board-test` installs {package})"
    if os.uname().machine != "x86_64":
        return "the boot test runs the amd64 image, on an x86_64 host"
    return None


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("board")
    if "LENSOS_BOARD_IMAGE" not in os.environ:
        started = time.monotonic()
        subprocess.run([str(BOARD / "build-image"), "--out", str(IMAGE)], check=True, timeout=1200)
        print(f"board: image built in {time.monotonic() - started:.0f} s")
    check, log = out / "check.jsonl", out / "console.log"
    started = time.monotonic()
    run = subprocess.run([str(BOARD / "run-vm"), "--image", str(IMAGE), "--check", str(check), "--log", str(log),
                          "--timeout", str(BOOT_TIMEOUT_S), "--append", "lensos.check"],
                         capture_output=True, text=True, timeout=BOOT_TIMEOUT_S + 60)
    wall = time.monotonic() - started
    results = {}
    for line in check.read_text().splitlines() if check.exists() else []:
        if line.startswith("{"):
            entry = json.loads(line)
            results[entry["check"]] = entry
    print(f"board: VM run {wall:.0f} s ({run.stderr.strip()}); checks: {sorted(results)}")
    assert "done" in results, (f"the VM never finished its checks (run-vm exit {run.returncode}, {wall:.0f} s); "
                               f"console's end:\n{log.read_text(errors='replace')[-3000:] if log.exists() else ''}")
    results["_wall_s"] = wall
    report = REPO / "build" / "board" / "boot-report.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(results, indent=1))
    return results


def result(board: dict, name: str) -> dict:
    if name not in board:
        pytest.skip(NOT_YET.get(name, f"the VM reported no {name!r} check"))
    entry = board[name]
    assert entry.get("ok"), json.dumps(entry, indent=1)[:4000]
    return entry


def test_every_lensos_unit_is_active_and_sent_ready(board):
    units = result(board, "units")
    assert set(units["ready"]) == {f"lensos-{n}.service" for n in (
        "broker", "shell", "ledd", "powerd", "inputd", "displayd", "audiod", "assistantd", "camerad", "appd")}


def test_lensos_target_is_active(board):
    result(board, "target")


def test_boot_to_lensos_ready_is_measured(board):
    boot = result(board, "boot_time")
    print(f"board: lensos ready {boot['ready_s']} s after the kernel started (target {boot['target_s']} s)")
    assert 0 < boot["ready_s"]


def test_each_daemons_logs_are_in_the_journal_under_its_unit(board):
    journal = result(board, "journal")
    for unit, seen in journal["units"].items():  # a healthy daemon may log nothing; what it logs is named
        assert seen["named"], (unit, seen["identifiers"])


def test_systemd_analyze_security_table_in_the_readme_is_the_real_runs(board):
    table = result(board, "security")["table"]
    readme = (REPO / "systemd" / "README.md").read_text()
    for unit, exposure in table.items():
        row = re.search(rf"^\| {re.escape(unit.removesuffix('.service'))} \| ([\d.]+ \w+)", readme, re.MULTILINE)
        assert row, f"systemd/README.md has no row for {unit}"
        assert row.group(1) == exposure, f"{unit}: the README says {row.group(1)}, the VM measured {exposure}"


@pytest.mark.xfail(strict=True, reason="found in the VM, not fixed yet: the swipe arrives as swipe_forward, the "
                   "uinput tap is not recognised as a tap")
def test_a_tap_and_a_swipe_through_a_uinput_touchpad_arrive_as_input_gestures(board):
    seen = result(board, "input")["seen"]
    assert seen["tap"]["gesture"] == "tap" and seen["swipe"]["gesture"] == "swipe_forward"


@pytest.mark.xfail(strict=True, reason="not finished: the VM hardware's control socket refused the check's "
                   "connection after the input check (lensos-vm-hardware), so the LED read-back was not reached")
def test_ledd_drives_the_uleds_led_read_back_and_reports_it_removed(board):
    led = result(board, "led")
    assert led["state"]["backend"] == "real" and led["uleds_readback"]["present"]
    assert led["fault"]["fault"], "the LED removed is a fault on led.state"


@pytest.mark.xfail(strict=True, reason="found in the VM, not fixed yet: the pull is on power.state (~40 ms after "
                   "the module parameter) but the shell did not enter battery_swap within 15 s")
def test_powerd_reads_the_test_power_batteries_and_a_pull_is_seen_through_its_uevent(board):
    power = result(board, "power")
    assert [b["name"] for b in power["first"]["batteries"]] == ["battery-left", "battery-right"]
    assert power["pulled"]["present"][0] is False
    assert "swap" in power["shell"]
    print(f"board: battery pull seen on the bus {power['seen_after_ms']} ms after the module parameter changed")


@pytest.mark.parametrize("line", sorted(NOT_YET))
def test_hardware_line(board, line):
    result(board, line)
