"""The broker: one XSUB/XPUB proxy per lane, and a last-value cache of latched topics.

Forwarding never enters Python: each lane is ``zmq.proxy_steerable`` running in
its own thread with the GIL released. The XSUB side subscribes to everything,
so publishers always send to the broker and filtering happens once, at the
XPUB side, per subscriber; sniffers are ordinary subscribers and cost the
proxy one more fan-out copy, nothing else.

The last-value cache is itself a subscriber (inproc, on the reliable lane's
XPUB) to the latched topics only; it validates what it stores, so a malformed
message never poisons the state handed to late joiners. A node asks for the
cache over the ``latch`` ROUTER socket *after* its subscriptions are
confirmed (zguide's Clone pattern): anything newer than the snapshot then
reaches it live, and sequence numbers drop what it gets twice. The cache is
written through to the runtime directory, so a restarted broker serves the
last state even of a publisher that is gone.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time

import msgpack
import zmq

from bus.errors import BrokerRunning
from bus.intake import Intake
from bus.runtime import Runtime, write_atomically
from bus.topics import LANE_HWM, LANES, LATCHED, MAX_MESSAGE_SIZE, TOPICS, matches
from bus import envelope, sdnotify
from bus.wakeup import Wakeup

log = logging.getLogger(__name__)

NODE_NAME = "broker"
STATS_PERIOD_S = 2.0
PERSIST_DELAY_S = 0.05  # coalesce bursts of latched updates into one write
_STAT_NAMES = ("msgs_in", "bytes_in", "msgs_out", "bytes_out")


class Broker:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.ctx = zmq.Context()
        self.cache: dict[str, tuple[bytes, bytes]] = {}  # topic -> (topic frame, body)
        self.intake = Intake(NODE_NAME)
        self.started = time.monotonic()
        self._lock_file = None
        self._threads: list[threading.Thread] = []
        self._controls: dict[str, zmq.Socket] = {}
        self._stop = False
        self._wakeup = Wakeup()
        self._persist_due: float | None = None
        self._stats_seq = 0
        self._incarnation = int.from_bytes(os.urandom(7), "big")

    # --- start ---------------------------------------------------------------
    def acquire(self) -> None:
        """Take the runtime directory's broker lock or raise BrokerRunning.

        ipc:// lets a second bind silently steal a path from a live broker, so
        the lock, not the socket file, says who owns the bus."""
        self.runtime.ensure()
        lock = open(self.runtime.lock_path, "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            lock.close()
            raise BrokerRunning(f"another broker (pid {holder}) already serves {self.runtime.dir}") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self._lock_file = lock
        # We hold the lock, so any socket file left here is from a broker that died.
        for name in self.runtime.socket_names():
            self.runtime.path(name).unlink(missing_ok=True)

    def bind(self) -> None:
        old_umask = os.umask(0o117)  # sockets rw for owner and group only, never world
        try:
            for lane in LANES:
                self._bind_lane(lane)
            self.latch = self.ctx.socket(zmq.ROUTER)
            self.latch.setsockopt(zmq.LINGER, 0)
            self.latch.bind(self.runtime.latch_endpoint)
        finally:
            os.umask(old_umask)
        self.cache_sub = self.ctx.socket(zmq.SUB)
        self.cache_sub.setsockopt(zmq.RCVHWM, 0)  # never drop state on its way into the cache
        self.cache_sub.connect("inproc://reliable.out")
        for topic in LATCHED:
            self.cache_sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self.stats_pub = self.ctx.socket(zmq.PUB)
        self.stats_pub.connect("inproc://reliable.in")
        self._load_cache()

    def _bind_lane(self, lane: str) -> None:
        hwm = LANE_HWM[lane]
        xsub = self.ctx.socket(zmq.XSUB)
        xpub = self.ctx.socket(zmq.XPUB)
        xsub.setsockopt(zmq.RCVHWM, hwm)
        xsub.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_SIZE + 1024)
        xpub.setsockopt(zmq.SNDHWM, hwm)
        for sock in (xsub, xpub):
            sock.setsockopt(zmq.LINGER, 0)
        xsub.bind(self.runtime.publish_endpoint(lane))
        xsub.bind(f"inproc://{lane}.in")
        xpub.bind(self.runtime.subscribe_endpoint(lane))
        xpub.bind(f"inproc://{lane}.out")
        xsub.send(b"\x01")  # subscribe upstream to everything: filtering happens at XPUB
        control = self.ctx.socket(zmq.PAIR)
        control.bind(f"inproc://control.{lane}")
        peer = self.ctx.socket(zmq.PAIR)
        peer.connect(f"inproc://control.{lane}")
        self._controls[lane] = control

        def forward():
            try:
                zmq.proxy_steerable(xsub, xpub, None, peer)
            except zmq.ContextTerminated:
                pass
            finally:
                for sock in (xsub, xpub, peer):
                    sock.close(0)

        thread = threading.Thread(target=forward, name=f"proxy-{lane}", daemon=True)
        thread.start()
        self._threads.append(thread)

    # --- the loop ---------------------------------------------------------------
    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.cache_sub, zmq.POLLIN)
        poller.register(self.latch, zmq.POLLIN)
        poller.register(self._wakeup.fileno(), zmq.POLLIN)
        next_stats = time.monotonic()
        ping_s = sdnotify.watchdog_period()
        next_ping = time.monotonic() if ping_s else float("inf")
        while not self._stop:
            now = time.monotonic()
            if now >= next_stats:
                self.publish_stats()
                next_stats = now + STATS_PERIOD_S
            if self._persist_due is not None and now >= self._persist_due:
                self._save_cache()
            if now >= next_ping:
                # Alive means forwarding: a proxy thread that died stops the pings, and the supervisor restarts us.
                if all(thread.is_alive() for thread in self._threads):
                    sdnotify.notify("WATCHDOG=1")
                next_ping = now + ping_s
            wake = min(next_stats, self._persist_due or next_stats, next_ping)
            events = dict(poller.poll(max(0, int((wake - now) * 1000) + 1)))
            if self.cache_sub in events:
                self._drain_cache()
            if self.latch in events:
                self._serve_snapshots()
            if self._wakeup.fileno() in events:
                self._wakeup.drain()

    def stop(self) -> None:
        self._stop = True
        self._wakeup.wake()

    def close(self) -> None:
        # A clean stop ends this bus's present; only a crashed broker's successor should inherit it
        # (the publishers still alive re-send their latched topics on reconnect anyway).
        self.runtime.cache_path.unlink(missing_ok=True)
        for control in self._controls.values():
            control.send(b"TERMINATE")
        for thread in self._threads:
            thread.join(timeout=2.0)
        for control in self._controls.values():
            control.close(0)
        for sock in (self.latch, self.cache_sub, self.stats_pub):
            sock.close(0)
        self.ctx.term()
        self._wakeup.close()
        for name in self.runtime.socket_names():
            self.runtime.path(name).unlink(missing_ok=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self.runtime.lock_path.unlink(missing_ok=True)

    # --- the last-value cache ------------------------------------------------------
    def _drain_cache(self) -> None:
        while True:
            try:
                frames = self.cache_sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._store(frames)

    def _store(self, frames: list[bytes]) -> None:
        msg = self.intake.accept(frames)
        if msg is None or not TOPICS[msg.topic].latched:
            return
        self.cache[msg.topic] = (frames[0], frames[1])
        if self._persist_due is None:
            self._persist_due = time.monotonic() + PERSIST_DELAY_S

    def _serve_snapshots(self) -> None:
        # Whatever passed the proxy before this request must be in the answer.
        self._drain_cache()
        while True:
            try:
                frames = self.latch.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                identity, _, body = frames
                request_id, prefixes = msgpack.unpackb(body)
                prefixes = [p for p in prefixes if type(p) is str][:64]
            except (ValueError, TypeError, msgpack.UnpackException):
                log.warning("ignored a malformed snapshot request")
                continue
            items = [[t, b] for topic, (t, b) in self.cache.items() if any(matches(p, topic) for p in prefixes)]
            self.latch.send_multipart([identity, b"", msgpack.packb([request_id, items])])

    def _save_cache(self) -> None:
        self._persist_due = None
        write_atomically(self.runtime.cache_path, msgpack.packb([[t, b] for t, b in self.cache.values()]))

    def _load_cache(self) -> None:
        try:
            data = self.runtime.cache_path.read_bytes()
        except FileNotFoundError:
            return
        try:
            items = msgpack.unpackb(data)
            for topic, body in items:
                self._store([bytes(topic), bytes(body)])
        except (ValueError, TypeError, msgpack.UnpackException):
            corrupt = self.runtime.cache_path.with_suffix(".corrupt")
            os.replace(self.runtime.cache_path, corrupt)
            log.error("latched cache %s was unreadable; moved aside to %s", self.runtime.cache_path, corrupt)
        self._persist_due = None
        log.info("restored %d latched topics from %s", len(self.cache), self.runtime.cache_path)

    # --- statistics -----------------------------------------------------------------
    def lane_stats(self) -> dict:
        out = {}
        for lane, control in self._controls.items():
            control.send(b"STATISTICS")
            if not control.poll(1000):
                continue
            values = [int.from_bytes(f, "little") for f in control.recv_multipart()]
            # frontend counters (publishers -> broker) then backend counters (broker -> subscribers)
            out[lane] = {"msgs_in": values[0], "bytes_in": values[1], "msgs_out": values[4], "bytes_out": values[5]}
        return out

    def publish_stats(self) -> None:
        spec = TOPICS["bus.broker.stats"]
        payload = {"uptime_s": round(time.monotonic() - self.started, 3), "lanes": self.lane_stats(),
                   "latched": len(self.cache), "pid": os.getpid()}
        spec.validate(payload)
        self._stats_seq += 1
        self.stats_pub.send_multipart(envelope.encode(spec, NODE_NAME, self._incarnation, self._stats_seq, payload))


def serve(runtime: Runtime) -> int:
    """Run a broker until SIGTERM/SIGINT; the exit code for the CLI."""
    broker = Broker(runtime)
    try:
        broker.acquire()
    except BrokerRunning as exc:
        log.error("%s", exc)
        return 1
    broker.bind()
    restore = broker._wakeup.on_signals(lambda signum: broker.stop())
    sdnotify.notify("READY=1", f"STATUS=broker on {runtime.dir}")
    log.info("broker %d serving %s", os.getpid(), runtime.dir)
    try:
        broker.run()
    finally:
        restore()
        broker.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bus.broker", description="Run the lensos bus broker.")
    parser.add_argument("--runtime-dir", help="bus runtime directory (default: $LENS_RUNTIME_DIR or per-user)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="broker: %(levelname)s %(message)s")
    return serve(Runtime.resolve(args.runtime_dir))


if __name__ == "__main__":
    raise SystemExit(main())
