"""The app SDK: what an app does on the bus, in a few calls, with the shell's answers always delivered.

    class Camera(App):
        def on_gesture(self, gesture): ...      # only while this app is in the foreground
    Camera("camera").run()

The SDK is a convenience, not the guard: the shell refuses what the
manifest does not declare, camerad and audiod refuse capture the shell did
not grant, whoever sends the request. A refusal comes back as an exception
with the reason (``Refused``), and a permission refusal also as
``on_permission_denied``.

What the assistant hands to an app ("what is this?", "play music") arrives
as ``on_assistant(action, args)``; whatever the app then shows or says (its
last card, toast or speech), or the text it returns, goes back to the
assistant as the session's answer: what `lens say` prints.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from apps.sdk.manifest import Manifest, apps_dir, read
from bus.envelope import Message
from bus.errors import BusError, RequestFailed
from bus.kept import Kept
from bus.node import Node
from bus.runtime import state_dir
from shellclient import handshake
from shellclient.notices import Notices
from bus.waiting import wait_for

log = logging.getLogger("app")

GRANT_TIMEOUT_S = 3.0
DISPLAY_AGAIN_S = 1.0  # a display claim the shell did not answer is asked again this often (take_display)


# An app's heartbeat while it holds no focus: its beats then serve only the shell's list of what runs (its
# death is seen at once: bus.departed). While it holds focus, the shell's replies name a faster pace
# (shell.core.HOLDER_BEAT_S), so a hung app gives the display back as soon as before. Each beat woke the
# app, the broker and the shell: three apps at 5 s were a tenth of idle glasses' wake-ups (issue 33).
IDLE_BEAT_S = 30.0


class Refused(Exception):
    """The shell or a daemon said no; the message says why."""


class App:
    global_gestures: tuple[str, ...] = ()  # delivered in the background too (the camera's capture button)

    def __init__(self, app_id: str, runtime=None, apps: Path | None = None):
        self.manifest: Manifest = read((apps or apps_dir()) / app_id / "manifest.toml")
        self.id = app_id
        self.node = Node(app_id, runtime, heartbeat=IDLE_BEAT_S)
        self._kept: Kept | None = None
        self.shell: dict = {}
        self.foreground = False
        self.notices = Notices()  # the shell's focus and capture notices to this app
        self.node.subscribe("shell.state", self._on_shell)
        self.node.subscribe("shell.focus.notice", self._on_notice)
        self.node.subscribe("shell.capture.notice", self._on_notice)
        self.node.subscribe("app.permission.denied", self._on_denied)
        self.node.subscribe("input.gesture", self._on_gesture)
        self.node.subscribe("camera.state", self._on_camera)
        self.node.subscribe("assistant.action", self._on_action)
        self.node.subscribe("display.shown", self._on_shown)  # its own receipts only (the topic's readers)
        self._told: str | None = None  # while an assistant's action is handled: the last thing shown or said
        self.camera: dict = {}  # camerad's latest word: mode, owner, the session's ring number
        self._ring = None  # frames.ring.Ring while the camera is open (numpy only for apps that look)
        self._display_reason: str | None = None  # while in front: the display it asked for (take_display)
        self._display_asked = False  # asked again since the shell last showed it held
        self._frame: dict | None = None  # the newest descriptor of a frame taken for this app
        self.frames_overrun = 0

    # --- to override --------------------------------------------------------------------
    def on_start(self) -> None: ...
    def on_stop(self) -> None: ...  # asked to stop (SIGTERM from appd): save what must not be lost
    def on_foreground(self) -> None: ...
    def on_background(self) -> None: ...
    def on_gesture(self, gesture: str) -> None: ...
    def on_focus(self, notice: dict) -> None: ...
    def on_shown(self, receipt: dict) -> None: ...  # a card of this app came into view or left it (display.shown)
    def on_permission_denied(self, event: dict) -> None: ...
    def on_assistant(self, action: str, args: dict) -> str | None: ...  # None: what it showed or said answers

    # --- calls ----------------------------------------------------------------------------
    def ask(self, topic: str, timeout: float = 3.0, **fields) -> dict:
        try:
            return self.node.request(topic, timeout=timeout, **fields)
        except RequestFailed as exc:
            raise Refused(str(exc)) from None

    def come_forward(self) -> None:
        """In front once the shell says so (on_foreground has run): what follows asks as the foreground app."""
        self.ask("shell.foreground.request", app=self.id)
        self.wait(lambda: self.foreground, GRANT_TIMEOUT_S, f"the shell's word that {self.id} is in front")

    def start_app(self, app_id: str) -> str:
        """Start another app (it comes to the front once it is up); returns what the shell does next."""
        return self.ask("shell.app.request", app=app_id, action="start")["status"]

    def kept(self, schema: dict, survives_reboot: bool = True) -> Kept:
        """This app's own state, kept across its restarts in its own state directory (``bus.kept``): ``load()``
        before ``run()``, ``save(state)`` at each change (on disk at once; synced for a power cut within
        ``bus.kept.SYNC_S``, and when the app stops)."""
        self._kept = Kept(state_dir(None, self.node.runtime.dir), self.id, schema, survives_reboot=survives_reboot,
                          later=self.node.after)
        return self._kept

    @property
    def has_display(self) -> bool:
        return "display" in self.shell.get("focus", {})

    def focus(self, resource: str, kind: str = "exclusive", reason: str = "", purpose: str | None = None,
              cls: str | None = None) -> dict:
        """Ask for a resource; granted, queued or denied, with why. Camera and mic: returns once capture is
        granted (the LED confirmed; a queued claim first waits its turn), or raises Refused (refused, or no
        word within GRANT_TIMEOUT_S), the claim then given back (shellclient.handshake)."""
        mark = self.notices.mark()
        cls = cls or ("foreground" if self.foreground else "background")  # a role of focus.toml may say more
        answer = self.ask("shell.focus.request", resource=resource, kind=kind, cls=cls, reason=reason or self.id,
                          purpose=purpose)
        if answer["status"] == "denied":
            raise Refused(answer["reason"])
        try:
            for step in handshake.steps(answer["status"], resource, needed_now=False):
                if step == "focus":
                    self.wait(lambda: handshake.focus_granted(self.notices, mark, resource), GRANT_TIMEOUT_S,
                              f"its turn for the {resource}")
                    answer = dict(answer, status="granted")
                else:
                    notice = self.wait(lambda: self.notices.capture(mark, resource), GRANT_TIMEOUT_S,
                                       f"the {resource} grant")
                    if notice["status"] != "granted":
                        raise Refused(f"{resource} capture {notice['status']}: {notice['reason']}")
        except (BusError, Refused):
            self._release_quietly(resource)  # granted or queued meanwhile: nothing left held for nobody
            raise
        return answer

    def take_display(self, reason: str) -> None:
        """Display focus for this app's cards; a model without a display has none to take (its cards are said).
        A shell that does not answer (restarting, hung) is asked again every DISPLAY_AGAIN_S while this app
        stays in front: raised to the caller all the same, but the app's cards (kept by displayd) are shown
        once the shell answers, not left off the panel until the app next comes forward. And while it stays
        in front, a display it lost for good (an exclusive claim above it, since gone) is taken again once
        nobody holds it, rather than the wearer looking at an empty panel with the app in front."""
        if not self.has_display:
            return
        self._display_reason = reason
        try:
            self.focus("display", reason=reason)
        except BusError:
            self.node.after(DISPLAY_AGAIN_S, lambda: self._display_again(reason))
            raise

    def _display_again(self, reason: str) -> None:
        if not self.foreground:
            return  # the wearer moved on: whoever is in front now takes it
        try:
            self.take_display(reason)
        except BusError:
            pass  # take_display has asked for the next try
        except Refused as exc:
            log.warning("%s: no display: %s", self.id, exc)

    def release(self, resource: str) -> None:
        self.ask("shell.release.request", resource=resource)

    def card(self, card_id: str, title: str, body: str | None = None, **extra) -> dict:
        self._tell(title, body, *(extra.get("items") or ()))
        return self.ask("display.card.request", id=card_id, title=title, body=body, **extra)

    def clear(self, card_id: str | None = None) -> None:
        self.ask("display.clear.request", id=card_id)

    def play(self, sound: str, sound_id: str, **extra) -> float:
        """A built-in sound or a WAV, under this app's audio_out focus; returns its length in seconds."""
        return self.ask("audio.play.request", id=sound_id, sound=sound, **extra)["length_s"]

    def toast(self, title: str, body: str | None = None, seconds: float = 3.0, cls: str | None = None) -> None:
        """A moment over whatever is shown: transient display focus, a card that goes by itself (G1: said)."""
        if not self.has_display:
            self.speak(f"{title}. {body}" if body else title)
            return
        self.focus("display", "transient", "toast", cls=cls)
        try:
            self.card("toast", title, body, ttl_s=seconds)
        except (BusError, Refused):
            self._release_quietly("display")  # no toast (displayd restarting): the claim is not left over the app
            raise
        self.node.after(seconds, lambda: self._release_quietly("display"))

    def speak(self, text: str, interrupt: bool = False) -> None:
        self._tell(text)
        self.node.publish("audio.speak", text=text, app=self.id, interrupt=interrupt)

    def photo(self) -> str:
        """Take one photo: camera focus, the LED, the shot, the camera given back. Returns its path."""
        self.focus("camera", "transient", "photo")
        try:
            return self.ask("camera.control.request", mode="photo")["path"]
        finally:
            self._release_quietly("camera")

    # --- camera frames: a view on the shared-memory ring, no copy -----------------------------
    def open_camera(self, reason: str = "frames") -> None:
        """Camera focus (the LED lit first) and preview frames for this app; Refused with why."""
        self.focus("camera", "exclusive", reason, purpose="preview")
        try:
            self.ask("camera.control.request", mode="preview")
            self._ring = self._open_ring()
        except BaseException:
            self._release_quietly("camera")
            raise
        self.node.subscribe("camera.frame", self._on_frame)

    @contextmanager
    def next_frame(self, timeout: float = 3.0) -> Iterator:
        """The next frame as a read-only numpy view (height, width, 3) on the ring, valid inside the block:
        copy what you keep. FrameOverrun at the end of the block when camerad wrote over it meanwhile,
        so whatever was worked out from it must be thrown away (take the next one)."""
        if self._ring is None:
            raise Refused("the camera is not open (open_camera first)")
        self._frame = None
        frame = self.wait(lambda: self._frame, timeout, "a camera frame")
        from frames.ring import FrameOverrun
        if frame["ring"] != self._ring.epoch:  # camerad began a new session (and a new ring) meanwhile
            self._ring.close()
            self._ring = self._open_ring()
        try:
            with self._ring.frame(frame["slot"], frame["gen"]) as pixels:
                yield pixels
        except FrameOverrun:
            self.frames_overrun += 1
            raise

    def _open_ring(self):
        from frames.door import RingRefused, open_ring  # numpy: only apps that look at frames pay for it
        try:
            return open_ring(self.node, GRANT_TIMEOUT_S)
        except (RequestFailed, RingRefused) as exc:
            raise Refused(f"camerad's frame ring: {exc}") from None

    def close_camera(self) -> None:
        self.node.unsubscribe("camera.frame", self._on_frame)
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        try:
            self.ask("camera.control.request", mode="off")
        except (BusError, Refused) as exc:
            log.warning("%s: stopping the camera: %s", self.id, exc)
        self._release_quietly("camera")

    def work(self, fn: Callable, *args, timeout: float, what: str):
        """``fn(*args)`` on a worker thread while this app's loop runs on (its heartbeat keeps its focus,
        gestures still arrive): for anything slow, such as a network call. Refused when it takes too long."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.id)
        future = pool.submit(fn, *args)
        pool.shutdown(wait=False)  # the thread ends with fn; nobody waits for it past the timeout
        self.wait(future.done, timeout, what)
        return future.result()

    def wait(self, condition: Callable, timeout: float, what: str):
        """Keep the app's loop running until ``condition()`` holds; Refused when it does not in time."""
        return wait_for(condition, timeout, what, poll=self.node.run_once, error=Refused)

    def run(self) -> None:
        self.node.start()
        self.on_start()
        try:
            self.node.run()
        finally:
            self.on_stop()
            if self._kept is not None:
                self._kept.sync()  # what on_stop kept, through a power cut too
            self.node.close()  # node.bye: the shell takes back whatever this app held, at once

    # --- the bus's side ---------------------------------------------------------------------
    def _on_shell(self, msg: Message) -> None:
        self.shell = msg.payload
        forward = msg.payload.get("foreground") == self.id
        if forward != self.foreground:
            self.foreground = forward
            self._display_reason, self._display_asked = None, False  # asked anew in front (on_foreground)
            self.on_foreground() if forward else self.on_background()
        elif forward and self._display_reason is not None and self.has_display:
            if msg.payload["focus"]["display"]["stack"]:
                self._display_asked = False
            elif not self._display_asked:  # lost for good, and nobody holds it now: once, until it is held
                self._display_asked = True
                self._display_again(self._display_reason)

    def _on_notice(self, msg: Message) -> None:
        if msg.payload["owner"] == self.id:
            self.notices.add(dict(msg.payload, topic=msg.topic))
            if msg.topic == "shell.focus.notice":
                self.on_focus(msg.payload)

    def _on_action(self, msg: Message) -> None:
        """An action the assistant handed to this app; the wearer's answer goes back with its session."""
        p = msg.payload
        if p["app"] != self.id:
            return
        self._told = ""
        try:
            told = self.on_assistant(p["action"], p["args"]) or self._told
        except (Refused, BusError) as exc:
            told = f"{self.manifest.name}: {exc}"
            self.speak(told)
        finally:
            self._told = None
        try:
            self.ask("assistant.told.request", session=p["session"],
                     text=told or f"{self.manifest.name}: nothing to do for {p['action']}.")
        except (Refused, BusError) as exc:  # the session is over (the wearer asked something else)
            log.info("%s: answering session %s: %s", self.id, p["session"], exc)

    def _tell(self, *parts: str | None) -> None:
        if self._told is not None:
            self._told = " ".join(p if p[-1] in ".?!…:" else p + "." for p in (q.strip() for q in parts if q) if p)

    def _on_denied(self, msg: Message) -> None:
        if msg.payload["app"] == self.id:
            self.on_permission_denied(msg.payload)

    def _on_gesture(self, msg: Message) -> None:
        # The touch that wakes sleeping glasses is the shell's, not the app's: tapping the dark temple to wake
        # them took a photo when the camera app was in front (the boot check's wake tap did). The shell's
        # word that they are awake comes after the gesture, so the state as last heard says it was that one.
        # A global gesture (the capture button) is meant wherever it is pressed.
        if msg.payload["source"] == "touchpad" and self.shell.get("asleep"):
            return
        if self.foreground or msg.payload["gesture"] in self.global_gestures:
            self.on_gesture(msg.payload["gesture"])

    def _on_shown(self, msg: Message) -> None:
        if msg.payload["app"] == self.id:
            self.on_shown(msg.payload)

    def _on_camera(self, msg: Message) -> None:
        self.camera = msg.payload

    def _on_frame(self, msg: Message) -> None:
        if msg.payload["owner"] == self.id:
            self._frame = msg.payload

    def _release_quietly(self, resource: str) -> None:
        try:
            self.release(resource)
        except (BusError, Refused) as exc:
            log.warning("%s: releasing %s: %s", self.id, resource, exc)
