"""camerad: frames into a shared-memory ring, photos, and video in segments — only with a lit LED.

Capture runs for one owner at a time, the one the shell granted camera
capture, and only while ledd confirms the LED lit for the shell's current
command. camerad checks that itself before every frame (fail closed): the
moment a grant is withdrawn or the LED is not confirmed, capture stops.
While the shell says recording is not allowed (battery swap, critical,
low power) a recording is checkpointed and paused, and it resumes in a new
segment whose frame numbers carry on.

Each capture session writes into a ring of its own, a sealed memfd whose
descriptor only the session's owner (and the developer's tools) can get
(frames.door): a process whose grant has ended sees none of the next
session's frames, and no process can open the ring by name.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import time
from pathlib import Path

import numpy as np

from bus import service
from shellclient.capture import CaptureGate
from bus.envelope import Message
from bus.errors import RequestRefused
from bus.node import Node
from bus.runtime import state_dir
from daemons.camera.backends import CameraError, SimCamera, V4l2Camera
from daemons.camera.recorder import DiskFull, Recorder, close_unfinished, recover, unfinished
from frames.ring import Ring
from frames.door import Door
from manager.processes import by_module
from policies.checker import PolicyError
from policies.loader import load
from policies.settings import Section

ROW = by_module("daemons.camera")  # its name and command line, from its row of the process table

log = logging.getLogger(ROW.name)



class Camerad:
    def __init__(self, node: Node, source, numbers: Section, store: Path):
        self.node, self.source, self.numbers, self.store = node, source, numbers, store
        self.shape = (numbers.height, numbers.width, 3)
        self.ring: Ring | None = None  # the current session's
        self.door = Door(node, self.may_see_frames)
        self.mode, self.owner, self.why = "off", None, "nobody asked"
        self.frame_id = 0  # every frame camerad ever put in the ring
        self.frames = 0  # frames of the current session
        self.recorder: Recorder | None = None
        self.timer, self.timer_period = None, 0.0
        self.gate = CaptureGate(node, "camera", self.enforce)
        self.shell = {"state": "booting", "recording_allowed": True, "capture_paused": False}
        self.sessions: dict[str, str] = {}  # owner -> the shell's audit session id
        self.scratch = np.empty(self.shape, dtype=np.uint8)
        node.subscribe("shell.state", self.on_shell)
        node.subscribe("shell.capture.notice", self.on_notice)
        node.serve("camera.control.request", self.on_control)
        if isinstance(source, SimCamera):
            node.serve("camera.sim.request", self.on_sim)

    # --- what others say ----------------------------------------------------------------
    def on_shell(self, msg: Message) -> None:
        self.shell = msg.payload
        self.enforce()

    def on_notice(self, msg: Message) -> None:
        p = msg.payload
        if p["resource"] == "camera" and p["status"] == "granted":
            self.sessions[p["owner"]] = p["session"]

    def on_control(self, msg: Message) -> dict:
        mode, owner = msg.payload["mode"], msg.source
        if mode not in ("off", "preview", "video", "photo"):
            raise RequestRefused(f"unknown mode {mode!r} (off, preview, video, photo)")
        if mode == "off":
            if owner == self.owner:
                self.stop("stopped by its owner", by_owner=True)
            return {"mode": self.mode}
        refusal = self.gate.refusal(owner) or (self.owner not in (None, owner) and f"{self.owner} is capturing")
        if mode == "video" and not refusal and not self.shell["recording_allowed"]:
            refusal = f"video recording is not allowed now ({self.shell['state']})"
        if refusal:
            raise RequestRefused(refusal)
        if mode == "photo":
            return {"mode": self.mode, "path": self.photo(owner)}
        if self.owner is None:
            self.owner, self.frames = owner, 0
            self.new_ring()
        if mode == "video" and self.recorder is None:
            name = time.strftime("%Y%m%d-%H%M%S") + f"-{owner}"
            try:
                self.recorder = Recorder(self.store / "recordings", name, self.numbers.jpeg_quality,
                                         {"owner": owner, "session": self.sessions.get(owner)})
            except DiskFull as exc:
                if self.mode == "off":
                    self.stop(f"the disk is full: {exc.strerror}", by_owner=True)  # nothing was captured yet
                raise RequestRefused(self.disk_full(exc)) from None
        elif mode == "preview" and self.recorder is not None:
            self.close_segment("recording stopped", finish=True)
            self.recorder = None
        self.mode, self.why = mode, f"{mode} for {owner}"
        self.source.start()
        self.schedule()
        self.publish_state()
        return {"mode": self.mode, "path": str(self.recorder.dir) if self.recorder else None}

    def on_sim(self, msg: Message) -> dict:
        try:
            p = msg.payload
            return {"showing": self.source.show(p.get("image"), p.get("scale") or 1.0, p.get("rotate") or 0.0,
                                                p.get("tilt") or 0.0)}
        except CameraError as exc:
            raise RequestRefused(str(exc)) from None

    def may_see_frames(self, msg: Message) -> str | None:
        """Why the caller may not map the ring (frames.door), or None: the owner, while the rules hold."""
        if msg.source != self.owner:
            return f"{msg.source} is not capturing" if self.owner else "nobody is capturing"
        return self.gate.refusal(msg.source)

    def new_ring(self) -> None:
        """A fresh ring for a new session: whoever mapped the last one sees none of this one's frames."""
        if self.ring is not None:
            self.ring.close()
        self.ring = Ring.create(None, self.numbers.slots, self.shape)
        self.door.offer(self.ring)

    # --- the rules ----------------------------------------------------------------------
    def enforce(self) -> None:
        if self.owner is None:
            return
        refusal = self.gate.refusal(self.owner)
        if refusal:
            self.stop(refusal)
            return
        if self.recorder is not None and self.recorder.open and self.paused:  # paused covers recording_allowed
            self.close_segment(f"checkpoint: {self.shell['state']}")
        self.schedule()
        self.publish_state()

    @property
    def paused(self) -> bool:
        return self.shell["capture_paused"] or (self.recorder is not None and not self.shell["recording_allowed"])

    # --- capturing -------------------------------------------------------------------------
    def schedule(self) -> None:
        running = self.mode in ("preview", "video") and not self.paused
        fd = self.source.fileno()
        if fd is not None:  # a real device says when a frame is ready; watched only while streaming
            self.node.watch(fd, self.tick) if running else self.node.unwatch(fd)
            return
        period = 1.0 / (self.numbers.fps if self.mode == "video" else self.numbers.preview_fps)
        if self.timer is not None and running and self.timer_period == period:
            return  # already ticking at this pace: re-arming on every message would starve it of frames
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if running:
            self.timer, self.timer_period = self.node.every(period, self.tick), period

    def tick(self) -> None:
        if self.owner is None or self.paused:
            return
        refusal = self.gate.refusal(self.owner)  # before every frame, not only when told
        if refusal:
            self.stop(refusal)
            return
        try:
            pixels = self.source.grab(self.frame_id + 1, self.scratch)
        except CameraError as exc:
            self.stop(f"camera failed: {exc}")
            return
        self.frame_id += 1
        self.frames += 1
        now = time.monotonic_ns()
        slot, gen = self.ring.write(self.frame_id, pixels, now)
        height, width, _ = self.shape
        self.node.publish("camera.frame", id=self.frame_id, slot=slot, gen=gen, width=width, height=height,
                          format="rgb24", mono_ns=now, owner=self.owner, ring=self.ring.epoch)
        if self.mode == "video" and self.recorder is not None:
            try:
                self.recorder.add(self.frame_id, pixels, now)
            except DiskFull as exc:
                self.frames -= 1  # seen on the bus, never kept: a recording's session counts what is on disk
                self.stop(self.disk_full(exc))

    def photo(self, owner: str) -> str:
        pixels = self.source.grab(self.frame_id + 1, self.scratch)
        self.frame_id += 1
        path = self.store / "photos" / f"{time.strftime('%Y%m%d-%H%M%S')}-{self.frame_id}.jpg"
        from PIL import Image  # here, not at start: see daemons/camera/backends.py

        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG", quality=self.numbers.jpeg_quality)
        try:
            save_photo(path, buf.getvalue())
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise RequestRefused(self.disk_full(exc)) from None
        if self.owner is None:  # a photo alone is a session of one frame
            self.node.publish("camera.session", owner=owner, session=self.sessions.get(owner), frames=1, why=None)
        else:
            self.frames += 1
        return str(path)

    def disk_full(self, exc: OSError) -> str:
        """Said once per full disk (each stops what wanted room), to the log and, through the refusal or
        the session's end, to the owner and the shell."""
        why = f"the disk is full: {exc.strerror} ({self.store})"
        log.error("%s", why)
        return why

    def close_segment(self, why: str, finish: bool = False) -> None:
        if self.recorder is None:
            return
        try:
            info = self.recorder.finish(why) if finish else self.recorder.checkpoint(why)
        except DiskFull as exc:
            info = None
            log.error("closing a segment of %s: %s", self.recorder.dir, exc)  # what was synced before stays
        if info is not None:
            self.node.publish("camera.segment", owner=self.owner or "", **info)

    def stop(self, why: str, by_owner: bool = False) -> None:
        """End the session. Unless its owner asked, camera.session says why, and the shell takes the
        camera back from the owner (which is told): nobody keeps a grant and a lit LED for nothing."""
        owner = self.owner
        self.close_segment(why, finish=True)
        self.recorder = None
        self.mode, self.owner, self.why = "off", None, why
        self.schedule()
        self.source.stop()
        # A fresh, untouched buffer costs no memory until the next session writes it; the last one's
        # frame-sized pages (6 MiB at 1080p) go back to the system.
        self.scratch = np.empty(self.shape, dtype=np.uint8)
        self.door.withdraw()  # no ticket now; the next session has a new ring anyway
        if owner is not None:
            log.info("capture for %s stopped: %s (%d frames)", owner, why, self.frames)
            self.node.publish("camera.session", owner=owner, session=self.sessions.pop(owner, None),
                              frames=self.frames, why=None if by_owner else why)
        self.publish_state()

    def publish_state(self) -> None:
        height, width, _ = self.shape
        fps = {"video": self.numbers.fps, "preview": self.numbers.preview_fps}.get(self.mode, 0.0)
        self.node.publish("camera.state", mode=self.mode, owner=self.owner, fps=fps, frames=self.frames,
                          ring=self.ring.epoch if self.ring else 0, width=width, height=height, backend=self.source.name,
                          paused=self.paused and self.mode != "off",
                          recording=str(self.recorder.dir) if self.recorder else None, why=self.why)


    def recover_unfinished(self) -> None:
        """Recordings a killed camerad (or a power cut) left open: their whole frames counted for the
        audit log, the session's end said to the shell."""
        for directory, about in unfinished(self.store / "recordings"):
            found = recover(directory)
            log.warning("recording %s was cut off: %d whole frames recovered, %d torn records skipped",
                        directory, len(found.frames), found.torn)
            self.node.publish("camera.session", owner=about.get("owner") or "", session=about.get("session"),
                              frames=len(found.frames), why="camerad stopped while recording")
            close_unfinished(directory)


