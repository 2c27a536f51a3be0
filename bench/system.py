"""Benchmark: the whole system in simulation: idle cost, memory, and how fast a battery swap is seen.

    python bench/system.py [--idle 30] [--swaps 20]

Starts the system as `make run` does, with `lens up` (without the live view, which the board does not
run): the broker, the shell, every daemon and appd with its boot apps (sim backends), each with its own
key, notify socket and watchdog, on a fresh runtime directory, with the idle timers and the simulated
drain slowed so that nothing changes while idle is measured. Then:

- idle: CPU seconds and wake-ups (context switches) of each process, all its threads
  (libzmq's included), over --idle seconds, next to a bare pyzmq process blocked in poll (the floor);
- memory: each process's RSS (and PSS, its fair share of pages shared with others), whether it loaded
  numpy, and the daemons' budgets (issue 6: 20 MiB RSS, 35 with numpy), next to the same floor with
  numpy and Pillow imported;
- swap: a battery is pulled --swaps times; the time from powerd's
  power.state that shows it missing to the shell's shell.state saying
  battery_swap (both stamped with the monotonic clock at publish), as a
  ratio to one hop through the broker measured in the same run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.procstat import pss_kib, rss_kib, threads, used_since  # noqa: E402
from bus import keys  # noqa: E402
from bus.node import Node  # noqa: E402
from bus.runtime import Runtime  # noqa: E402
from bus.topics import TOPICS  # noqa: E402
from policies.loader import load  # noqa: E402
from manager.processes import PROCESSES  # noqa: E402
from tests.conftest import children_of, tuned_policies  # noqa: E402

QUIET = {
    "system.toml": {"idle": {"dim_after_s": 3600.0, "sleep_after_s": 3600.0}},
    "hardware.toml": {"power_sim": {"speedup": 1.0}},
}
# Bound, not connected: a connecting socket with no peer retries every 100 ms, which is no floor.
FLOOR = "import zmq; c = zmq.Context(); s = c.socket(zmq.SUB); s.bind('ipc://{}/floor'); " \
        "p = zmq.Poller(); p.register(s, zmq.POLLIN); print('ready', flush=True); p.poll()"
FLOORS = {"(floor: bare pyzmq poll)": FLOOR, "(floor + numpy, Pillow)": "import numpy, PIL.ImageDraw; " + FLOOR}
BUDGET_MIB = (20, 35)  # a daemon's RSS without numpy, with it (issue 6)


def proc_stats(pid: int) -> dict:
    return {"threads": threads(pid),
            "rss_mib": rss_kib(pid) / 1024,
            "pss_mib": pss_kib(pid) / 1024,
            "numpy": "numpy" in Path(f"/proc/{pid}/maps").read_text()}


def start_system(env: dict) -> subprocess.Popen:
    """`lens up`, in a session of its own (stopped as Ctrl-C stops it)."""
    return subprocess.Popen([sys.executable, "-m", "cli.main", "up"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def started_by(launcher: int) -> dict[str, int]:
    """The processes `lens up` started, by their name in the process table (found by their module)."""
    return {process.name: pid for process in PROCESSES
            for pid in children_of(launcher, f"-m {process.module} ")}


def wait_until(node: Node, condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: no {what} within {timeout:g} s")
        node.run_once(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle measured")
    parser.add_argument("--swaps", type=int, default=20)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="ls-", dir="/tmp")
    policies = tuned_policies(Path(directory) / "p", QUIET)
    env = dict(os.environ, LENS_RUNTIME_DIR=f"{directory}/run", LENS_STATE_DIR=f"{directory}/state",
               LENS_POLICY_DIR=str(policies), PYTHONUNBUFFERED="1")
    os.makedirs(f"{directory}/run", mode=0o700)
    # lens up gives each process a key of its own; the developer's, which this process uses, is made here
    # so that it is there before this node starts.
    keys.ensure_development_keys(Runtime.resolve(f"{directory}/run"))
    launcher = start_system(env)  # nodes connect (and retry) on their own
    floors = {name: subprocess.Popen([sys.executable, "-c", code.format(directory)], stdout=subprocess.PIPE,
                                     text=True) for name, code in FLOORS.items()}
    for floor in floors.values():
        floor.stdout.readline()
    seen: dict[str, list] = {"state": [], "power": [], "ping": [], "apps": []}
    try:
        with Node("bench", f"{directory}/run", publish_any=True) as node:
            node.subscribe("shell.state", lambda m: seen["state"].append(m))
            node.subscribe("power.state", lambda m: seen["power"].append(m))
            node.subscribe("bench.ping", lambda m: seen["ping"].append((time.monotonic_ns(), m)))
            node.subscribe("appd.state", lambda m: seen["apps"].append(m))
            node.start()
            wait_until(node, lambda: seen["state"] and seen["state"][-1].payload["state"] == "active"
                       and not seen["state"][-1].payload["degraded"], 60, "boot without missing daemons")
            print(f"booted in {seen['state'][-1].payload['boot_s']:.2f} s (shell's count)")
            settle = time.monotonic() + 3.0  # the last boot chatter (first renders, latched replays) dies down
            while time.monotonic() < settle:
                node.run_once(0.2)

            # The boot apps are appd's children: their pids from its latched word.
            boot_apps = set(load(policies).system["apps"]["boot"])
            wait_until(node, lambda: seen["apps"] and set(seen["apps"][-1].payload["running"]) >= boot_apps,
                       60, "the boot apps running")
            apps = {f"app {name}": pid for name, pid in seen["apps"][-1].payload["running"].items()}
            pids = started_by(launcher.pid) | apps
            pids |= {name: floor.pid for name, floor in floors.items()}
            # What is said on the bus meanwhile, by a sniffer (its own costs are not counted): the cause of
            # most wake-ups, since every message wakes the broker and each of its subscribers.
            # Everything but bus.broker.stats, which the broker publishes only while someone listens.
            heard = sorted({t.split(".")[0] for t in TOPICS} - {"bus"} | {"bus.security", "bus.departed"})
            sniffer = subprocess.Popen([sys.executable, "-m", "cli.main", "bus", "sniff", *heard, "--json",
                                        "--timeout", f"{args.idle:g}"], env=env, stdout=subprocess.PIPE, text=True)
            before = {name: proc_stats(pid) for name, pid in pids.items()}
            time.sleep(args.idle)  # this process does nothing either: its node is not polled meanwhile
            after = {name: proc_stats(pid) for name, pid in pids.items()}
            said, _ = sniffer.communicate(timeout=30)
            print(f"\nidle {args.idle:g} s{'':9}{'CPU %':>8}{'wakeups/s':>11}{'RSS MiB':>9}{'PSS':>6}  numpy  budget")
            daemons = {p.name for p in PROCESSES if p.module.startswith("daemons.")}
            total = 0.0
            switches = 0
            for name in pids:
                cpu_s, woke = used_since(before[name]["threads"], after[name]["threads"])
                cpu, wakeups = 100 * cpu_s / args.idle, woke / args.idle
                if not name.startswith("("):
                    total, switches = total + cpu, switches + woke
                stats = after[name]
                budget = BUDGET_MIB[stats["numpy"]]
                verdict = (f"{budget:3d} {'ok' if stats['rss_mib'] <= budget else 'OVER'}" if name in daemons
                           else "")
                print(f"{name:24}{cpu:8.2f}{wakeups:11.1f}{stats['rss_mib']:9.1f}{stats['pss_mib']:6.1f}  "
                      f"{'yes' if stats['numpy'] else 'no ':5}  {verdict}")
            print(f"{'all lensos processes':24}{total:8.2f}{switches / args.idle:11.1f}   "
                  f"(targets < 0.5 % of a core, < 20 wake-ups/s)")
            heard_live = (json.loads(line) for line in said.splitlines() if line.startswith("{"))
            live = collections.Counter(m["topic"] for m in heard_live if not m.get("latched"))
            print(f"on the bus meanwhile: {sum(live.values()) / args.idle:.2f} messages/s: "
                  + ", ".join(f"{topic} {n / args.idle:.2f}" for topic, n in live.most_common()))

            for i in range(50):  # one hop through the broker: the floor of any reaction
                node.publish("bench.ping", seq=i, t_ns=0)
                wait_until(node, lambda: len(seen["ping"]) > i, 10, "ping")
            hop = statistics.median((t - m.mono_ns) / 1e6 for t, m in seen["ping"])

            swap_ms = []
            for i in range(args.swaps):
                for action, want in (("pull", "battery_swap"), ("insert", "active")):
                    mark = len(seen["state"]), len(seen["power"])
                    node.request("power.sim.request", action=action, battery="left")
                    wait_until(node, lambda: any(m.payload["state"] == want for m in seen["state"][mark[0]:]),
                               10, want)
                    if action == "pull":
                        power = next(m for m in seen["power"][mark[1]:] if not m.payload["present"][0])
                        state = next(m for m in seen["state"][mark[0]:] if m.payload["state"] == want)
                        swap_ms.append((state.mono_ns - power.mono_ns) / 1e6)
            p50 = statistics.median(swap_ms)
            print(f"\nbattery pulled -> shell in battery_swap, {args.swaps} swaps: p50 {p50:.2f} ms, "
                  f"max {max(swap_ms):.2f} ms (target < 50 ms); one broker hop p50 {hop:.3f} ms; "
                  f"ratio {p50 / hop:.1f} hops")
    finally:
        for floor in floors.values():
            floor.kill()
        launcher.send_signal(signal.SIGINT)  # lens up stops everything in order, as on Ctrl-C
        try:
            launcher.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
