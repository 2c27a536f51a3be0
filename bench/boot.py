"""Benchmark: `lens up` from nothing to every process READY and the shell active, as the wearer waits for it.

    python bench/boot.py [--runs 5]

Each run starts `lens up` on a fresh runtime directory, reads the time to
READY=1 of every process and to all-ready from what `lens up` prints,
then asks the shell when it left booting (having heard every required daemon on the
bus) and whether it had to go on without one, stops it with Ctrl-C, and starts over. Printed: the median of the runs per
process and in all, against the target (1.5 s on this 2-core machine), and
the ratio to the floor measured in the same run: a bare `python -c "import
zmq"` start, which no process of ours can beat.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
READY = re.compile(r"^\s+(\S+)\s+ready in\s+(\d+) ms")
ALL = re.compile(r"^all (\d+) processes ready in (\d+) ms")


def one_boot(extra: list[str]) -> tuple[dict[str, float], float, tuple[float, list[str]]]:
    with tempfile.TemporaryDirectory(prefix="lens-boot-") as runtime:
        env = dict(os.environ, LENS_RUNTIME_DIR=runtime, LENS_STATE_DIR=str(Path(runtime) / "state"))
        up = subprocess.Popen([sys.executable, "-m", "cli.main", "up", *extra], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        each: dict[str, float] = {}
        total = None
        deadline = time.monotonic() + 60
        for line in up.stdout:
            if match := READY.match(line):
                each[match.group(1)] = float(match.group(2))
            elif match := ALL.match(line):
                total = float(match.group(2))
                break
            if time.monotonic() > deadline:
                break
        shell = shell_boot(env) if total is not None else None
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=60)
        if total is None:
            raise SystemExit(f"lens up did not reach all-ready: exit {up.returncode}")
        return each, total, shell


def shell_boot(env: dict) -> tuple[float, list[str]]:
    """The shell's own count: from its start to leaving `booting`, when every required daemon has been
    heard on the bus (READY says a process is up; this says the shell knows it), and what it missed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = subprocess.run([sys.executable, "-m", "cli.main", "status", "--json"], cwd=REPO, env=env,
                                capture_output=True, text=True)
        state = json.loads(status.stdout or "{}").get("shell.state") if status.returncode == 0 else None
        if state and state["state"] != "booting":
            return state["boot_s"] * 1000, state["degraded"]
        time.sleep(0.2)
    raise SystemExit("the shell did not leave booting within 30 s")


def floor_s() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import zmq"], check=True)
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("extra", nargs="*", help="more `lens up` arguments (e.g. --profile g1)")
    args = parser.parse_args()
    runs = [one_boot(args.extra) for _ in range(args.runs)]
    floor = statistics.median(floor_s() for _ in range(args.runs))
    names = list(runs[0][0])
    print(f"lens up to all-ready, median of {args.runs} runs (floor: `python -c 'import zmq'` {floor:.0f} ms)\n")
    print(f"{'process':12} {'READY ms':>9} {'x floor':>8}")
    for name in names:
        ms = statistics.median(r[0][name] for r in runs if name in r[0])
        print(f"{name:12} {ms:9.0f} {ms / floor:8.1f}")
    total = statistics.median(r[1] for r in runs)
    print(f"{'all ready':12} {total:9.0f} {total / floor:8.1f}   (target < 1500 ms; runs: "
          f"{', '.join(f'{r[1]:.0f}' for r in runs)})")
    shell = statistics.median(r[2][0] for r in runs)
    missed = sorted({name for r in runs for name in r[2][1]})
    print(f"{'shell active':12} {shell:9.0f} {shell / floor:8.1f}   (the shell's own count: every required daemon "
          f"heard; runs: {', '.join(f'{r[2][0]:.0f}' for r in runs)}; missed at boot: {', '.join(missed) or 'none'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
