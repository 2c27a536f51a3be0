"""`lens bus record`: the bus into MCAP files (bustools/bag.py), or the last N seconds kept for a snapshot.

A recorder is a node named ``recorder`` subscribed to the prefixes asked
for (a topic that appears later is picked up: subscriptions are prefixes).
It checks every (source, incarnation, topic) sequence as it goes: a gap is
a lost message, counted, written into the file's ``lensos.gaps`` metadata
and reported at the end; a drop is never silent.

Camera frames, mic audio and photos stay out unless a ``Consent`` is given
(bustools.capture_content): their descriptors and timing go in, the content not.
"""

from __future__ import annotations

import base64
import errno
import io
import json
import logging
import time
from collections import deque
from pathlib import Path

from bustools import bag
from bustools.capture_content import MAX_PHOTO_BYTES, METADATA, Consent, private_mark, withhold
from bus.envelope import Message
from bus.node import Node
from bus.errors import RequestRefused
from frames.ring import FrameOverrun
from frames.door import RingFollower
from bus.topics import from_owner, matches

log = logging.getLogger("recorder")

CHUNK_BYTES = 64 * 1024  # what a crash can cost: the chunk being filled
NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


class OutputFull(OSError):
    """The file system of the output is full: the files before the current one are whole."""


class Output:
    """The MCAP file(s) being written: split by size or time into NAME.mcap, NAME-001.mcap, ..."""

    def __init__(self, path: Path, compression: str, split_bytes: int = 0, split_s: float = 0.0,
                 mark=private_mark):
        self.base, self.compression = path, compression
        self.mark = mark  # () -> the lensos.capture metadata: first in every file, so a cut file keeps it
        self.split_bytes, self.split_s = split_bytes, split_s
        self.paths: list[Path] = []
        self.writer = None
        self.messages = 0

    def write(self, topic: str, source: str, data: bytes, log_ns: int, wall_ns: int, seq: int) -> None:
        """Add a message; OutputFull when the disk has no room (then only close() is left to do)."""
        try:
            self._write(topic, source, data, log_ns, wall_ns, seq)
        except OutputFull:
            raise  # the previous file's end had no room (a split)
        except OSError as exc:
            if exc.errno not in NO_ROOM:
                raise
            where = self.paths[-1] if self.paths else self.base
            raise OutputFull(exc.errno, f"the disk is full: {exc.strerror} ({where})") from None

    def _write(self, topic: str, source: str, data: bytes, log_ns: int, wall_ns: int, seq: int) -> None:
        if self.writer is None or self._full():
            self._open()
        channel = self.channels.get((topic, source))
        if channel is None:
            schema = self.schemas.get(topic)
            if schema is None:
                described = bag.schema_for(topic)
                schema = self.schemas[topic] = self.writer.register_schema(
                    name=described["title"], encoding="jsonschema", data=json.dumps(described).encode())
            channel = self.channels[(topic, source)] = self.writer.register_channel(
                topic=topic, message_encoding="json", schema_id=schema, metadata={"source": source})
        self.writer.add_message(channel_id=channel, log_time=log_ns, data=data, publish_time=wall_ns,
                                sequence=seq & 0xFFFFFFFF)
        self.bytes += len(data)
        self.messages += 1
        self.file_messages += 1

    def _full(self) -> bool:
        return (self.split_bytes and self.bytes >= self.split_bytes) or \
            (self.split_s and time.monotonic() - self.opened >= self.split_s)

    def _open(self) -> None:
        from mcap.writer import CompressionType, Writer

        self.close()
        path = self.base if not self.paths else self.base.with_name(f"{self.base.stem}-{len(self.paths):03d}.mcap")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "wb")
        self.writer = Writer(self.file, chunk_size=CHUNK_BYTES,
                             compression={"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4,
                                          "none": CompressionType.NONE}[self.compression])
        self.writer.start(profile="", library="lensos")
        self.writer.add_metadata(METADATA, self.mark())
        self.paths.append(path)
        self.schemas: dict[str, int] = {}
        self.channels: dict[tuple[str, str], int] = {}
        self.bytes, self.opened, self.file_messages = 0, time.monotonic(), 0

    def close(self, metadata: dict[str, dict[str, str]] | None = None) -> None:
        """Finish the current file; OutputFull when there is no room for its end (it is then cut short,
        readable up to its last whole chunk, or removed when it holds no message)."""
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        try:
            for name, data in (metadata or {}).items():
                writer.add_metadata(name, data)
            writer.finish()
            self.file.close()
        except OSError as exc:
            if exc.errno not in NO_ROOM:
                raise
            self._abandon()
            raise OutputFull(exc.errno, f"the disk is full: {exc.strerror} ({self.base.parent})") from None

    def _abandon(self) -> None:
        """The current file could not be finished: what the disk holds of it stays, unless that is nothing."""
        path = self.paths[-1]
        try:
            self.file.close()
        except OSError:
            pass  # the buffered tail had no room either: what is on disk is what is kept
        if self.file_messages == 0 or path.stat().st_size == 0:
            path.unlink(missing_ok=True)
            self.paths.pop()


