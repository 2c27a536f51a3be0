"""Benchmark: what a Foxglove client watching costs the bus, measured paired as a sniffer's is (bench/bus.py).

    python bench/foxglove.py [--rounds 10] [--pings 2000] [--blast 100000] [--remote-client]

One lensos setup of bench/bus.py (the broker, an echoing receiver, this process publishing), measured
without and with `lens bus foxglove` serving it and the npm registry's Foxglove client
(tests/foxglove/client.mjs, @foxglove/ws-protocol) subscribed to the very topics being blasted and pinged,
decoding every message it gets, in alternating order each round. Printed: (with) / (without) for p50,
p99, throughput and the broker's CPU per message, median over rounds with a 95 % bootstrap interval, and
how many messages the client got (the server reads the tap at idle priority: under the blast it falls
behind and the tap laps it, by design).

``--remote-client`` stands in for a client on another machine, the usual way to watch glasses: the bus and
`lens bus foxglove` (which run on the glasses) on the first core, the client alone on the second, in both
halves of every pair. The glasses then have one core; a figure of that setup, not of the default's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.bus import RATIOS, Setup, interval, ratio, stop  # noqa: E402

CLIENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "foxglove", "client.mjs")
WATCHED = ("bench.ping", "bench.pong", "bench.blast")


def watching(directory: str, client_cpus: set[int] | None = None) -> tuple[list[subprocess.Popen], dict]:
    """`lens bus foxglove` on the setup's bus and a client subscribed to the bench's topics, once subscribed."""
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "--runtime-dir", directory, "bus", "foxglove",
                               "--port", "0", "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()
    if not line:
        raise SystemExit("lens bus foxglove exited before it served")
    client = subprocess.Popen(["node", CLIENT, json.loads(line)["url"], *WATCHED, "--quiet"],
                              stdout=subprocess.PIPE, text=True,
                              preexec_fn=None if client_cpus is None else lambda: os.sched_setaffinity(0, client_cpus))
    seen: dict = {"subscribed": set(), "received": None}
    ready = threading.Event()

    def read() -> None:
        for text in client.stdout:
            event = json.loads(text)
            if event["event"] == "subscribed":
                seen["subscribed"].add(event["topic"])
                if seen["subscribed"] == set(WATCHED):
                    ready.set()
            elif event["event"] == "count":
                seen["received"] = event["received"]
    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(30):
        raise SystemExit("the Foxglove client did not subscribe within 30 s")
    return [client, server], seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--blast", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=10, help="pairs (without, with), the order alternating")
    parser.add_argument("--remote-client", action="store_true",
                        help="the bus and the server on the first core, the client alone on the second")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    client_cpus = None
    if args.remote_client:
        if len(cpus) < 2:
            raise SystemExit("--remote-client needs two cores")
        os.sched_setaffinity(0, {cpus[0]})  # this process, and every process it starts but the client
        client_cpus = set(cpus[1:])
    setup = Setup("lens")
    ratios: dict[str, list[float]] = {name: [] for name, _ in RATIOS}
    got = []
    try:
        for i in range(args.rounds):
            runs = {}
            for watched in (False, True) if i % 2 == 0 else (True, False):
                children, seen = watching(setup.directory, client_cpus) if watched else ([], None)
                runs[watched] = setup.measure(args.pings, args.blast)
                if children:
                    stop(*children)
                    children[0].wait(5)
                    got.append(seen["received"] or 0)
            for name, value in ratio(runs[True], runs[False]).items():
                ratios[name].append(value)
    finally:
        setup.close()
    print(f"a Foxglove client watching (lens bus foxglove, the npm client subscribed to {', '.join(WATCHED)}), "
          f"paired over {args.rounds} rounds of {args.pings} pings and {args.blast} messages blasted, "
          + (f"the bus and the server on core {cpus[0]}, the client on {sorted(client_cpus)} (as if remote)"
             if args.remote_client else f"{os.cpu_count()} cores") + "; with / without, median [95 % interval]:")
    figures = []
    for name, values in ratios.items():
        low, high = interval(values)
        figures.append(f"{name} {statistics.median(values):.2f}x [{low:.2f}, {high:.2f}]")
    print("  " + ", ".join(figures))
    print(f"messages the client decoded per round: median {statistics.median(got):.0f} of {2 * args.pings + args.blast}"
          " (the rest lapped on the tap: the server runs at idle priority and never holds the bus back)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
