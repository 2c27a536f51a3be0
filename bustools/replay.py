"""`lens bus replay FILE`: a recording published back onto a bus, as it happened.

Each recorded source gets a node of that name, so every message comes from
whom it came from (the topic table's owners hold). Timing is the original
(the recorded monotonic clock), scaled by ``rate``; ``start_s`` skips the
beginning; topics are kept or dropped by prefix, sources dropped by name
(replaying everything but the shell into a fresh shell reproduces its
decisions). Frames stored as images go back into a shared-memory ring,
their descriptors point at it, and the replayed camerad hands it out at the
door by camerad's rules (frames.door): a consumer cannot tell replay from
live.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Callable

from bustools import bag
from bus.envelope import Message
from bus.node import Node
from frames.ring import Ring
from frames.door import Door
from bus.runtime import Runtime
from bus.topics import TOPICS, Kind, matches

log = logging.getLogger("replay")

RING_SLOTS = 4
NODE_START_S = 30.0  # a replay into a busy bus waits for its publishers to be live rather than giving up


class Replayer:
    def __init__(self, runtime: Runtime, rate: float = 1.0, allow: list[str] | None = None,
                 block: list[str] | None = None, exclude_sources: list[str] | None = None,
                 step: Callable[[bag.Recorded], None] | None = None):
        self.runtime, self.rate = runtime, rate
        self.allow, self.block = allow or [], block or []
        self.exclude = set(exclude_sources or [])
        self.step = step  # paused mode: called before each message, returns when the user says go
        self.nodes: dict[str, Node] = {}
        self.ring: Ring | None = None
        self.door: Door | None = None
        self.frame_owner = ""
        self.published = self.skipped = 0

    def wanted(self, item: bag.Recorded) -> bool:
        if item.source in self.exclude or item.source.startswith("lens-"):
            return False  # excluded, or a tool's own traffic (a sniffer's probes)
        if item.topic.startswith("bus.") or TOPICS.get(item.topic, None) is None and item.topic != bag.IMAGE_TOPIC:
            return False  # the bus's own bookkeeping; a topic this version does not know
        if item.topic == "camera.frame":
            return False  # descriptors of a ring that is gone; the images stand in for them
        topic = "camera.frame" if item.topic == bag.IMAGE_TOPIC else item.topic
        if self.allow and not any(matches(p, topic) for p in self.allow):
            return False
        return not any(matches(p, topic) for p in self.block)

    def play(self, messages: list[bag.Recorded], start_s: float = 0.0) -> None:
        descriptors = {m.payload["id"]: m.payload for m in messages if m.topic == "camera.frame"}
        if not messages:
            return
        # The earliest publish time, not the first in the file: the file is in the order messages arrived.
        t0 = min(m.mono_ns for m in messages) + int(start_s * 1e9)
        wall0 = time.monotonic()
        for item in messages:
            if item.mono_ns < t0 or not self.wanted(item):
                self.skipped += 1
                continue
            if self.step is not None:
                self.step(item)
            else:
                due = wall0 + (item.mono_ns - t0) / 1e9 / self.rate
                self._idle_until(due)
            self._publish(item, descriptors)

    def _idle_until(self, due: float) -> None:
        """Wait, running the nodes' loops so that replies and timers are handled meanwhile."""
        while (remaining := due - time.monotonic()) > 0:
            nodes = list(self.nodes.values())
            if not nodes:
                time.sleep(min(remaining, 0.05))
                continue
            nodes[0].run_once(min(remaining, 0.05))  # blocks until something arrives or the slice ends
            for node in nodes[1:]:
                node.run_once(0)

    def _node(self, source: str) -> Node:
        node = self.nodes.get(source)
        if node is None:
            node = self.nodes[source] = Node(source, self.runtime).start(timeout=NODE_START_S)
        return node

    def _publish(self, item: bag.Recorded, descriptors: dict) -> None:
        payload = dict(item.payload)
        topic = item.topic
        if topic == bag.IMAGE_TOPIC:
            frame_id = int(payload["frame_id"].split(":")[1])
            payload = self._restore_frame(payload, descriptors.get(frame_id))
            if payload is None:
                self.skipped += 1
                return
            topic = "camera.frame"
        elif topic == "camera.state":
            payload["ring"] = self.ring.epoch if self.ring is not None else 0  # the replayed frames' ring
        node = self._node(item.source)
        with node.tracing(item.trace):  # the recorded trace ids: a replay's timeline is the recording's
            if TOPICS[topic].kind is Kind.REQUEST:
                payload.pop("cid", None)  # requests are re-sent with the replaying node's own ids
                node.request_async(topic, lambda *_: None, timeout=5.0, **payload)
            else:
                node.publish(topic, **payload)
        self.published += 1

    def _restore_frame(self, image: dict, descriptor: dict | None) -> dict | None:
        import base64

        import numpy as np
        from PIL import Image

        if descriptor is None:
            return None
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(image["data"]))).convert("RGB"))
        if self.ring is None or self.ring.shape != pixels.shape:
            if self.ring is not None:
                self.ring.close()
            if self.door is None:
                self.door = Door(self._node("camerad"), self._may_see_frames)
            self.ring = Ring.create(None, RING_SLOTS, pixels.shape)
            self.door.offer(self.ring)
        now = time.monotonic_ns()
        slot, gen = self.ring.write(descriptor["id"], pixels, now)
        self.frame_owner = descriptor["owner"]
        return dict(descriptor, slot=slot, gen=gen, mono_ns=now, ring=self.ring.epoch)

    def _may_see_frames(self, msg: Message) -> str | None:
        """camerad's rule, as recorded: the frames' owner (and, at any door, the developer's tools)."""
        return None if msg.source == self.frame_owner else f"the replayed frames are {self.frame_owner}'s"

    def close(self) -> None:
        if self.door is not None:
            self.door.close()
        for node in self.nodes.values():
            node.close()
        if self.ring is not None:
            self.ring.close()