def save_photo(path: Path, data: bytes) -> None:
    """All of the photo or no file: written beside its name, fsync'ed, then renamed (a full disk leaves
    no empty or cut-off photo)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    part = path.with_name(path.name + ".part")
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(part, path)
    except OSError:
        part.unlink(missing_ok=True)
        raise


def media_dir(numbers: Section, state: Path) -> Path:
    """Where photos and recordings go: the policy's media_dir, else the state directory."""
    if not numbers.media_dir:
        return state
    path = Path(numbers.media_dir)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def open_source(kind: str, numbers: Section):
    if kind == "real":
        return V4l2Camera(numbers.device, numbers.width, numbers.height, numbers.fps)
    return SimCamera(numbers.width, numbers.height, numbers.sim_folder)


def main(argv: list[str] | None = None) -> int:
    args = service.arguments(ROW.module, __doc__, backends=ROW.backends,
                             state_dir="photos and recordings").parse_args(argv)
    with service.exits_on(ROW.name, PolicyError, CameraError, OSError):
        numbers = load(args.policy_dir, args.model).hardware.camera
        source = open_source(args.backend, numbers)
    with service.node(ROW.name, args) as node:
        with service.exits_on(ROW.name, OSError):  # a media directory that cannot be made
            store = media_dir(numbers, state_dir(args.state_dir, node.runtime.dir))
        camerad = Camerad(node, source, numbers, store)
        node.start()
        camerad.recover_unfinished()
        camerad.publish_state()
        node.run()
        camerad.stop("camerad stopped")
        source.close()
        camerad.door.close()
        if camerad.ring is not None:
            camerad.ring.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
