"""The boot test's one run: build the development image, boot it with `lensos.check`, keep what it reported.

Both steps together take 5-7 minutes on 2 cores (about 2.5 min to build the image on a machine that has
never built one, 3-4 min for the VM under TCG), longer than the rest of the suite's tests need the machine
for any one of them. So the run starts in the background as soon as the suite is collected with the boot
test in it (tests/conftest.py), niced so that the timing-sensitive tests running meanwhile keep the CPU they
need, and the boot test's assertions (test_boot.py, ordered last) wait for it. Run on its own, as
`python -m tests.board.boot OUT`, it is the same run in the foreground.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BOARD = REPO / "board"
IMAGE = Path(os.environ.get("LENSOS_BOARD_IMAGE", REPO / "build" / "board" / "development-amd64"))
PRODUCT = IMAGE.with_name("product-amd64")
BUILD_TIMEOUT_S = 1200  # a fresh machine's first build: mmdebstrap, the kernel headers and source, the modules
# TCG on 2 cores shared with the rest of the suite (or with other runs): the boot and every check took 3-4 min
# of wall time alone and up to 12-15 min at a load of 8-12; a deadline, not a wait
BOOT_TIMEOUT_S = 1800
NICE = 10
CURRENT: "Background | None" = None  # the suite's one run, started at collection (tests/conftest.py)


def why_not() -> str | None:
    """Why the boot test cannot run here, or None: said in the skip, never silently."""
    if os.environ.get("LENS_BOARD_TEST", "1") == "0":
        return "LENS_BOARD_TEST=0 turns the boot test off"
    if os.geteuid() != 0:
        return "the board test needs root (mmdebstrap's root mode, the image's file owners)"
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("mmdebstrap", "mmdebstrap"),
                          ("mke2fs", "e2fsprogs")):
        if shutil.which(tool) is None:
            return f"no {tool} (`make test` as root installs {package})"
    if os.uname().machine != "x86_64":
        return "the boot test runs the amd64 image, on an x86_64 host"
    return None


def run(out: Path) -> int:
    """Build (unless LENSOS_BOARD_IMAGE names a built one) and boot; out/ gets run.json, check.jsonl, logs."""
    out.mkdir(parents=True, exist_ok=True)
    times: dict = {}

    def note(**kw) -> None:
        times.update(kw)
        (out / "run.json").write_text(json.dumps(times))

    def build(log: str, *args: str) -> tuple[int, float]:
        started = time.monotonic()
        with open(out / log, "wb") as f:
            built = subprocess.run([str(BOARD / "build-image"), *args], stdout=f, stderr=subprocess.STDOUT,
                                   timeout=BUILD_TIMEOUT_S)
        return built.returncode, round(time.monotonic() - started, 1)

    if "LENSOS_BOARD_IMAGE" not in os.environ:
        rc, took = build("build.log", "--out", str(IMAGE))
        note(build_s=took, build_rc=rc)
        if rc:
            return rc
    started = time.monotonic()
    vm = subprocess.run([str(BOARD / "run-vm"), "--image", str(IMAGE), "--check", str(out / "check.jsonl"),
                         "--log", str(out / "console.log"), "--timeout", str(BOOT_TIMEOUT_S),
                         "--append", "lensos.check"], capture_output=True, text=True, timeout=BOOT_TIMEOUT_S + 60)
    note(vm_s=round(time.monotonic() - started, 1), vm_rc=vm.returncode, vm_said=vm.stderr.strip()[-2000:])
    if "LENSOS_BOARD_IMAGE" not in os.environ:  # the product flavour from the same base: built, then looked into
        rc, took = build("product.log", "--flavour", "product", "--out", str(PRODUCT))
        note(product_s=took, product_rc=rc, product=inspect(PRODUCT / "disk.img") if rc == 0 else None)
    return vm.returncode


def inspect(disk: Path) -> dict:
    """What a product image holds, read from its ext4 with e2fsprogs' debugfs (no mount, no boot)."""
    def stat(path: str) -> str:
        return subprocess.run(["debugfs", "-R", f"stat {path}", str(disk)], capture_output=True, text=True).stdout

    listing = subprocess.run(["debugfs", "-R", "ls -p /etc/lensos/keys", str(disk)], capture_output=True,
                             text=True).stdout  # one /inode/mode/uid/gid/name/size/ a line
    keys = sorted(f.split("/")[5] for f in listing.splitlines() if f.count("/") >= 6)
    masked = {unit: '"/dev/null"' in stat(f"/etc/systemd/system/{unit}")
              for unit in ("serial-getty@.service", "getty@.service", "console-getty.service")}
    return {"keys": [k for k in keys if k not in (".", "..")],
            "lens_on_path": bool(stat("/usr/local/bin/lens").strip()), "consoles_masked": masked,
            "check_service": bool(stat("/etc/systemd/system/lensos-check.service").strip()),
            "development_env": bool(stat("/etc/systemd/system/lensos-.service.d/development.conf").strip()),
            "target_wanted": bool(stat("/etc/systemd/system/multi-user.target.wants/lensos.target").strip())}


class Background:
    """The run as a child process group: started once, waited for by the boot test, killed if the suite ends."""

    def __init__(self, out: Path):
        self.out = out
        self.started = time.monotonic()
        self.errors = open(out / "run.stderr", "wb")  # closed by stop(): an unclosed file warns in whichever test
        self.proc = subprocess.Popen(
            ["nice", "-n", str(NICE), sys.executable, "-m", "tests.board.boot", str(out)], cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=self.errors, start_new_session=True)

    def wait(self) -> dict:
        """What the VM reported (check name -> entry) plus the run's times; the run's errors if it failed."""
        try:
            self.proc.wait(timeout=BUILD_TIMEOUT_S + BOOT_TIMEOUT_S + 120)
        finally:
            self.stop()
        times = json.loads((self.out / "run.json").read_text()) if (self.out / "run.json").exists() else {}
        if not times:  # the run itself failed before it built or booted anything
            raise AssertionError(f"tests.board.boot failed: {(self.out / 'run.stderr').read_text()[-3000:]}")
        if times.get("build_rc"):
            build_log = (self.out / "build.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"board/build-image failed ({times['build_rc']}):\n{build_log}")
        results = {}
        check = self.out / "check.jsonl"
        for line in check.read_text(errors="replace").splitlines() if check.exists() else []:
            if line.startswith("{"):
                entry = json.loads(line)
                results[entry["check"]] = entry
        results["_times"] = times | {"waited_s": round(time.monotonic() - self.started, 1)}
        return results

    def console_tail(self, chars: int = 3000) -> str:
        log = self.out / "console.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else "(no console log)"

    def stop(self) -> None:
        """Kill the whole session, not only the process group: GNU timeout (run-vm's) puts itself and QEMU in
        a group of their own, so a killpg would leave a VM running after the suite."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in _session(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.errors.close()


def _session(sid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after the name: state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
