"""Benchmark: the lensos bus against raw pyzmq through a C proxy, measured in one run.

    python bench/bus.py [--pings 2000] [--blast 100000] [--rounds 5] [--sizes 64,1024,65536]

Every setup has three processes on ipc:// sockets in a fresh temp dir: a
forwarder (raw: zmq.proxy in C; lensos: the broker, which judges each
(verified sender, topic) once in Python and forwards from then on in its C
loop), an echoing receiver, and this process. The baselines are the strongest
honest ones, what a competent pyzmq user would write: a raw receiver that
drains what is queued without a poll per message and only receives ("raw,
receive only", the lean one), and the same that also decodes the same msgpack
body lensos decodes ("raw + msgpack"). Bodies are padded (bench topics' pad
field) to each of --sizes bytes, and fewer are blasted where they would be
more than --blast-mib. "lensos, Python fwd" is the
broker without its C loop (LENS_BROKER_PYTHON=1), as where no compiler built it.
"lensos, sealed" is the broker with every lane sealed (LENS_BUS_SEALED=1: CURVE
on each frame, as where the socket directory is not the broker's alone);
"lensos" enters its lanes with a pass (bus.access).
"raw + CURVE/ZAP" is the msgpack baseline with every socket authenticated as lensos
authenticates them (a CURVE handshake, a ZAP handler, User-Id on each
frame): its ratio to raw is the cost of authentication alone. Latency is half the ping-pong round trip of a
message of the size measured; throughput is what the receiver counts while this
process publishes as fast as it can. Raw sockets get the same high-water
marks as the lensos reliable lane, so both are measured lossless. All setups run side by side and are measured in
turn, round after round, and each figure is the median over rounds; each round's ratio to each baseline is
printed as a median with a 95 % bootstrap interval: only
ratios against a baseline measured in the same spell mean anything on a
noisy machine.

A sniffer's cost is measured paired, as two setups differ by more than it
does: the same broker and receiver measured without and with `lens bus sniff`
attached, in alternating order, each round; printed are the median ratios
with a 95 % bootstrap interval.

Over 400 lines: each measurement's raw baseline and its lensos setup sit side by side in this one file, so
that what a figure is compared with is read next to it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.procstat import cpu_seconds  # noqa: E402
from bus.node import Node  # noqa: E402
from bus.runtime import Runtime  # noqa: E402
from bus.topics import LANE_HWM  # noqa: E402

HWM = LANE_HWM["reliable"]
# The floor is the leanest pyzmq: two plain send/recv calls with an int flag, no
# send_multipart (whose per-frame flag handling costs microseconds) and no checks.
SNDMORE = int(zmq.SNDMORE)
IDLE_REPORT_S = 1.0  # the receiver reports this long after the last blast message


# --- the receiving side, in its own process --------------------------------------
def curve(sock: zmq.Socket, server: bool = False) -> None:
    """Raw + CURVE: the same keys as every lensos socket uses, from the environment the setup made."""
    if "BENCH_SERVER_SECRET" not in os.environ:
        return
    if server:
        sock.curve_server = True
        sock.curve_secretkey = os.environ["BENCH_SERVER_SECRET"].encode()
        sock.zap_domain = b"bench"
        return
    sock.curve_serverkey = os.environ["BENCH_SERVER_PUBLIC"].encode()
    sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()


def admit_everyone(ctx: zmq.Context) -> None:
    """A ZAP handler that says yes with a user id, so the raw proxy pays the handshake and the metadata."""
    zap = ctx.socket(zmq.REP)
    zap.bind("inproc://zeromq.zap.01")

    def serve():
        while True:
            request = zap.recv_multipart()
            zap.send_multipart([b"1.0", request[1], b"200", b"OK", b"bench", b""])

    threading.Thread(target=serve, daemon=True).start()


def raw_proxy(directory: str) -> None:
    ctx = zmq.Context()
    if "BENCH_SERVER_SECRET" in os.environ:
        admit_everyone(ctx)
    xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
    curve(xsub, server=True)
    curve(xpub, server=True)
    xsub.setsockopt(zmq.RCVHWM, HWM)
    xpub.setsockopt(zmq.SNDHWM, HWM)
    xsub.bind(f"ipc://{directory}/raw.in")
    xpub.bind(f"ipc://{directory}/raw.out")
    zmq.proxy(xsub, xpub)


def raw_receiver(directory: str, decode: bool) -> None:
    """What a competent pyzmq user writes: one poll, then drain everything queued without a poll per message
    (pyzmq's poll costs about as much as the recv). ``decode``: also msgpack-decode each body, as lensos
    does, and count gaps; without it the receiver only receives (the lean baseline)."""
    ctx = zmq.Context()
    sub, pub = ctx.socket(zmq.SUB), ctx.socket(zmq.PUB)
    curve(sub)
    curve(pub)
    sub.setsockopt(zmq.RCVHWM, HWM)
    pub.setsockopt(zmq.SNDHWM, HWM)
    sub.connect(f"ipc://{directory}/raw.out")
    pub.connect(f"ipc://{directory}/raw.in")
    sub.setsockopt(zmq.SUBSCRIBE, b"bench.ping")
    sub.setsockopt(zmq.SUBSCRIBE, b"bench.blast")
    received, first, last, expected = 0, 0, 0, 1
    drops = 0
    ping, blast, again, nonblocking = b"bench.ping", b"bench.blast", zmq.Again, zmq.NOBLOCK
    unpackb = msgpack.unpackb
    while True:
        if not sub.poll(IDLE_REPORT_S * 1000 if received else -1):
            pub.send(b"bench.report", SNDMORE)
            pub.send(msgpack.packb({"received": received, "first_ns": first, "last_ns": last, "drops": drops}))
            received, expected, drops = 0, 1, 0
            continue
        before = received
        if not received:
            first = time.monotonic_ns()
        while True:
            try:
                topic = sub.recv(nonblocking)
            except again:
                break
            body = sub.recv()
            if topic == blast:
                received += 1
                if decode:
                    seq = unpackb(body)["seq"]
                    drops += seq - expected
                    expected = seq + 1
            elif topic == ping:
                pub.send(b"bench.pong", SNDMORE)
                pub.send(msgpack.packb(unpackb(body)) if decode else body)
        if received != before:
            last = time.monotonic_ns()  # the drain emptied the queue: everything so far has arrived


def lens_receiver(directory: str) -> None:
    node = Node(f"bench-receiver-{os.getpid()}", Runtime.resolve(directory))
    state = {"received": 0, "first": 0, "last": 0}

    def report_when_idle():
        # Checked on a slow timer rather than re-armed per message, as the raw receiver's poll timeout is.
        if state["received"] and time.monotonic_ns() - state["last"] > IDLE_REPORT_S * 1e9:
            node.publish("bench.report", received=state["received"], first_ns=state["first"],
                         last_ns=state["last"], drops=node.intake.counters["bench.blast"].drops)
            node.intake.counters["bench.blast"].drops = 0
            state["received"] = 0

    def on_blast(msg):
        now = time.monotonic_ns()
        if not state["received"]:
            state["first"] = now
        state["received"] += 1
        state["last"] = now

    node.subscribe("bench.ping", lambda msg: node.publish("bench.pong", **msg.payload))
    node.subscribe("bench.blast", on_blast)
    node.every(IDLE_REPORT_S / 4, report_when_idle)
    node.run()


# --- the measuring side --------------------------------------------------------------
class RawSide:
    def __init__(self, directory: str):
        self.ctx = zmq.Context()
        self.pub, self.sub = self.ctx.socket(zmq.PUB), self.ctx.socket(zmq.SUB)
        curve(self.pub)
        curve(self.sub)
        self.pub.setsockopt(zmq.SNDHWM, HWM)
        self.sub.setsockopt(zmq.RCVHWM, HWM)
        self.pub.connect(f"ipc://{directory}/raw.in")
        self.sub.connect(f"ipc://{directory}/raw.out")
        self.sub.setsockopt(zmq.SUBSCRIBE, b"bench.pong")
        self.sub.setsockopt(zmq.SUBSCRIBE, b"bench.report")

    def send(self, topic: str, **payload) -> None:
        self.pub.send(topic.encode(), SNDMORE)
        self.pub.send(msgpack.packb(payload))

    def blast(self, count: int, pad: bytes) -> None:
        send, packb, topic = self.pub.send, msgpack.packb, b"bench.blast"
        for i in range(1, count + 1):
            send(topic, SNDMORE)
            send(packb({"seq": i, "t_ns": 0, "pad": pad}))

    def receive(self, timeout_s: float) -> tuple[str, dict] | None:
        if not self.sub.poll(timeout_s * 1000):
            return None
        topic, body = self.sub.recv(), self.sub.recv()
        return topic.decode(), msgpack.unpackb(body)

    def close(self) -> None:
        self.ctx.destroy(0)


class LensSide:
    def __init__(self, directory: str):
        self.node = Node(f"bench-{os.getpid()}", Runtime.resolve(directory))
        self.inbox: list = []
        self.node.subscribe("bench.pong", self.inbox.append)
        self.node.subscribe("bench.report", self.inbox.append)
        self.node.start()

    def send(self, topic: str, **payload) -> None:
        self.node.publish(topic, **payload)

    def blast(self, count: int, pad: bytes) -> None:
        publish = self.node.publish
        for i in range(1, count + 1):
            publish("bench.blast", seq=i, t_ns=0, pad=pad)

    def receive(self, timeout_s: float) -> tuple[str, dict] | None:
        deadline = time.monotonic() + timeout_s
        while not self.inbox:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.node.run_once(remaining)
        msg = self.inbox.pop(0)
        return msg.topic, msg.payload

    def close(self) -> None:
        self.node.close()


def padding(size: int) -> bytes:
    """Bytes that make a blast message's msgpack body ``size`` bytes long (at its largest sequence number)."""
    pad = b""
    while len(msgpack.packb({"seq": 1 << 20, "t_ns": 0, "pad": pad})) < size:
        pad += b"x" * max(1, size - len(msgpack.packb({"seq": 1 << 20, "t_ns": 0, "pad": pad})))
    return pad


def measure(side, pings: int, blast: int, size: int = 64) -> dict:
    # Warm up until the receiver answers: both directions are then connected and subscribed.
    seq = 0
    while True:
        seq += 1
        side.send("bench.ping", seq=-seq, t_ns=0)
        answer = side.receive(0.05)
        if answer and answer[0] == "bench.pong":
            break
    while side.receive(0.2):  # late answers to the warm-up
        pass
    one_way = []
    pad = padding(size)
    for i in range(pings):
        t0 = time.perf_counter_ns()
        side.send("bench.ping", seq=i, t_ns=t0, pad=pad)
        topic, payload = side.receive(10.0)
        assert topic == "bench.pong" and payload["seq"] == i, (topic, payload)
        one_way.append((time.perf_counter_ns() - t0) / 2 / 1000)
    one_way.sort()
    t0, cpu0 = time.monotonic_ns(), time.process_time()
    side.blast(blast, pad)
    sent_s = (time.monotonic_ns() - t0) / 1e9
    publish_cpu_us = (time.process_time() - cpu0) / blast * 1e6
    report = None
    while report is None:
        answer = side.receive(60.0)
        if answer is None:
            raise SystemExit("the receiver never reported")
        if answer[0] == "bench.report":
            report = answer[1]
    elapsed = max((report["last_ns"] - t0) / 1e9, 1e-9)
    return {
        "p50_us": statistics.median(one_way),
        "p99_us": one_way[int(len(one_way) * 0.99) - 1],
        "msgs_per_s": report["received"] / elapsed,
        "received": report["received"],
        "lost": blast - report["received"],
        "gaps": report["drops"],
        "publish_s": sent_s,
        "pub_us": publish_cpu_us,
    }


def spawn(role: str, directory: str, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", role, "--dir", directory],
                            env=dict(os.environ, OPENBLAS_NUM_THREADS="1", **env))


def stop(*children: subprocess.Popen) -> None:
    for child in children:
        child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


class Setup:
    """One system under test: its processes in their own temp dir, and the measuring side."""

    def __init__(self, kind: str):
        self.directory = tempfile.mkdtemp(prefix="lb-", dir="/tmp")
        d = self.directory
        if kind in ("raw-lean", "raw-msgpack", "raw+curve"):
            env = {}
            if kind == "raw+curve":
                public, secret = zmq.curve_keypair()
                env = {"BENCH_SERVER_PUBLIC": public.decode(), "BENCH_SERVER_SECRET": secret.decode()}
            receiver = "raw-lean-receiver" if kind == "raw-lean" else "raw-receiver"
            self.children = [spawn("raw-proxy", d, **env), spawn(receiver, d, **env)]
            os.environ.update(env)  # the measuring side's sockets read them as they are made
            self.side = RawSide(d)
            for name in env:
                del os.environ[name]
            return
        variant = {"lens-python": {"LENS_BROKER_PYTHON": "1"}, "lens-sealed": {"LENS_BUS_SEALED": "1"}}.get(kind, {})
        self.children = [subprocess.Popen([sys.executable, "-m", "broker", "--runtime-dir", d],
                                          stderr=subprocess.DEVNULL, env=dict(os.environ, **variant)),
                         spawn("lens-receiver", d)]
        self.side = LensSide(d)

    def measure(self, pings: int, blast: int, size: int = 64) -> dict:
        """measure() on this setup, with the forwarder's CPU per message forwarded and the receiver's per
        message received."""
        forwarder, receiver = self.children[0].pid, self.children[1].pid  # zmq.proxy or the broker
        before = cpu_seconds(forwarder), cpu_seconds(receiver)
        result = measure(self.side, pings, blast, size)
        result["fwd_us"] = (cpu_seconds(forwarder) - before[0]) / (2 * pings + blast) * 1e6
        result["recv_us"] = (cpu_seconds(receiver) - before[1]) / (pings + blast) * 1e6
        return result

    def close(self) -> None:
        self.side.close()
        stop(*reversed(self.children))
        shutil.rmtree(self.directory, ignore_errors=True)


def interleaved(names: dict[str, str], rounds: int, pings: int, blast: int, size: int = 64) -> dict[str, dict]:
    """Each setup measured once per round, in turn (the order reversed every other round), so a slow spell
    of the machine hits them all alike.

    Every figure is the median over rounds; lost and gaps are summed; ``rounds`` keeps each round's.
    """
    setups = {}
    try:
        for name, kind in names.items():
            setups[name] = Setup(kind)
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for i in range(rounds):
            for name, setup in (reversed if i % 2 else iter)(list(setups.items())):
                runs[name].append(setup.measure(pings, blast, size))
    finally:
        for setup in setups.values():
            setup.close()
    out = {}
    for name, results in runs.items():
        out[name] = {key: statistics.median(r[key] for r in results)
                     for key in ("p50_us", "p99_us", "msgs_per_s", "fwd_us", "recv_us", "pub_us")}
        out[name]["rounds"] = results
        out[name]["lost"] = sum(r["lost"] for r in results)
        out[name]["gaps"] = sum(r["gaps"] for r in results)
    return out


RATIOS = (("p50", "p50_us"), ("p99", "p99_us"), ("throughput", "msgs_per_s"), ("broker CPU/msg", "fwd_us"))


def ratio(a: dict, b: dict) -> dict[str, float]:
    """One round's figures of ``a`` over those of ``b``, measured in the same round."""
    return {name: a[key] / b[key] for name, key in RATIOS}


def sniffer_effect(rounds: int, pings: int, blast: int) -> dict[str, list[float]]:
    """Per round, (with a sniffer) / (without) for p50, p99, throughput and the broker's CPU per message,
    on one lensos setup, the order alternating so that a drift of the machine favours neither."""
    setup = Setup("lens")
    ratios: dict[str, list[float]] = {name: [] for name, _ in RATIOS}
    try:
        for i in range(rounds):
            runs = {}
            for sniffing in (False, True) if i % 2 == 0 else (True, False):
                sniffer = None
                if sniffing:
                    sniffer = subprocess.Popen([sys.executable, "-m", "cli.main", "--runtime-dir", setup.directory,
                                                "bus", "sniff", "--json"], stdout=subprocess.DEVNULL,
                                               stderr=subprocess.PIPE, text=True)
                    while "listening" not in sniffer.stderr.readline():  # ready: the tap is open
                        if sniffer.poll() is not None:
                            raise SystemExit("the sniffer exited before it listened")
                    threading.Thread(target=sniffer.stderr.read, daemon=True).start()  # its gap warnings
                runs[sniffing] = setup.measure(pings, blast)
                if sniffer is not None:
                    stop(sniffer)
            for name, value in ratio(runs[True], runs[False]).items():
                ratios[name].append(value)
    finally:
        setup.close()
    return ratios


def interval(values: list[float], draws: int = 2000) -> tuple[float, float]:
    """A 95 % bootstrap interval of the median."""
    rng = random.Random(1)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return medians[int(draws * 0.025)], medians[int(draws * 0.975) - 1]


def time_to_latched(directory: str, runs: int = 20) -> float:
    """Median ms from a new node's start() to holding the latched state (a restarted daemon's case)."""
    broker = subprocess.Popen([sys.executable, "-m", "broker", "--runtime-dir", directory],
                              stderr=subprocess.DEVNULL)
    runtime = Runtime.resolve(directory)
    owner = Node("demo", runtime)
    owner.publish("demo.status", uptime_s=1.0, ticks=1, started_wall=0.0)
    owner.start(timeout=20)
    times = []
    try:
        for i in range(runs):
            got = []
            t0 = time.perf_counter()
            with Node(f"late-{i}", runtime) as late:
                late.subscribe("demo.status", got.append)
                late.start(timeout=20)
                late.run_once(0)
                assert got, "latched state missing after start()"
                times.append((time.perf_counter() - t0) * 1000)
    finally:
        owner.close()
        stop(broker)
    return statistics.median(times)


# The strongest honest baselines, lean first: a raw receiver that only receives, and one that also decodes the
# same msgpack body lensos decodes; both drain without a poll per message.
BASELINES = {"raw, receive only": "raw-lean", "raw + msgpack": "raw-msgpack"}
SETUPS = {"raw + CURVE/ZAP": "raw+curve", "lensos": "lens", "lensos, sealed": "lens-sealed",
          "lensos, Python fwd": "lens-python"}


def paired(setup: dict, raw: dict) -> dict[str, list[float]]:
    """Each round's ratio of a setup to raw (its forwarder's CPU to zmq.proxy's), measured in the same round."""
    rounds = [ratio(s, r) for s, r in zip(setup["rounds"], raw["rounds"])]
    return {name: [r[name] for r in rounds] for name, _ in RATIOS}


def report_size(size: int, blast: int, results: dict[str, dict]) -> None:
    lean, decoding = (results[name] for name in BASELINES)
    print(f"\n{size} B bodies, {blast} blasted a round")
    print(f"{'':20} {'p50 us':>8} {'p99 us':>8} {'msg/s':>10} {'lost':>6}  {'thru x lean':>11} {'x msgpack':>9}"
          f"  {'CPU us/msg: fwd':>15} {'recv':>5} {'pub':>5}")
    for name, r in results.items():
        print(f"{name:20} {r['p50_us']:8.1f} {r['p99_us']:8.1f} {r['msgs_per_s']:10.0f} {r['lost']:6d}  "
              f"{r['msgs_per_s'] / lean['msgs_per_s']:11.2f} {r['msgs_per_s'] / decoding['msgs_per_s']:9.2f}  "
              f"{r['fwd_us']:15.2f} {r['recv_us']:5.2f} {r['pub_us']:5.2f}")
    print(f"each round's ratio, measured in the same round, median [95 % interval] over {len(lean['rounds'])} rounds:")
    for name, result in results.items():
        if name in BASELINES:
            continue
        for baseline in BASELINES:
            figures = [f"{key} {statistics.median(values):.2f}x [{low:.2f}, {high:.2f}]"
                       for key, values in paired(result, results[baseline]).items() for low, high in [interval(values)]]
            print(f"  {name} / {baseline}: " + ", ".join(figures))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--blast", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; figures are medians")
    parser.add_argument("--sizes", default="64,1024,65536", help="message body sizes in bytes (default: %(default)s)")
    parser.add_argument("--blast-mib", type=int, default=200,
                        help="fewer messages blasted where --blast of them would be more than this many MiB")
    parser.add_argument("--skip-extras", action="store_true", help="not the sniffer's cost nor the late joiner")
    parser.add_argument("--setups", default="lens",
                        help=f"which to measure beside the two raw baselines, of {', '.join(SETUPS.values())} "
                             f"(default: %(default)s)")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    roles = {"raw-proxy": raw_proxy, "raw-receiver": lambda d: raw_receiver(d, decode=True),
             "raw-lean-receiver": lambda d: raw_receiver(d, decode=False), "lens-receiver": lens_receiver}
    if args.role:
        signal.signal(signal.SIGTERM, lambda *a: os._exit(0)) if args.role.startswith("raw") else None
        roles[args.role](args.dir)
        return 0

    chosen = set(args.setups.split(","))
    if chosen - set(SETUPS.values()):
        parser.error(f"unknown setups: {', '.join(sorted(chosen - set(SETUPS.values())))}")
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"bus benchmark: {args.rounds} interleaved rounds per size of {args.pings} pings and up to {args.blast} "
          f"messages blasted (at most {args.blast_mib} MiB), ipc://, {os.cpu_count()} cores; medians over rounds; "
          f"each receiver drains what is queued without a poll per message")
    for size in sizes:
        blast = min(args.blast, max(1000, args.blast_mib * 2**20 // size))
        results = interleaved({**BASELINES, **{name: kind for name, kind in SETUPS.items() if kind in chosen}},
                              args.rounds, args.pings, blast, size)
        report_size(size, blast, results)
    if not args.skip_extras:
        sniffing = sniffer_effect(2 * args.rounds, args.pings, args.blast)
        print(f"a sniffer (lens bus sniff --json, reading the broker's tap), paired over {2 * args.rounds} rounds, "
              f"with / without, 64 B, median [95 % interval]:")
        figures = []
        for name, values in sniffing.items():
            low, high = interval(values)
            figures.append(f"{name} {statistics.median(values):.2f}x [{low:.2f}, {high:.2f}]")
        print("  " + ", ".join(figures))
        directory = tempfile.mkdtemp(prefix="lb-", dir="/tmp")
        try:
            latched_ms = time_to_latched(directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        print(f"late joiner: start() to latched state delivered, median of 20: {latched_ms:.1f} ms (target < 100 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
