"""The broker: forwards every lane, checks who says what, and keeps the last value of latched topics.

The ZAP handler (broker.zap) admits only known keys (CURVE on the latch socket,
a pass on the lanes: bus.access), so each frame that arrives carries its
sender's verified identity as ``User-Id``. The forwarding loop reads it: it
drops, counts and reports what the sender may not publish (broker.gate), and
stamps the identity on the topic frame for subscribers (bus.envelope), who
trust it over the name a header claims. The
judging is Python; once a (sender, topic) is judged plainly forwardable, its
next messages go through a C loop (broker.fastpath) without waking Python.
XSUB subscribes upstream to everything; XPUB runs in manual mode, so every
subscription passes the gate too (restricted topics go out on personal
channels only).

The last-value cache is fed from the forwarding loop itself, after
validation, so a malformed message never poisons the state handed to late
joiners. A node asks for it over the ``latch`` ROUTER socket *after* its
subscriptions are confirmed (zguide's Clone pattern): anything newer than the
snapshot then reaches it live, and sequence numbers drop what it gets twice.
The cache is written through to the runtime directory, so a restarted broker
serves the last state even of a publisher that is gone.

Over 400 lines because it is one loop: every message crosses _forward, _deliver and _personal, which
read the lanes, the verdicts, the channels' counts and the cache directly; the judging (gate), the
admission (zap, connections) and the C loop (fastpath) already have modules of their own.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import logging
import os
import time
from typing import Callable

import msgpack
import zmq

from bus import access, envelope, keys, logs, sdnotify
from broker import connections, fastpath
from broker.present import Present
from bus.errors import BrokerRunning, KeyMissing
from bus.envelope import ACK, BY_WIRE, PERSONAL, STATS_WANTED, present
from broker.gate import Gate
from bus.intake import Intake
from bus.lane import c_send
from bus.runtime import Runtime, write_atomically
from bus.seqlock import NoFences  # the broker loads ctypes anyway (bus.lane's c_send); a node does not
from bus.tap import TAP_TOPIC, TapWriter
from bus.topics import LANE_HWM, LANES, MAX_MESSAGE_SIZE, TOPICS, matches
from bus.wakeup import Wakeup
from bus.keys import verified
from broker.zap import ZapHandler

log = logging.getLogger(__name__)

NODE_NAME = keys.BROKER
STATS_PERIOD_S = 2.0  # while anyone listens to bus.broker.stats; nobody does on idle glasses
_STATS = b"bus.broker.stats"
_TAP = TAP_TOPIC.encode()
PERSIST_DELAY_S = 0.05  # coalesce bursts of latched updates into one write
MAX_CHANNELS = 4096  # personal channels counted at once
BATCH = 256  # messages forwarded per lane before the loop looks at its other sockets
XSUB_LIMIT = MAX_MESSAGE_SIZE + 1024  # the XSUB refuses a frame past the largest topic's limit
# What the broker takes in from one sender ahead of reading it. A node's reliable PUB does not drop at a full
# pipe (XPUB_NODROP, bus.lane): it holds the rest in its own outbox, so a small pipe here loses nothing and
# a burst waits in the sender's memory, not the broker's. At the lane's 100,000 a hostile app sending
# faster than the broker reads parked its whole burst here (70 MiB of 64 KiB frames in a CI run).
INBOUND_HWM = 1000
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_SELF = NODE_NAME.encode()


class _Lane:
    def __init__(self, name: str, xsub: zmq.Socket, xpub: zmq.Socket):
        self.name, self.xsub, self.xpub = name, xsub, xpub
        self.msgs_in = self.bytes_in = self.msgs_out = self.bytes_out = 0  # counted in Python
        self.fast = fastpath.Counters()  # counted in C

    def stats(self) -> dict:
        fast = self.fast
        return {"msgs_in": self.msgs_in + fast.msgs_in, "bytes_in": self.bytes_in + fast.bytes_in,
                "msgs_out": self.msgs_out + fast.msgs_out, "bytes_out": self.bytes_out + fast.bytes_out}


class Broker:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.ctx = zmq.Context()
        self.cache: dict[str, tuple[bytes, bytes, bytes]] = {}  # topic -> (topic frame, body, sender)
        self.intake = Intake(NODE_NAME)
        self.gate = Gate(self._report, lambda summary: self._publish("bus.refusals", **summary))
        self.started = time.monotonic()
        self._lock_file = None
        self._lanes: dict[str, _Lane] = {}
        self._stop = False
        self._wakeup = Wakeup()
        self._persist_due: float | None = None
        self._seq: dict[str, int] = {}
        self._incarnation = int.from_bytes(os.urandom(7), "big")
        self._verdicts: dict[tuple[str, bytes], tuple] = {}
        self._counts: dict[tuple[bytes, bytes, bytes], int] = {}  # (reader, topic, sender) -> messages sent
        self.fast = fastpath.load()  # the C forwarding loop; None: Python's
        self.present = Present(runtime.present_path)  # who is connected, and a crashed broker's successor's wait
        self._stats_readers = 0  # subscriptions (one per connection) that bring bus.broker.stats
        self._next_stats = float("inf")
        self.tap: TapWriter | None = None  # while a watching tool subscribes to bus.tap
        self._tap_refused = False  # the fences are missing on a CPU that needs them: said once, no tap
        self._tap_readers = 0
        self.fd_limit = connections.raise_limit()  # before the context's I/O thread opens anything

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
        foreign = self.runtime.make_socket_dir()
        if foreign is not None:
            log.warning("%s was not this broker's: moved aside to %s", self.runtime.socket_dir, foreign)
        # We hold the lock, so any socket file left here is from a broker that died.
        for name in self.runtime.socket_names():
            self.runtime.socket_path(name).unlink(missing_ok=True)
        self.runtime.tap_path.unlink(missing_ok=True)

    def bind(self) -> None:
        pair = keys.own_pair(self.runtime, NODE_NAME, fallback=False)
        self.directory = keys.Directory(keys.keys_dir(self.runtime), keys.app_keys_dir(self.runtime))
        self.directory.reload()
        why = "LENS_BUS_SEALED is set" if access.forced_sealed() else \
            access.unsafe(self.runtime.socket_dir, os.getuid())
        self.sealed = why is not None
        if self.sealed:
            log.info("lanes sealed (CURVE on every frame): %s", why)
        self.lane_key = None if self.sealed else access.lane_key(pair.secret)  # no passes where sealed
        self.zap = ZapHandler(self.ctx, self.directory, self._on_refused_client, self.lane_key)
        old_umask = os.umask(0o117)  # sockets rw for owner and group only, never world
        try:
            for lane in LANES:
                self._bind_lane(lane, pair)
            self.latch = self.ctx.socket(zmq.ROUTER)
            self.latch.setsockopt(zmq.LINGER, 0)
            connections.handshake_ivl(self.latch)
            keys.as_server(self.latch, pair)
            self.latch.bind(self.runtime.latch_endpoint)
        finally:
            os.umask(old_umask)
        bound = {"latch": self.latch}
        for name, lane in self._lanes.items():
            bound[f"{name} in"], bound[f"{name} out"] = lane.xsub, lane.xpub
        self.connections = connections.Connections(bound, self._on_shed, self.fd_limit,
                                                   publishers=tuple(f"{name} in" for name in self._lanes))
        self._load_cache()
        self.present.load()
        self._publish("bus.refusals", **self.gate.summary())  # this broker's, none yet: `lens security` says so

    def _bind_lane(self, name: str, pair: keys.KeyPair) -> None:
        hwm = LANE_HWM[name]
        xsub = self.ctx.socket(zmq.XSUB)
        xpub = self.ctx.socket(zmq.XPUB)
        xsub.setsockopt(zmq.RCVHWM, min(hwm, INBOUND_HWM))
        xsub.setsockopt(zmq.MAXMSGSIZE, XSUB_LIMIT)
        xpub.setsockopt(zmq.SNDHWM, hwm)
        xpub.setsockopt(zmq.XPUB_MANUAL, 1)  # every subscription is the gate's to apply
        for sock in (xsub, xpub):
            sock.setsockopt(zmq.LINGER, 0)
            connections.handshake_ivl(sock)
            if self.sealed:
                keys.as_server(sock, pair)
            else:  # PLAIN: the ZAP handler checks each lane's pass (bus.access)
                sock.plain_server = True
                sock.zap_domain = keys.ZAP_DOMAIN
        xsub.bind(self.runtime.publish_endpoint(name))
        xpub.bind(self.runtime.subscribe_endpoint(name))
        xsub.send(b"\x01")  # subscribe upstream to everything: filtering happens at XPUB
        self._lanes[name] = _Lane(name, xsub, xpub)

    # --- the loop ---------------------------------------------------------------
    def run(self) -> None:
        actions = {self.zap.sock: self.zap.serve, self.latch: self._serve_snapshots,
                   self._wakeup.fileno(): self._wakeup.drain}
        for monitor in self.connections.monitors:
            actions[monitor] = functools.partial(self.connections.read, monitor)
        for lane in self._lanes.values():
            actions[lane.xpub] = lambda lane=lane: self._subscriptions(lane)
        ping_s = sdnotify.watchdog_period()
        next_ping = time.monotonic() if ping_s else float("inf")
        never = float("inf")
        if self.present.awaited:
            next_ping = self._hold(actions, ping_s, next_ping)
        wait = self._waiter(actions)
        while not self._stop:
            now = time.monotonic()
            if now >= self._next_stats:
                if self._stats_readers:
                    self.publish_stats()
                self.gate.flush()
                self._next_stats = never
            if self._next_stats == never and (self._stats_readers or self.gate.held):
                # Only while someone listens, or a refusal waits for its report: idle glasses sleep.
                self._next_stats = now + STATS_PERIOD_S
            if self._persist_due is not None and now >= self._persist_due:
                self._save_cache()
            self.present.save()
            if now >= next_ping:
                sdnotify.notify("WATCHDOG=1")  # from this loop: a hung forwarder stops the pings
                next_ping = now + ping_s
            wake = min(self._next_stats, self._persist_due or never, next_ping)
            timeout = None if wake == never else max(0.0, wake - now)
            for sock in wait(timeout):
                actions[sock]()

    def _hold(self, actions: dict, ping_s: float | None, next_ping: float) -> float:
        """Everything but the lanes' publishers served while the processes the last broker had are not back
        (broker.present): what they publish waits in their own pipes and outboxes meanwhile. Returns when the
        watchdog is next due."""
        poller = zmq.Poller()
        for sock in actions:
            poller.register(sock, zmq.POLLIN)
        started = now = time.monotonic()
        while not self._stop and self.present.holding(now):
            if now >= next_ping:
                sdnotify.notify("WATCHDOG=1")
                next_ping = now + ping_s
            for sock, _ in poller.poll(int(max(0.0, min(self.present.until, next_ping) - now) * 1000) + 1):
                actions[sock]()
            now = time.monotonic()
        self.present.held(now - started)
        return next_ping

    def stop(self) -> None:
        self._stop = True
        self._wakeup.wake()

    def close(self) -> None:
        # A clean stop ends this bus's present; only a crashed broker's successor should inherit it
        # (the publishers still alive re-send their latched topics on reconnect anyway). An exception out of
        # the loop is a crash, not a stop: its successor gets both, and waits for who was here.
        if self._stop:
            self.runtime.cache_path.unlink(missing_ok=True)
            self.present.forget()

        def close_sockets() -> None:
            for lane in self._lanes.values():
                lane.xsub.close(0)
                lane.xpub.close(0)
            self.latch.close(0)
        self.connections.close(close_sockets)
        self.zap.close()
        self._close_tap()
        if self.fast is not None:
            self.fast.close()
        self.ctx.term()
        self._wakeup.close()
        for name in self.runtime.socket_names():
            self.runtime.socket_path(name).unlink(missing_ok=True)
        try:
            self.runtime.socket_dir.rmdir()
        except OSError:
            pass  # not empty: someone else's file, for whoever looks into it
        if self._lock_file is not None:
            self._lock_file.close()
            self.runtime.lock_path.unlink(missing_ok=True)

    # --- forwarding -------------------------------------------------------------------
    def _waiter(self, actions: dict) -> Callable[[float | None], list]:
        """A call that waits up to a timeout (seconds) for the sockets of ``actions`` and the lanes' XSUBs,
        forwards what the publishers sent, and returns those of ``actions`` that are ready. With the C
        loop (broker.fastpath) the wait itself is in C, and a message whose verdict is known never comes
        back to Python; without it, a Python poller and _forward."""
        lanes = list(self._lanes.values())
        if self.fast is not None:
            return self.fast.server([(lane.xsub, lane.xpub, lane.fast, functools.partial(self._judge_held, lane))
                                     for lane in lanes], list(actions), BATCH, XSUB_LIMIT)
        poller = zmq.Poller()
        forwarders = {lane.xsub: lane for lane in lanes}
        for sock in [*forwarders, *actions]:
            poller.register(sock, zmq.POLLIN)

        def wait(timeout: float | None) -> list:
            ready = []
            for sock, _ in poller.poll(None if timeout is None else int(timeout * 1000) + 1):
                if sock in forwarders:
                    self._forward(forwarders[sock])
                else:
                    ready.append(sock)
            return ready
        return wait

    def _forward(self, lane: _Lane) -> None:
        """Up to BATCH messages from the lane's publishers to its subscribers, each one judged first
        (in Python: where the C loop is not built)."""
        recv = lane.xsub.recv
        try:
            for _ in range(BATCH):
                head = recv(_NOBLOCK, copy=False)
                body = recv(0, copy=False) if head.more else None
                lane.msgs_in += 1
                peer = head.get("Peer-Address") or ""
                if body is None or body.more:
                    self._refuse_frames(lane, head.bytes, body is not None and body.more, verified(head).encode(),
                                        peer)
                    continue
                lane.bytes_in += len(body)
                self._deliver(lane, verified(head), head.bytes, body, peer)
        except zmq.Again:
            pass

    def _judge_held(self, lane: _Lane, topic: bytes, body: bytes | None, more: bool, user: bytes, peer: bytes) -> None:
        """A message the C loop hands back: a (sender, topic) it has no lasting verdict for, or malformed."""
        peer = peer.decode("ascii", "replace")
        if body is None or more:
            self._refuse_frames(lane, topic, more, user, peer)
            return
        lasting = self._deliver(lane, user.decode("ascii", "replace"), topic, body, peer)
        if lasting is not None:
            spec, stamp = lasting
            self.fast.allow(stamp, topic, spec.max_size)  # the next ones stay in C

    def _deliver(self, lane: _Lane, user: str, topic: bytes, body, peer: str = "") -> tuple | None:
        """One whole message judged, then sent on (stamped with its sender) or refused. (row, stamp) when its
        verdict lasts (sent on with no condition the next ones could fail but their size), so the C loop may
        send the next ones; None when refused, personal, latched or held to
        a rate."""
        spec, stamp, why, limited = self._verdicts.get((user, topic)) or self._judge(user, topic)
        size = len(body)
        if why is None and size > spec.max_size:
            why = f"{size} bytes, the table allows {spec.max_size}"
        if why is None and limited and not self.gate.admit(stamp, spec, time.monotonic()):
            why = f"over {spec.limit_hz:g} a second from one sender"
        if why is not None:
            self.gate.refuse(stamp, topic, why, *_uid_pid(peer))
            return None
        xpub = lane.xpub
        if topic in PERSONAL:
            data = bytes(body)
            lane.msgs_out, lane.bytes_out = self._personal(xpub, spec, topic, data, stamp, lane.msgs_out,
                                                           lane.bytes_out)
            if spec.latched and self.gate.audience(spec, data) is not None:
                self._store(topic, data, stamp)  # snapshotted to its readers alone (_may_read)
            return None
        stamped = envelope.stamp(topic, stamp)
        if self.tap is not None:
            self.tap.write(stamped, body)
        c_send(xpub, stamped, _SNDMORE)
        c_send(xpub, body, 0, False)
        lane.msgs_out += 1
        lane.bytes_out += size
        if spec.latched:
            self._store(topic, bytes(body), stamp)
            return None
        return None if limited else (spec, stamp)  # a limited sender's next ones are counted here, not in C

    def _judge(self, user: str, topic: bytes) -> tuple:
        """(the topic's row, the sender's stamp, None, whether its rate is limited) when ``user`` may publish
        ``topic``; why not in third place otherwise."""
        sender = user.encode()
        why = self.gate.why_not(sender, topic)
        spec = BY_WIRE.get(topic)
        verdict = (spec, sender, why, why is None and self.gate.limited(sender, spec))
        if topic in BY_WIRE and len(self._verdicts) < 4096:  # invented topics are not remembered
            self._verdicts[(user, topic)] = verdict
        return verdict

    def _personal(self, xpub, spec, topic: bytes, data: bytes, stamp: bytes, n_out: int, b_out: int):
        """A copy on each reader's own channel (broker.gate): the granted for a restricted topic, the server
        for a request, the asker for a reply (the table's readers); nobody else is ever sent one."""
        readers = self.gate.audience(spec, data)
        if readers is None:
            self.gate.refuse(stamp, topic, "names none of its readers")
            return n_out, b_out
        counts = self._counts
        if len(counts) >= MAX_CHANNELS:  # replies may name anyone; their readers see the counts start again
            counts.clear()
        for reader in readers:
            # Counted per channel: only the broker knows which of a topic's messages each reader was meant
            # to get, so only its count makes a reader's gap a loss (bus.envelope).
            count = counts[reader, topic, stamp] = counts.get((reader, topic, stamp), 0) + 1
            c_send(xpub, envelope.counted(reader, topic, stamp, count), _SNDMORE)
            c_send(xpub, data)
            n_out += 1
            b_out += len(data)
        return n_out, b_out

    def _refuse_frames(self, lane: _Lane, topic: bytes, more: bool, user: bytes, peer: str) -> None:
        """A message of other than two frames: read to its end, however long, keeping none of it."""
        while more:
            more = lane.xsub.recv(copy=False).more
        self.gate.refuse(user, topic, "not a two-frame message", *_uid_pid(peer))

    def _subscriptions(self, lane: _Lane) -> None:
        while True:
            try:
                frame = lane.xpub.recv(_NOBLOCK, copy=False)
            except zmq.Again:
                return
            data = frame.bytes
            if not data or data[0] > 1:
                continue
            # Unsubscriptions of a pipe that went away come with no metadata and apply to no pipe.
            sender = verified(frame).encode() or None
            option = zmq.SUBSCRIBE if data[0] else zmq.UNSUBSCRIBE
            for prefix in self.gate.subscriptions(sender, data[1:],
                                                  lambda: _uid_pid(frame.get("Peer-Address") or "")):
                lane.xpub.setsockopt(option, prefix)
                if prefix[:1] == ACK:
                    if data[0]:  # a lane's marker: every subscription it sent before is applied now
                        lane.xpub.send_multipart([prefix, b""])
                    self.present.marker(prefix, bool(data[0]))
                    continue
                identity = present(prefix)
                if identity is not None:
                    if self.present.change(identity, 1 if data[0] else -1):
                        self._publish("bus.departed", identity=identity.decode("ascii", "replace"))
                elif prefix == _TAP and lane.name == TOPICS[TAP_TOPIC].lane:
                    self._tap_readers += 1 if data[0] else -1
                    self._update_tap()
                elif (_STATS.startswith(prefix) or prefix == STATS_WANTED) and \
                        lane.name == TOPICS["bus.broker.stats"].lane:
                    self._stats_readers += 1 if data[0] else -1
                    if data[0] and self._stats_readers == 1:
                        self._next_stats = time.monotonic()  # the first reader gets today's figures at once

    def _update_tap(self) -> None:
        """Open the tap for the first watching tool, close it after the last, and say so on bus.tap."""
        if self._tap_readers > 0 and self.tap is None and not self._tap_refused:
            try:
                self.tap = TapWriter(self.runtime.tap_path)
            except NoFences as exc:  # tools hear through the sockets instead
                log.error("no tap for watching tools: %s", exc)
                self._tap_refused = True
            else:
                if self.fast is not None:
                    self.fast.tap(self.tap.address)
        elif self._tap_readers <= 0:
            self._close_tap()
        # Every change, not only the first and last: a tool that joins an open tap learns of it so.
        self._publish(TAP_TOPIC, readers=max(self._tap_readers, 0), path=str(self.runtime.tap_path))

    def _close_tap(self) -> None:
        if self.tap is not None:
            if self.fast is not None:
                self.fast.tap(None)  # before the mapping goes
            self.tap.close()
            self.tap = None

    def _publish(self, name: str, **payload) -> None:
        """The broker's own messages, straight out of its XPUB."""
        spec = TOPICS[name]
        spec.validate(payload)
        self._seq[name] = self._seq.get(name, 0) + 1
        topic, body = envelope.encode(spec, NODE_NAME, self._incarnation, self._seq[name], payload)
        stamped = envelope.stamp(topic, _SELF)
        if self.tap is not None and name != TAP_TOPIC:  # bus.tap reaches its readers by their sockets
            self.tap.write(stamped, body)
        self._lanes[spec.lane].xpub.send_multipart([stamped, body])
        if spec.latched:
            self._store(topic, body, _SELF)

    def _report(self, identity: str, topic: str, reason: str, uid: int | None, pid: int | None, count: int) -> None:
        self._publish("bus.security", identity=identity, topic=topic, reason=reason, count=count, uid=uid, pid=pid)

    def _on_refused_client(self, address: str, why: str) -> None:
        self.gate.refuse(None, b"<connect>", why, *_uid_pid(address))

    def _on_shed(self, why: str, uid: int, pid: int) -> None:
        self.gate.refuse(None, b"<connect>", why, uid, pid)

    # --- the last-value cache ------------------------------------------------------
    def _store(self, topic: bytes, body: bytes, sender: bytes) -> None:
        msg = self.intake.accept([envelope.stamp(topic, sender), body])
        if msg is None or not TOPICS[msg.topic].latched:
            return
        self.cache[msg.topic] = (topic, body, sender)
        if msg.topic == "privacy.capture":
            self.gate.on_capture(msg.payload)
        if self._persist_due is None:
            self._persist_due = time.monotonic() + PERSIST_DELAY_S

    def _serve_snapshots(self) -> None:
        """The latch socket: snapshots of latched topics, and each process's way onto the lanes."""
        while True:
            try:
                frames = self.latch.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                identity, _, body = frames
                request_id, prefixes = msgpack.unpackb(body.bytes)
                if prefixes == "lanes":
                    answer = self._access(body)
                else:
                    prefixes = [p for p in prefixes if type(p) is str][:64]
                    asker = verified(body).encode()
                    answer = [list(item) for topic, item in self.cache.items()
                              if any(matches(p, topic) for p in prefixes) and self._may_read(asker, topic, item)]
            except (ValueError, TypeError, msgpack.UnpackException):
                log.warning("ignored a malformed snapshot request")
                continue
            self.latch.send_multipart([identity, b"", msgpack.packb([request_id, answer])])

    def _may_read(self, asker: bytes, topic: str, item: tuple) -> bool:
        """Whether a latched message goes into ``asker``'s snapshot: every one does but a restricted topic's
        (its grants change; the granted hear it live) and a topic with readers, which its readers' alone do."""
        spec = TOPICS[topic]
        if spec.permission:
            return False
        return spec.readers is None or asker in (self.gate.audience(spec, item[1]) or ())

    def _access(self, frame: zmq.Frame) -> dict:
        """How the asker reaches the lanes (bus.access): sealed, or with its pass, which this connection's
        CURVE handshake entitles it to."""
        answer = {"sealed": self.sealed, "uid": os.getuid()}
        who = access.peer(frame.get("Peer-Address"))
        identity = verified(frame)
        public = self.directory.public(identity)
        if self.lane_key is not None and who is not None and public is not None:
            answer["pass"] = access.pass_for(self.lane_key, identity, public, *who)
        return answer

    def _save_cache(self) -> None:
        self._persist_due = None
        write_atomically(self.runtime.cache_path, msgpack.packb([list(item) for item in self.cache.values()]))

    def _load_cache(self) -> None:
        try:
            data = self.runtime.cache_path.read_bytes()
        except FileNotFoundError:
            return
        try:
            for topic, body, sender in msgpack.unpackb(data):
                self._store(bytes(topic), bytes(body), bytes(sender))
        except (ValueError, TypeError, msgpack.UnpackException):
            corrupt = self.runtime.cache_path.with_suffix(".corrupt")
            os.replace(self.runtime.cache_path, corrupt)
            log.error("latched cache %s was unreadable; moved aside to %s", self.runtime.cache_path, corrupt)
        self._persist_due = None
        log.info("restored %d latched topics from %s", len(self.cache), self.runtime.cache_path)

    # --- statistics -----------------------------------------------------------------
    def publish_stats(self) -> None:
        self._publish("bus.broker.stats", uptime_s=round(time.monotonic() - self.started, 3),
                      lanes={name: lane.stats() for name, lane in self._lanes.items()}, latched=len(self.cache),
                      pid=os.getpid(), refused=sum(self.gate.refused.values()),
                      forwarding="python" if self.fast is None else "c", sealed=self.sealed,
                      clients={"admitted": self.zap.admitted, "refused": self.zap.refused})


def _uid_pid(peer: str) -> tuple[int | None, int | None]:
    """(uid, pid) from a frame's Peer-Address, (None, None) where it names none."""
    return access.peer(peer) or (None, None)


def _fixed_mmap_threshold() -> None:
    """glibc maps an allocation over 128 KiB and gives it back when freed, but raises that threshold to the
    largest block freed: after one refused 3 MB message, the next ones stayed on the heap, and the heap's
    memory with them. A threshold set by hand is never raised."""
    try:
        ctypes.CDLL(None).mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc


def serve(runtime: Runtime) -> int:
    """Run a broker until SIGTERM/SIGINT; the exit code for the CLI."""
    _fixed_mmap_threshold()
    broker = Broker(runtime)
    try:
        broker.acquire()
    except BrokerRunning as exc:
        log.error("%s", exc)
        return 1
    try:
        broker.bind()
    except KeyMissing as exc:
        log.error("%s", exc)
        return 1
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
    from bus.args import argument_parser

    # Its row of the process table starts it as `python -m broker` (broker/__main__.py); the broker, below the
    # manager, cannot read the row: tests/manager/test_units.py holds the two equal.
    parser = argument_parser("python -m broker", "Run the lensos bus broker.")
    parser.add_argument("--runtime-dir", help="bus runtime directory (default: $LENS_RUNTIME_DIR or per-user)")
    args = parser.parse_args(argv)
    logs.configure("broker")
    return serve(Runtime.resolve(args.runtime_dir))


if __name__ == "__main__":
    raise SystemExit(main())
