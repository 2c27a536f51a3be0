"""A demo publisher: traffic on every lane, for the bus's own tests and benchmarks and a first look at the tools.

It publishes a tick event every second, its latched status every five, a
sine wave on the stream lane at 10 Hz, and answers demo.echo.request.
"""

from __future__ import annotations

import argparse
import logging
import math
import time

from bus.node import Node

TICK_S = 1.0
STATUS_S = 5.0
WAVE_S = 0.1
WAVE_SAMPLES = 16


def run(node: Node) -> None:
    started = time.monotonic()
    started_wall = time.time()
    state = {"ticks": 0, "echoes": 0}

    def tick():
        state["ticks"] += 1
        node.publish("demo.tick", n=state["ticks"], text=f"tick {state['ticks']}")

    def status():
        node.publish("demo.status", uptime_s=round(time.monotonic() - started, 3), ticks=state["ticks"],
                     started_wall=started_wall)

    def wave():
        t = time.monotonic() - started
        samples = [round(math.sin(2 * math.pi * (t + i * WAVE_S / WAVE_SAMPLES)), 4) for i in range(WAVE_SAMPLES)]
        node.publish("demo.wave", t=round(t, 3), samples=samples)

    def echo(msg):
        state["echoes"] += 1
        return {"text": msg.payload["text"].upper(), "n": state["echoes"]}

    node.serve("demo.echo.request", echo)
    status()
    node.every(TICK_S, tick)
    node.every(STATUS_S, status)
    node.every(WAVE_S, wave)
    node.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bustools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-dir", help="bus runtime directory (default: $LENS_RUNTIME_DIR or per-user)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="demo: %(levelname)s %(message)s")
    with Node("demo", args.runtime_dir) as node:
        run(node)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