class Recorder:
    def __init__(self, node: Node, output: Output | None, prefixes: list[str], frame_every: int = 1,
                 snapshot_s: float = 0.0, snapshot_base: Path | None = None, compression: str = "zstd",
                 consent: Consent | None = None):
        self.node, self.output, self.frame_every = node, output, max(1, frame_every)
        self.consent = consent  # None: camera frames, mic audio and photos stay out
        self.snapshot_s, self.snapshot_base, self.compression = snapshot_s, snapshot_base, compression
        self.buffer: deque[tuple] = deque()  # snapshot mode: (log_ns, topic, source, data, wall_ns, seq)
        self.last_seq: dict[tuple[str, int, str], int] = {}
        self.gaps: dict[str, int] = {}  # "source topic" -> messages missing
        self.frames = 0
        self.camera_ring = RingFollower(node)
        self.failed: str | None = None  # why recording stopped before it was asked to (a full disk)
        for prefix in prefixes or [""]:
            node.subscribe(prefix, self.on_message, from_anyone=True)
        if consent is not None:
            node.subscribe("camera.state", self.camera_ring.on_camera)  # where the frames are, to store them as images
            if any(matches(prefix, bag.PHOTO_TOPIC) for prefix in prefixes or [""]):
                node.subscribe("camera.control.reply", self.on_photo)  # the path of each photo taken
        if snapshot_s:
            node.serve("bus.snapshot.request", self.on_snapshot)

    def on_message(self, msg: Message) -> None:
        if self.failed:
            return  # said once; the loop is ending
        try:
            self._record(msg)
        except OutputFull as exc:
            self.failed = exc.strerror
            log.error("stopping: %s", exc.strerror)
            self.node.stop()

    def _record(self, msg: Message) -> None:
        self._check_gap(msg)
        header = {"source": msg.source, "incarnation": msg.incarnation, "seq": msg.seq, "mono_ns": msg.mono_ns,
                  "wall_ns": msg.wall_ns}
        if msg.trace:
            header["trace"] = msg.trace
        now, payload = time.time_ns(), msg.payload
        if self.consent is None:
            payload, withheld = withhold(msg.topic, payload)
            if withheld:
                header["withheld"] = withheld
        else:
            self.consent.kept(msg.topic, payload)
        self._keep(msg.topic, msg.source, bag.encode(msg.topic, payload, header), now, msg.wall_ns, msg.seq)
        if msg.topic == "camera.frame" and from_owner(msg.topic, msg.source) and self.consent is not None:
            self.frames += 1
            if (self.frames - 1) % self.frame_every == 0:
                self._image(msg, header, now)

    def _image(self, msg: Message, header: dict, now: int) -> None:
        from PIL import Image

        p = msg.payload
        ring = self.camera_ring.ring
        if ring is None or ring.epoch != p["ring"]:
            self.camera_ring.want(p["ring"])
            self.gaps["camerad camera.image (no ring)"] = self.gaps.get("camerad camera.image (no ring)", 0) + 1
            return
        try:
            pixels = ring.copy(p["slot"], p["gen"])
        except FrameOverrun:
            self.gaps["camerad camera.image (overrun)"] = self.gaps.get("camerad camera.image (overrun)", 0) + 1
            return
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG", quality=85)
        image = {"timestamp": {"sec": msg.wall_ns // 10**9, "nsec": msg.wall_ns % 10**9},
                 "frame_id": f"camera:{p['id']}", "format": "jpeg", "data": base64.b64encode(out.getvalue()).decode()}
        data = bag.encode(bag.IMAGE_TOPIC, image, header)
        self.consent.kept(bag.IMAGE_TOPIC, image)
        self._keep(bag.IMAGE_TOPIC, msg.source, data, now, msg.wall_ns, msg.seq)

    def on_photo(self, msg: Message) -> None:
        """camerad answered a photo with its path: the JPEG itself goes in (with consent only)."""
        result = msg.payload.get("result") or {}
        path = result.get("path") or ""
        if not msg.payload.get("ok") or not path.endswith(".jpg") or self.failed:
            return
        try:
            with open(path, "rb") as photo:
                data = photo.read(MAX_PHOTO_BYTES + 1)
        except OSError as exc:
            log.warning("cannot read the photo %s: %s", path, exc.strerror)
            data = b""
        if not data or len(data) > MAX_PHOTO_BYTES:
            self.gaps["camerad camera.photo (unreadable)"] = self.gaps.get("camerad camera.photo (unreadable)", 0) + 1
            return
        image = {"timestamp": {"sec": msg.wall_ns // 10**9, "nsec": msg.wall_ns % 10**9},
                 "frame_id": f"photo:{Path(path).name}", "format": "jpeg", "data": base64.b64encode(data).decode()}
        header = {"source": msg.source, "incarnation": msg.incarnation, "seq": msg.seq, "mono_ns": msg.mono_ns,
                  "wall_ns": msg.wall_ns}
        if msg.trace:
            header["trace"] = msg.trace
        self.consent.kept(bag.PHOTO_TOPIC, image)
        try:
            self._keep(bag.PHOTO_TOPIC, msg.source, bag.encode(bag.PHOTO_TOPIC, image, header), time.time_ns(),
                       msg.wall_ns, msg.seq)
        except OutputFull as exc:
            self.failed = exc.strerror
            log.error("stopping: %s", exc.strerror)
            self.node.stop()

    def _keep(self, topic: str, source: str, data: bytes, log_ns: int, wall_ns: int, seq: int) -> None:
        if self.snapshot_s:
            self.buffer.append((log_ns, topic, source, data, wall_ns, seq))
            while self.buffer and self.buffer[0][0] < log_ns - self.snapshot_s * 1e9:
                self.buffer.popleft()
        else:
            self.output.write(topic, source, data, log_ns, wall_ns, seq)

    def _check_gap(self, msg: Message) -> None:
        key = (msg.source, msg.incarnation, msg.topic)
        last = self.last_seq.get(key)
        if last is not None and msg.seq > last + 1:
            name = f"{msg.source} {msg.topic}"
            self.gaps[name] = self.gaps.get(name, 0) + msg.seq - last - 1
        self.last_seq[key] = max(msg.seq, last or 0)

    def on_snapshot(self, msg: Message) -> dict:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.snapshot_base.with_name(f"{self.snapshot_base.stem}-{stamp}.mcap")
        output = Output(path, self.compression, mark=self._mark)
        try:
            for log_ns, topic, source, data, wall_ns, seq in list(self.buffer):
                output.write(topic, source, data, log_ns, wall_ns, seq)
            output.close(self._metadata())
        except OutputFull as exc:
            try:
                output.close()
            except OutputFull:
                pass  # the same full disk, said below
            log.error("snapshot: %s", exc.strerror)
            raise RequestRefused(exc.strerror) from None
        return {"path": str(path), "messages": output.messages}

    def _mark(self) -> dict[str, str]:
        return self.consent.mark() if self.consent is not None else private_mark()

    def _metadata(self) -> dict[str, dict[str, str]]:
        """At a file's end: the gaps, and the capture mark again with what was kept."""
        return {"lensos.gaps": {k: str(v) for k, v in self.gaps.items()}, METADATA: self._mark()}

    def close(self) -> dict[str, int]:
        if self.output is not None:
            try:
                self.output.close(self._metadata())
            except OutputFull as exc:
                if not self.failed:
                    log.error("stopping: %s", exc.strerror)
                self.failed = self.failed or exc.strerror
        self.camera_ring.close()
        return self.gaps
