"""The lensos wire format, frame by frame.

A message is a two-frame ZeroMQ multipart message, [topic, body]::

    frame 0  topic   UTF-8 dotted name, e.g. b"power.state" (the prefix ZeroMQ filters on);
                     from the broker it is stamped: b"power.state\\0powerd", the identity
                     the broker verified (the CURVE key's) after a NUL; a personal topic
                     (restricted, or a reply) comes on a personal channel, counted:
                     b"\\0<reader>\\0camera.frame\\0camerad\\0<count>", where count is
                     ASCII decimal, from 1, +1 per message the broker sent on that
                     channel from that sender (it starts again with each broker)
    frame 1  body    msgpack array of seven items, or eight with a trace:
                       0 version   int   WIRE_VERSION (1)
                       1 source    str   the publishing node's name
                       2 incarnation int random per process start; a restarted
                                         publisher is told apart from a replay
                       3 sequence  int   per (source, topic), from 1, +1 per message
                       4 mono_ns   int   time.monotonic_ns() at the publisher
                       5 wall_ns   int   time.time_ns() at the publisher
                       6 payload   map   the fields declared for the topic
                       7 trace     int   optional: the trace this message is a hop of
                                         (bus.tracing), 1..2**63-1; absent, no trace

The stamp rides in the topic frame, not in a third frame: ZeroMQ's prefix
filtering still sees the topic first, and a frame costs as much as a small
message (CURVE seals each one: in bench/bus.py's raw setup a third frame
took a third off the throughput). No table topic contains a NUL, so the
split is unambiguous.

What a receiver counts as lost is what was meant for it and did not come:
a gap in a sequence that runs per channel. On a topic everyone may hear, the
channel is the topic, and the publisher's sequence counts it (per topic, not
per source, so a subscriber that sees only some of a source's topics can
still tell a gap from a filter). On a personal channel only the broker knows
which of a topic's messages were meant for whom (the replies to other
askers, the frames sent while another app held the camera), so the broker
counts each channel, and the receiver finds gaps in that count; the
publisher's sequence still tells a message it already has (a duplicate).
An array, not a map, keeps the header at 20-30 bytes. The trace is an
eighth item only when there is one: an untraced message (a camera frame, a
heartbeat) pays nothing for it, and recordings made before it still read.

``decode`` never raises anything but MalformedMessage: every way bytes can be
wrong (frame count, encoding, msgpack, header types, unknown topic, size,
payload) ends there with a short reason and the topic when known.
"""

from __future__ import annotations

import time

import msgpack

from bus.errors import MalformedMessage, PayloadError
from bus.slotted import Slotted
from bus.topics import TOPICS, Topic

WIRE_VERSION = 1
MAX_TOPIC_LEN = 128
MAX_SOURCE_LEN = 64

_packb = msgpack.Packer(use_bin_type=True).pack
BODY_START = b"\x97"  # msgpack's array of seven: the first byte of every untraced body, whatever it holds
TRACED_START = b"\x98"  # an array of eight: a traced one's
MAX_TRACE = 2 ** 63 - 1

CHANNEL = b"\x00"  # a personal channel's first byte; no table topic starts with it
ACK = b"\xff"  # a lane's marker subscription's first byte, which the broker answers (bus.lane); no topic's
# Topics that go out on personal channels only: restricted ones (to the identities granted them), requests (to
# their server), replies (to the one who asked) and whatever else the table gives readers.
PERSONAL = frozenset(topic.wire for topic in TOPICS.values() if topic.personal)  # the table's readers (broker.gate)


PRESENCE = b"."  # the topic of a node's presence channel: no table topic begins with a dot
# A watcher's request for the broker's stats: they reach it through the tap (bus.tap), and the broker
# sends them only while asked. A topic on the wire has a NUL after it, so this prefix matches nothing.
STATS_WANTED = b"bus.broker.stats\x01"


def channel(reader: bytes, topic: bytes) -> bytes:
    """The topic frame of a personal topic as the broker sends it to one reader (broker.gate)."""
    return CHANNEL + reader + CHANNEL + topic


