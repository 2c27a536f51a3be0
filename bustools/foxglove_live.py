"""`lens bus foxglove`: the bus, live, on the Foxglove WebSocket protocol (the official foxglove-sdk).

Robotics developers look at live systems in Foxglove; this serves lensos to it as it serves ROS:

- **Every topic a channel** from the moment a client connects, with the JSON Schema the recorder writes
  (bustools.bag.schema_for, from the topic table) and the same JSON messages, the original header under
  ``_lens``: a panel set up on a recording works live, and the other way round.
- **Pictures.** ``display.image``: what the wearer sees (the sim panel's PNG, read when displayd says a
  frame went out), and ``camera.image``: camera frames as ``foxglove.CompressedImage`` (JPEG). Camera
  frames and mic audio are capture content (bustools.capture_content): as in a recording, they stay out unless
  ``--include-capture``, which asks the same consent (an identity that may see them, a privacy log
  session). Their descriptors and timing are always there.
- **Plots and states.** ``shell.state``'s ``state`` is a State Transitions panel's path, ``power.state``'s
  ``batteries[:].percent`` and ``percent`` a Plot's.
- **Publishing back** only with ``--allow-publish`` (the server then offers clientPublish), and only on a
  topic this process's key may publish (the broker's rule, broker.gate) that is an event or a state: never a
  restricted topic, a reply, or a request (whose answer would have nowhere to go); each message is checked
  against the table before it goes out. A refusal is said to the client as a status message and logged.

Watching costs the bus nothing measurable: the node reads the broker's tap at idle priority, as `lens bus
sniff` does (bus.tap), a message is encoded only while a client subscribes to its channel, and each channel
sends at most ``max_hz`` messages a second (a panel draws at 60; the bus's own topics run at 50 at most): a
client that would decode a blast of a hundred thousand messages a second competes with the glasses for CPU.
What is held back is counted (``skipped``) and said at the end.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time

from bustools import bag
from bustools.capture_content import Consent, withhold
from bus.envelope import Message
from bus.errors import BusError, PayloadError
from bus.node import Node
from frames.ring import FrameOverrun
from frames.door import RingFollower
from bus.topics import ANY_NODE, TOPICS, Kind

log = logging.getLogger("foxglove")

DISPLAY_TOPIC = "display.image"
MAX_PNG_BYTES = 8 * 1024 * 1024


def publishable(identity: str, name: str, topic: str) -> str | None:
    """Why a Foxglove client may not publish ``topic`` through this process (its key ``identity``, its node
    ``name``), or None: an event or state of the table that any node may publish (a phone's notification,
    something said), as this process publishes it as itself, and that the broker lets its key publish."""
    from broker.gate import Gate

    spec = TOPICS.get(topic)
    if spec is None:
        return f"{topic!r} is not a topic of the table (bus/topics.py)"
    if spec.permission or spec.kind in (Kind.REPLY, Kind.REQUEST, Kind.STREAM) or topic.startswith(("bus.", "node.")):
        what = "restricted topic" if spec.permission else "topic of the bus itself" if topic.startswith(("bus.", "node.")) \
            else spec.kind.value
        return f"{topic} is a {what}: not published from Foxglove"
    if spec.owner not in (ANY_NODE, name):
        return f"{topic} is published by {spec.owner} alone (bus/topics.py)"
    why = Gate(lambda *a: None).why_not(identity.encode(), spec.wire)
    return None if why is None else f"{topic}: {why} (the broker's rule for {identity})"


class FoxgloveLive:
    def __init__(self, node: Node, host: str = "127.0.0.1", port: int = 8765, allow_publish: bool = False,
                 consent: Consent | None = None, max_hz: float = 200.0):
        import foxglove
        from foxglove.websocket import Capability, StatusLevel

        self.node, self.consent, self.allow_publish = node, consent, allow_publish
        self._status_level = StatusLevel
        self.subscribed: dict[str, int] = {}  # topic -> clients subscribed (SDK threads write, the loop reads)
        self.client_topics: dict[tuple[int, int], str] = {}  # (client, client channel) -> topic, when allowed
        self.counts = {"sent": 0, "skipped": 0, "published": 0, "refused": 0}
        self.max_hz = max_hz
        self._budget: dict[str, tuple[float, float]] = {}  # topic -> (tokens, when), at most max_hz a second
        self.camera_ring = RingFollower(node)
        self._lock = threading.Lock()
        self._inbox: list[tuple[str, dict]] = []  # what clients published, sent from the node's own loop
        self.channels = {}
        for topic in [*TOPICS, DISPLAY_TOPIC, bag.IMAGE_TOPIC]:
            schema = bag.schema_for(bag.IMAGE_TOPIC if topic == DISPLAY_TOPIC else topic)
            self.channels[topic] = foxglove.Channel(
                topic, message_encoding="json",
                schema=foxglove.Schema(name=schema["title"], encoding="jsonschema", data=json.dumps(schema).encode()))
        self.server = foxglove.start_server(
            name="lensos", host=host, port=port, server_listener=self, supported_encodings=["json"],
            capabilities=[Capability.ClientPublish] if allow_publish else [])
        node.subscribe("", self.on_message, from_anyone=True)
        if consent is not None:
            node.subscribe("camera.state", self.camera_ring.on_camera)
        if allow_publish:  # what clients publish leaves from the node's own loop (a node is one thread's)
            node.every(0.05, self._publish_inbox)

    @property
    def port(self) -> int:
        return self.server.port

    def close(self) -> None:
        self.server.stop()
        self.camera_ring.close()

    # --- the bus to Foxglove ------------------------------------------------------------------
    def on_message(self, msg: Message) -> None:
        topic = msg.topic
        if topic == "display.frame" and msg.payload.get("png") and self.subscribed.get(DISPLAY_TOPIC) \
                and self._within_rate(DISPLAY_TOPIC):
            self._display(msg)
        if topic == "camera.frame" and self.consent is not None and self.subscribed.get(bag.IMAGE_TOPIC) \
                and self._within_rate(bag.IMAGE_TOPIC):
            self._frame(msg)
        if not self.subscribed.get(topic):
            return  # nobody looks: not even encoded
        if not self._within_rate(topic):
            return
        header = _header(msg)
        payload = msg.payload
        if self.consent is None:
            payload, withheld = withhold(topic, payload)
            if withheld:
                header["withheld"] = withheld
        else:
            self.consent.kept(topic, payload)
        self._log(topic, bag.encode(topic, payload, header), msg.wall_ns)

    def _within_rate(self, topic: str) -> bool:
        now = time.monotonic()
        tokens, then = self._budget.get(topic, (self.max_hz, now))
        tokens = min(self.max_hz, tokens + (now - then) * self.max_hz)
        if tokens < 1.0:
            self._budget[topic] = (tokens, now)
            self.counts["skipped"] += 1
            return False
        self._budget[topic] = (tokens - 1.0, now)
        return True

    def _log(self, topic: str, data: bytes, wall_ns: int) -> None:
        self.channels[topic].log(data, log_time=wall_ns)
        self.counts["sent"] += 1

    def _display(self, msg: Message) -> None:
        try:
            with open(msg.payload["png"], "rb") as picture:
                data = picture.read(MAX_PNG_BYTES + 1)
        except OSError as exc:
            log.debug("display frame %s: %s", msg.payload["png"], exc.strerror)
            return
        if data and len(data) <= MAX_PNG_BYTES:
            image = _image(msg.wall_ns, "display", "png", data)
            self._log(DISPLAY_TOPIC, bag.encode(bag.IMAGE_TOPIC, image, _header(msg)), msg.wall_ns)

    def _frame(self, msg: Message) -> None:
        from PIL import Image

        p, ring = msg.payload, self.camera_ring.ring
        if ring is None or ring.epoch != p["ring"]:
            return
        try:
            pixels = ring.copy(p["slot"], p["gen"])
        except FrameOverrun:
            return  # lapped: the next one will do for a live view
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG", quality=80)
        image = _image(msg.wall_ns, f"camera:{p['id']}", "jpeg", out.getvalue())
        self.consent.kept(bag.IMAGE_TOPIC, image)
        self._log(bag.IMAGE_TOPIC, bag.encode(bag.IMAGE_TOPIC, image, _header(msg)), msg.wall_ns)

    # --- Foxglove's listener (called on the SDK's threads) ---------------------------------------
    def on_subscribe(self, client, channel) -> None:
        with self._lock:
            self.subscribed[channel.topic] = self.subscribed.get(channel.topic, 0) + 1

    def on_unsubscribe(self, client, channel) -> None:
        with self._lock:
            left = self.subscribed.get(channel.topic, 0) - 1
            if left > 0:
                self.subscribed[channel.topic] = left
            else:
                self.subscribed.pop(channel.topic, None)

    def on_client_advertise(self, client, channel) -> None:
        why = publishable(self.node.identity, self.node.name, channel.topic) if channel.encoding == "json" else \
            f"{channel.topic}: encoding {channel.encoding!r}, only json"
        if why is None:
            self.client_topics[(client.id, channel.id)] = channel.topic
            return
        self._refuse(f"refused: {why}")

    def on_client_unadvertise(self, client, client_channel_id: int) -> None:
        self.client_topics.pop((client.id, client_channel_id), None)

    def on_message_data(self, client, client_channel_id: int, data: bytes) -> None:
        topic = self.client_topics.get((client.id, client_channel_id))
        if topic is None:
            self._refuse(f"refused: client channel {client_channel_id} was not allowed to publish")
            return
        try:
            payload, _ = bag.decode(topic, data)
            TOPICS[topic].validate(payload)
        except (ValueError, TypeError, PayloadError) as exc:
            self._refuse(f"refused: {topic}: {exc}")
            return
        with self._lock:
            self._inbox.append((topic, payload))

    def _refuse(self, why: str) -> None:
        self.counts["refused"] += 1
        log.warning("foxglove client: %s", why)
        self.server.publish_status(why, self._status_level.Warning)

    def _publish_inbox(self) -> None:
        with self._lock:
            inbox, self._inbox = self._inbox, []
        for topic, payload in inbox:
            try:
                self.node.publish(topic, **payload)
            except BusError as exc:
                self._refuse(f"refused: {topic}: {exc}")
            else:
                self.counts["published"] += 1


def _header(msg: Message) -> dict:
    return {"source": msg.source, "incarnation": msg.incarnation, "seq": msg.seq, "mono_ns": msg.mono_ns,
            "wall_ns": msg.wall_ns}


def _image(wall_ns: int, frame_id: str, fmt: str, data: bytes) -> dict:
    return {"timestamp": {"sec": wall_ns // 10**9, "nsec": wall_ns % 10**9}, "frame_id": frame_id, "format": fmt,
            "data": base64.b64encode(data).decode()}

