"""Benchmark: camera frames through the shared-memory ring and the bus, against raw shared memory.

    python bench/frames.py [--seconds 10] [--width 1920] [--height 1080] [--fps 30] [--readers 3]

Both setups move the same frames at the same rate from one writer process
to N reader processes:

- raw:    the writer copies each frame into a mapped file and sends its slot
          number straight to the readers (plain pyzmq PUB/SUB, no broker);
          a reader looks at the pixels through a numpy view.
- lensos: the writer is a bus node using camerad's Ring (seqlock per slot)
          and publishes a camera.frame descriptor through the broker; a
          reader attaches the ring and reads through Ring.frame().

Latency is from just before the writer starts copying the frame into the
ring to the reader having checked it, so both include the copy. Every
frame carries its id stamped at both ends; a reader that sees ends that
disagree (and was not told by the ring) counts a torn frame. A further
lensos reader subscribes and never reads: the memory of the broker, the
writer and that stalled reader is measured at the start and at the end.
Readers report their own CPU time. Figures are printed with ratios to raw.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import zmq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.procstat import rss_kib  # noqa: E402
from bus.node import Node  # noqa: E402
from frames.ring import FrameOverrun, Ring  # noqa: E402

SLOTS = 4


def stamped(base: np.ndarray, frame_id: int) -> np.ndarray:
    flat = base.reshape(-1)
    flat[:8] = np.frombuffer(np.uint64(frame_id).tobytes(), dtype=np.uint8)
    flat[-8:] = flat[:8]
    return base


def check(view: np.ndarray, frame_id: int) -> bool:
    flat = view.reshape(-1)
    return bool((flat[:8] == flat[-8:]).all()) and int(flat[:8].view(np.uint64)[0]) == frame_id


# --- the writers ---------------------------------------------------------------------------
def write_raw(directory: str, shape: tuple, fps: float, seconds: float) -> None:
    size = int(np.prod(shape))
    with open(os.path.join(directory, "raw.ring"), "w+b") as f:
        f.truncate(SLOTS * size)
        mm = mmap.mmap(f.fileno(), SLOTS * size)
    slots = np.frombuffer(mm, dtype=np.uint8).reshape(SLOTS, *shape)
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 8)
    pub.bind(f"ipc://{directory}/raw.frames")
    frame = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    time.sleep(1.0)  # raw PUB/SUB has no readiness handshake: give the readers time to connect

    def one(i: int) -> None:
        t = time.monotonic_ns()
        np.copyto(slots[i % SLOTS], stamped(frame, i))
        pub.send(np.array([i, i % SLOTS, t], dtype=np.int64).tobytes())

    pace(fps, seconds, one)
    pub.send(np.array([-1, 0, 0], dtype=np.int64).tobytes())
    ctx.destroy(linger=100)


def write_lens(directory: str, shape: tuple, fps: float, seconds: float) -> None:
    with Node("camerad", directory, heartbeat=None) as node:
        ring = Ring.create(os.path.join(directory, "camera.ring"), SLOTS, shape)
        node.start()
        frame = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
        time.sleep(1.0)  # the same head start as raw, so both runs see the readers in the same state

        def one(i: int) -> None:
            t = time.monotonic_ns()
            slot, gen = ring.write(i, stamped(frame, i), t)
            node.publish("camera.frame", id=i, slot=slot, gen=gen, width=shape[1], height=shape[0],
                         format="rgb24", mono_ns=t, owner="bench", ring=1)
            node.run_once(0)

        pace(fps, seconds, one)
        node.publish("camera.frame", id=-1, slot=0, gen=0, width=0, height=0, format="end", mono_ns=0, owner="",
                     ring=0)
        node.run_once(0.5)


def pace(fps: float, seconds: float, one) -> None:
    start, period = time.monotonic(), 1.0 / fps
    for i in range(int(seconds * fps)):
        delay = start + i * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        one(i)


# --- the readers ---------------------------------------------------------------------------
class Tally:
    def __init__(self):
        self.latency_us: list[float] = []
        self.torn = self.overrun = 0
        self.cpu0 = self._cpu()
        self.t0 = time.monotonic()

    def _cpu(self) -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def report(self) -> None:
        wall = time.monotonic() - self.t0
        print(json.dumps({"frames": len(self.latency_us), "torn": self.torn, "overrun": self.overrun,
                          "latency_us": self.latency_us, "cpu_s": self._cpu() - self.cpu0, "wall_s": wall}))


def read_raw(directory: str, shape: tuple) -> None:
    size = int(np.prod(shape))
    while not os.path.exists(os.path.join(directory, "raw.ring")):
        time.sleep(0.01)
    with open(os.path.join(directory, "raw.ring"), "rb") as f:
        mm = mmap.mmap(f.fileno(), SLOTS * size, prot=mmap.PROT_READ)
    slots = np.frombuffer(mm, dtype=np.uint8).reshape(SLOTS, *shape)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 8)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"ipc://{directory}/raw.frames")
    tally = Tally()
    while True:
        frame_id, slot, t = np.frombuffer(sub.recv(), dtype=np.int64)
        if frame_id < 0:
            break
        if not check(slots[slot], int(frame_id)):
            tally.torn += 1
        tally.latency_us.append((time.monotonic_ns() - t) / 1e3)
    tally.report()
    ctx.destroy(linger=0)


def read_lens(directory: str, stall: bool = False) -> None:
    state = {"ring": None, "done": False}
    tally = Tally()

    def on_frame(msg) -> None:
        p = msg.payload
        if p["id"] < 0:
            state["done"] = True
            return
        if state["ring"] is None:
            state["ring"] = Ring.attach(os.path.join(directory, "camera.ring"))
        try:
            with state["ring"].frame(p["slot"], p["gen"]) as view:
                ok = check(view, p["id"])
        except FrameOverrun:
            tally.overrun += 1
            return
        if not ok:
            tally.torn += 1
        tally.latency_us.append((time.monotonic_ns() - p["mono_ns"]) / 1e3)

    with Node(f"reader-{os.getpid()}", directory, heartbeat=None) as node:
        node.subscribe("camera.frame", on_frame)
        node.start()
        print("ready", flush=True)
        if stall:
            sys.stdin.readline()  # never polls: frames pile up wherever they may
            return
        while not state["done"]:
            node.run_once(1.0)
    tally.report()


# --- the measuring side ----------------------------------------------------------------------
def run(kind: str, args) -> dict:
    directory = tempfile.mkdtemp(prefix="lf-", dir="/tmp")
    shape = f"{args.height}x{args.width}"
    me = [sys.executable, os.path.abspath(__file__), "--dir", directory, "--shape", shape]
    children = []
    try:
        if kind == "lens":
            children.append(subprocess.Popen([sys.executable, "-m", "broker", "--runtime-dir", directory],
                                             stderr=subprocess.DEVNULL))
        readers = [subprocess.Popen(me + ["--role", f"read-{kind}"], stdout=subprocess.PIPE, text=True)
                   for _ in range(args.readers)]
        stalled = None
        if kind == "lens":
            stalled = subprocess.Popen(me + ["--role", "stall"], stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                                       text=True)
            for reader in readers + [stalled]:
                assert reader.stdout.readline().strip() == "ready"
        writer = subprocess.Popen(me + ["--role", f"write-{kind}", "--fps", str(args.fps),
                                        "--seconds", str(args.seconds)])
        watched = {"writer": writer.pid}
        if kind == "lens":
            watched |= {"broker": children[0].pid, "stalled reader": stalled.pid}
        time.sleep(2.0)
        rss_start = {name: rss_kib(pid) for name, pid in watched.items()}
        time.sleep(max(0.0, args.seconds - 1.5))
        rss_end = {name: rss_kib(pid) for name, pid in watched.items()}
        writer.wait(args.seconds + 30)
        reports = [json.loads(r.communicate(timeout=30)[0].strip().splitlines()[-1]) for r in readers]
        if stalled is not None:
            stalled.communicate("\n", timeout=10)
        return {"reports": reports, "rss_start": rss_start, "rss_end": rss_end}
    finally:
        for child in children:
            child.terminate()
            child.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def summary(result: dict, expected: int) -> dict:
    latencies = [x for r in result["reports"] for x in r["latency_us"]]
    return {
        "delivered": sum(r["frames"] for r in result["reports"]) / (expected * len(result["reports"])),
        "torn": sum(r["torn"] for r in result["reports"]),
        "overrun": sum(r["overrun"] for r in result["reports"]),
        "p50_us": statistics.median(latencies),
        "p99_us": statistics.quantiles(latencies, n=100)[98],
        "cpu_pct": statistics.mean(100 * r["cpu_s"] / r["wall_s"] for r in result["reports"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        height, width = map(int, args.shape.split("x"))
        shape = (height, width, 3)
        {"write-raw": lambda: write_raw(args.dir, shape, args.fps, args.seconds),
         "write-lens": lambda: write_lens(args.dir, shape, args.fps, args.seconds),
         "read-raw": lambda: read_raw(args.dir, shape),
         "read-lens": lambda: read_lens(args.dir),
         "stall": lambda: read_lens(args.dir, stall=True)}[args.role]()
        return 0

    expected = int(args.seconds * args.fps)
    print(f"{args.width}x{args.height} RGB at {args.fps:g} fps to {args.readers} readers, {args.seconds:g} s each")
    raw = summary(run("raw", args), expected)
    lens_result = run("lens", args)
    lens = summary(lens_result, expected)
    print(f"{'':14}{'raw shm':>12}{'lensos':>12}{'ratio':>9}")
    for key, label in (("p50_us", "latency p50"), ("p99_us", "latency p99"), ("cpu_pct", "CPU/reader %")):
        print(f"{label:14}{raw[key]:12.1f}{lens[key]:12.1f}{lens[key] / raw[key]:9.2f}")
    print(f"{'delivered':14}{raw['delivered']:12.1%}{lens['delivered']:12.1%}")
    print(f"{'torn frames':14}{raw['torn']:12d}{lens['torn']:12d}   (lensos overruns reported: {lens['overrun']})")
    print(f"added latency p50: {(lens['p50_us'] - raw['p50_us']) / 1000:.2f} ms")
    for name in lens_result["rss_start"]:
        start, end = lens_result["rss_start"][name], lens_result["rss_end"][name]
        print(f"RSS {name:15} {start / 1024:7.1f} MiB -> {end / 1024:7.1f} MiB  ({(end - start) / 1024:+.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