def stamp(topic: bytes, sender: bytes) -> bytes:
    """The topic frame as the broker sends it on: the sender's verified identity after a NUL."""
    return topic + CHANNEL + sender


def counted(reader: bytes, topic: bytes, sender: bytes, count: int) -> bytes:
    """The topic frame of the ``count``-th message the broker sends ``reader`` on ``topic`` from ``sender``."""
    return b"%b%b%b%b%b%b%b%d" % (CHANNEL, reader, CHANNEL, topic, CHANNEL, sender, CHANNEL, count)


def presence(identity: bytes) -> bytes:
    """The prefix every lane of a node subscribes to while it lives (the broker counts them: bus.departed)."""
    return channel(identity, PRESENCE)


def present(prefix: bytes) -> bytes | None:
    """The identity whose presence channel ``prefix`` is, else None."""
    if prefix[:1] != CHANNEL or not prefix.endswith(CHANNEL + PRESENCE) or prefix.count(CHANNEL) != 2:
        return None
    return prefix[1:-len(CHANNEL + PRESENCE)]


class Message(Slotted):
    __slots__ = ("topic", "source", "incarnation", "seq", "mono_ns", "wall_ns", "payload", "body", "latched",
                 "sender", "count", "trace")

    def __init__(self, topic: str, source: str, incarnation: int, seq: int, mono_ns: int, wall_ns: int,
                 payload: dict, body: bytes, latched: bool = False, sender: str = "", count: int = 0,
                 trace: int = 0):
        self.topic, self.source, self.incarnation, self.seq = topic, source, incarnation, seq
        self.mono_ns, self.wall_ns, self.payload = mono_ns, wall_ns, payload
        self.body = body  # the encoded body as received, for caches and recorders
        self.latched = latched  # True when delivered from the broker's last-value cache
        self.sender = sender  # the identity the broker verified; "" when read from a file
        self.count = count  # the broker's count on a personal channel; 0 elsewhere (bus.intake)
        self.trace = trace  # the trace it is a hop of (bus.tracing); 0: none

    @property
    def size(self) -> int:
        return len(self.topic) + len(self.body)

    def frames(self) -> list[bytes]:
        return [self.topic.encode(), self.body]


def encode(topic: Topic, source: str, incarnation: int, seq: int, payload: dict, trace: int = 0) -> list[bytes]:
    """Frames for one message. The caller has validated ``payload`` against ``topic``."""
    try:
        item = [WIRE_VERSION, source, incarnation, seq, time.monotonic_ns(), time.time_ns(), payload]
        if trace:
            item.append(trace)
        body = _packb(item)
    except (OverflowError, TypeError, ValueError) as exc:
        # e.g. an int beyond 64 bits inside an 'any' or 'dict' field
        raise PayloadError(f"{topic.name}: payload cannot be encoded: {exc}") from None
    if len(body) > topic.max_size:
        raise PayloadError(f"{topic.name}: message is {len(body)} bytes, the table allows {topic.max_size}")
    return [topic.wire, body]


