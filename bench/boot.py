"""Benchmark: `lens up` from nothing to every process READY, as the wearer waits for it.

    python bench/boot.py [--runs 5]

Each run starts `lens up` on a fresh runtime directory, reads the time to
READY=1 of every process and to all-ready from what `lens up` prints,
stops it with Ctrl-C, and starts over. Printed: the median of the runs per
process and in all, against the target (1.5 s on this 2-core machine), and
the ratio to the floor measured in the same run: a bare `python -c "import
zmq"` start, which no process of ours can beat.
"""

from __future__ import annotations

import argparse
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


def one_boot(extra: list[str]) -> tuple[dict[str, float], float]:
    with tempfile.TemporaryDirectory(prefix="lens-boot-") as runtime:
        env = dict(os.environ, LENS_RUNTIME_DIR=runtime, LENS_STATE_DIR=str(Path(runtime) / "state"))
        up = subprocess.Popen([sys.executable, "-m", "shell.cli", "up", *extra], cwd=REPO, env=env,
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
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=60)
        if total is None:
            raise SystemExit(f"lens up did not reach all-ready: exit {up.returncode}")
        return each, total


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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