def decode(frames: list[bytes]) -> Message:
    """A message from [topic, body] (a file, a publisher) or [stamped topic, body] (the broker)."""
    if len(frames) != 2:
        raise MalformedMessage(f"expected 2 frames, got {len(frames)}")
    raw_topic, body = frames
    head = _HEADS.get(raw_topic)
    if head is None:
        head = _read_head(raw_topic)
    topic, sender, count = head
    name = topic.name
    if len(body) > topic.max_size:
        raise MalformedMessage(f"oversized: {len(body)} bytes > {topic.max_size}", name)
    try:
        item = msgpack.unpackb(body)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # ExtraData, FormatError, StackError and UnicodeDecodeError are all ValueErrors.
        raise MalformedMessage(f"body is not msgpack ({type(exc).__name__})", name) from None
    if type(item) is not list or len(item) != 7:
        if type(item) is not list or len(item) != 8:
            raise MalformedMessage("body is not a 7- or 8-item envelope", name)
        trace = item.pop()
        if type(trace) is not int or not 0 < trace <= MAX_TRACE:
            raise MalformedMessage("bad trace in header", name)
    else:
        trace = 0
    version, source, incarnation, seq, mono_ns, wall_ns, payload = item
    # One expression for the header as it always is; _bad_header says what is wrong when it is not.
    if not (version == WIRE_VERSION and type(version) is int and type(source) is str
            and 0 < len(source) <= MAX_SOURCE_LEN and type(incarnation) is int and type(seq) is int and seq > 0
            and type(mono_ns) is int and type(wall_ns) is int):
        raise MalformedMessage(_bad_header(version, source, incarnation, seq, mono_ns, wall_ns), name)
    if not topic.quick(payload):
        try:
            topic.validate(payload)
        except PayloadError as exc:
            raise MalformedMessage(str(exc).removeprefix(name + ": "), name) from None
    return Message(name, source, incarnation, seq, mono_ns, wall_ns, payload, body, False, sender, count, trace)


def _read_head(raw_topic: bytes) -> tuple[Topic, str, int]:
    """The topic, the verified sender and the channel's count a topic frame names. All but a counted
    channel's are remembered: a receiver sees the same few (topic, sender) frames over and over, and one
    dict lookup costs a fifth of taking one apart."""
    if raw_topic[:1] == CHANNEL and raw_topic.count(CHANNEL) == 4:  # a counted personal channel
        uncounted, _, digits = raw_topic.rpartition(CHANNEL)
        if not (digits.isdigit() and digits.isascii() and 0 < len(digits) <= 20 and digits[:1] != b"0"):
            raise MalformedMessage("a personal channel's count is not a number")
        topic, sender, _ = _HEADS.get(uncounted) or _read_head(uncounted)
        return topic, sender, int(digits)
    stamped = raw_topic
    if raw_topic[:1] == CHANNEL:  # a personal channel: the topic follows the reader's name
        start = raw_topic.find(CHANNEL, 1) + 1
        if not start:
            raise MalformedMessage("a personal channel without a topic")
        raw_topic = raw_topic[start:]
    raw_topic, _, raw_sender = raw_topic.partition(CHANNEL)
    if CHANNEL in raw_sender:
        raise MalformedMessage("a NUL in the sender's stamp")
    try:
        sender = raw_sender.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedMessage("sender is not ASCII") from None
    topic = BY_WIRE.get(raw_topic)
    if topic is None:
        raise MalformedMessage(*_unknown_topic(raw_topic))
    if len(_HEADS) >= MAX_HEADS:  # only valid frames get here, and senders are the broker's keys: rare
        _HEADS.clear()
    head = _HEADS[stamped] = (topic, sender, 0)
    return head


def _bad_header(version, source, incarnation, seq, mono_ns, wall_ns) -> str:
    if type(version) is not int or version != WIRE_VERSION:
        return f"wire version {version!r:.20} is not {WIRE_VERSION}"
    if type(source) is not str or not 0 < len(source) <= MAX_SOURCE_LEN:
        return "bad source in header"
    if type(incarnation) is not int or type(seq) is not int or seq < 1:
        return "bad incarnation or sequence in header"
    return "bad timestamps in header"


def _unknown_topic(raw_topic: bytes) -> tuple[str, ...]:
    """Why a topic frame names no topic in the table: (reason,) or (reason, the name)."""
    if len(raw_topic) > MAX_TOPIC_LEN:
        return (f"topic frame of {len(raw_topic)} bytes",)
    try:
        return ("unknown topic", raw_topic.decode())
    except UnicodeDecodeError:
        return ("topic is not UTF-8",)


# The table keyed by the topic frame itself: one dict lookup instead of decode-then-lookup.
BY_WIRE = {topic.wire: topic for topic in TOPICS.values()}
MAX_HEADS = 4096
_HEADS: dict[bytes, tuple[Topic, str, int]] = {}  # a topic frame as received -> (its topic, its sender, 0)
