"""displayd: the compositor of what the wearer sees (S1), or the voice of cards (G1).

Apps post cards (``display.card.request``); the shell's latched state says
who holds display focus, how bright the panel is and whether it is on;
power, LED and capture state feed the HUD and displayd's own alerts.
Nothing is drawn unless what would be drawn changed: every input only marks
the scene, and one timer (the next refresh slot, a card's expiry, the next
minute for the clock) is all that ever
wakes displayd. On the display-less G1 the panel is "none" and cards that
would have been shown are sent to the audio daemon as ``audio.speak``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from bus import service
from shellclient.departures import Departures
from bus.envelope import Message
from bus.errors import RequestRefused
from bus.kept import Kept
from bus.node import Node
from bus.runtime import state_dir
from daemons.display.panels import FbPanel, NonePanel, PanelError, SimPanel, png
from daemons.display.render import Painter, compose
from daemons.display.receipts import Receipts
from daemons.display.scene import CardError, Scene, View
from manager.processes import by_module
from policies.checker import PolicyError
from policies.loader import load

ROW = by_module("daemons.display")  # its name and command line, from its row of the process table

log = logging.getLogger(ROW.name)

CLOCK_PERIOD_S = 60.0  # the HUD clock shows minutes: between changes it is the one wake-up
# The latched state the scene is made of (each from its owner only: bus.node).
STATE_TOPICS = ("shell.state", "power.state", "led.state", "privacy.capture", "notifications.state")
# What displayd alone knows, kept across its restart (bus.kept): the apps' cards and the wearer's brightness.
KEPT = {"cards": "list[dict]", "user_level": "float"}


class Displayd:
    def __init__(self, node: Node, panel, painter: Painter | None, scene: Scene, size: tuple[int, int],
                 refresh_hz: int, kept: Kept | None = None):
        self.node, self.panel, self.painter, self.scene = node, panel, painter, scene
        self.kept = kept
        self.width, self.height = size
        self.frame_s = 1.0 / refresh_hz if refresh_hz else 0.0
        self.layers: dict[str, tuple] = {}  # name -> (key, Layer): painted once per change
        self.shown: tuple | None = None  # key of the frame on the panel
        self.frames, self.last_render = 0, float("-inf")
        self.published_state: dict | None = None
        self.unchecked = False  # restored cards not yet checked against the shell's census
        self.live = False  # set once the node has started: nothing is shown from a half-known state
        self.spoken: set = set()  # G1: what was already said
        self.timer = None
        self.receipts = Receipts()  # who saw their card in the last frame: each app told of changes
        self.traces: dict[str, int] = {}  # each app's last card request's trace
        # Requests (source:cid) whose effect no frame has shown yet: the next frame that shows it names them
        # (display.frame's answers), so a measure of what the wearer waits for needs no guess (bench/feel.py).
        self.asked: list[tuple[str, str, int]] = []  # (who asked, source:cid, its trace) not yet answered
        for topic in STATE_TOPICS:
            node.subscribe(topic, self.on_state)
        Departures(node, self.on_gone)
        node.serve("display.card.request", self.on_card)
        node.serve("display.brightness.request", self.on_brightness)
        node.serve("display.clear.request", self.on_clear)
        node.serve("display.snapshot.request", self.on_snapshot)

    # --- what others say ----------------------------------------------------------------
    def on_state(self, msg: Message) -> None:
        if msg.topic == "shell.state":
            self.scene.shell = msg.payload
            if self.unchecked:  # kept cards of apps that left while no displayd could hear it go with them
                self.unchecked = False
                for app in [a for a in self.scene.cards if a not in msg.payload.get("nodes", {})]:
                    self.scene.drop_app(app)
        elif msg.topic == "power.state":
            self.scene.power = msg.payload
        elif msg.topic == "led.state":
            self.scene.led = msg.payload
        elif msg.topic == "notifications.state":
            self.scene.notifications = msg.payload
        else:
            self.scene.capture = msg.payload
        self.update()

    def on_gone(self, app: str) -> None:
        if self.scene.drop_app(app):
            self.update()

    def on_card(self, msg: Message) -> dict:
        now = time.monotonic()
        try:
            card = self.scene.post(msg.source, msg.payload, now)
        except CardError as exc:
            raise RequestRefused(str(exc)) from None
        self.asked.append((msg.source, f"{msg.source}:{msg.payload['cid']}", msg.trace))
        self.traces[msg.source] = msg.trace  # the card's receipt is a hop of the same trace
        view = self.update()
        if self.painter is None:
            if msg.source in self.audible():
                return {"shown": True, "why": "spoken"}
            return {"shown": False, "why": f"kept as {card.id!r}: spoken when {msg.source} is the foreground "
                                           "app or holds audio_out"}
        if view.shows(msg.source):
            return {"shown": True, "why": "shown now"}
        holder = self.scene.shell["focus"].get("display", {}).get("owner") or "nobody"
        return {"shown": False, "why": f"kept as {card.id!r}: shown when {msg.source} has display focus "
                                       f"(now {holder if view.on else 'the panel is off'})"}

    def restore(self) -> None:
        """Before the node starts: the cards and brightness the last displayd kept (an app's card stays up
        through displayd's restart; the apps do not know it happened)."""
        kept = self.kept.load() if self.kept else None
        if kept is not None:
            for why in self.scene.restore(kept, time.monotonic()):
                log.warning("a kept card was left out: %s", why)
            self.unchecked = bool(self.scene.cards)
            log.info("restored %d cards kept by the last displayd", sum(map(len, self.scene.cards.values())))

    def on_brightness(self, msg: Message) -> dict:
        level = msg.payload["level"]
        if not 0.1 <= level <= 1.0:
            raise RequestRefused(f"level {level} is outside 0.1..1 (the panel is never set dark by request)")
        self.scene.user_level = level
        self.update()
        return {"level": level}

    def on_clear(self, msg: Message) -> dict:
        cleared = self.scene.clear(msg.source, msg.payload.get("id"))
        self.asked.append(("", f"{msg.source}:{msg.payload['cid']}", msg.trace))
        self.update()
        return {"cleared": cleared}

    def on_snapshot(self, msg: Message) -> dict:
        frame = self.panel.snapshot()
        if frame is None:
            raise RequestRefused("this model has no display (cards are spoken)")
        return {"png": png(frame), "width": frame.shape[1], "height": frame.shape[0], "frames": self.frames}

    # --- deciding and drawing -----------------------------------------------------------
    def update(self) -> View:
        """Something changed: expire what is due, then draw (or speak) what is new, when its slot comes."""
        now = time.monotonic()
        self.scene.expire(now)
        view = self.scene.view(now, time.time())
        if self.kept is not None and self.live:
            self.kept.save(self.scene.export())  # written only when it changed
        if not self.live:
            return view  # still starting: the latched state (the wearer's brightness too) is not all in yet
        if self.painter is None:
            self.speak(view)
        elif self._key(view) != self.shown:
            if now >= self.last_render + self.frame_s:
                self.render(view, now)
            else:
                self._arm(self.last_render + self.frame_s)  # at most one frame per refresh
                return view
        self._arm(self._next_wake(now))
        return view

    def render(self, view: View, now: float) -> None:
        layers = []
        if view.on:
            layers.append(self._layer("hud", view.hud, lambda: self.painter.hud(*view.hud)))
            top = layers[0].bottom + self.painter.u(6)
            if view.card is not None:
                card = view.card
                layers.append(self._layer("card", (card.app, card.id, card.seq, top),
                                          lambda: self.painter.card(card.drawn(), top)))
            if view.toast is not None:
                toast = view.toast
                layers.append(self._layer("toast", (toast.app, toast.id, toast.seq),
                                          lambda: self.painter.toast(toast.as_dict())))
            if view.alert is not None:
                layers.append(self._layer("alert", view.alert, lambda: self.painter.alert(*view.alert)))
        brightness = view.brightness if view.on else 0.0
        dim = 1.0 if self.panel.hardware_brightness else brightness
        try:
            self.panel.brightness(brightness)
            self.panel.show(compose(layers, self.width, self.height, dim))
        except PanelError as exc:
            log.error("%s", exc)
        self.shown, self.last_render = self._key(view), now
        self.frames += 1
        # A card's request is answered by the first frame that shows it (a kept card waits for its focus);
        # a clear's by the first frame after it.
        answered = [entry for entry in self.asked if not entry[0] or view.shows(entry[0])]
        self.asked = [entry for entry in self.asked if entry[0] and not view.shows(entry[0])][-16:]
        # The frame is a hop of the (first) traced request it answers: the trace's "shown" (bus.tracing).
        shown_ns = time.monotonic_ns()
        with self.node.tracing(next((trace for _, _, trace in answered if trace), 0)):
            self.node.publish("display.frame", n=self.frames, mono_ns=shown_ns, layers=view.layers,
                              png=str(self.panel.path) if isinstance(self.panel, SimPanel) else None,
                              answers=[asked for _, asked, _ in answered])
        for receipt in self.receipts.after_frame(view, self.scene):
            with self.node.tracing(self.traces.get(receipt["app"], 0) if receipt["shown"] else 0):
                self.node.publish("display.shown", frame=self.frames, mono_ns=shown_ns, **receipt)
        self.publish_state(view)

    def speak(self, view: View) -> None:
        """G1: say each new card of whoever would have had the display, each new alert, and a capture the
        system stopped, once."""
        said = set()
        for app in sorted(self.audible()):
            card = self.scene.newest(app)
            if card is not None:
                said.add(("card", app, card.seq))
                if ("card", app, card.seq) not in self.spoken:
                    self.node.publish("audio.speak", text=card.speech(), app=app, interrupt=False)
        if view.alert is not None:
            said.add(("alert", view.alert[0]))
            if ("alert", view.alert[0]) not in self.spoken:
                self.node.publish("audio.speak", text=f"{view.alert[0]}. {view.alert[1]}", app="displayd",
                                  interrupt=True)
        ended = (self.scene.shell.get("privacy") or {}).get("ended")  # a capture the system stopped (S1: the HUD)
        if ended:
            said.add(("ended", ended["resource"], ended["why"]))
            if ("ended", ended["resource"], ended["why"]) not in self.spoken:
                self.node.publish("audio.speak", text=f"{ended['resource'].capitalize()} stopped: {ended['why']}.",
                                  app="displayd", interrupt=False)
        self.spoken = said
        self.publish_state(view)

    def audible(self) -> set[str]:
        """G1: whose cards are said: the foreground app's, and those of whoever holds audio out."""
        shell = self.scene.shell
        apps = {shell.get("foreground")} | {c["owner"] for c in shell["focus"].get("audio_out", {}).get("stack", [])}
        return {app for app in apps if app}

    def publish_state(self, view: View) -> None:
        state = {"on": view.on and self.painter is not None, "brightness": round(view.brightness, 3),
                 "user_level": self.scene.user_level,
                 "width": self.width, "height": self.height, "backend": self.panel.name,
                 "font": self.painter.font_name if self.painter else None, "layers": view.layers,
                 "alert": f"{view.alert[0]}: {view.alert[1]}" if view.alert else None, "notice": view.hud[3]}
        if state != self.published_state:
            self.published_state = state
            self.node.publish("display.state", **state)

    def _layer(self, name: str, key, paint):
        cached = self.layers.get(name)
        if cached is None or cached[0] != key:
            cached = self.layers[name] = (key, paint())
        return cached[1]

    def _key(self, view: View) -> tuple:
        if not view.on:
            return (False,)
        return (True, view.brightness, view.hud, *((c.app, c.id, c.seq) if c else None for c in (view.card, view.toast)),
                view.alert)

    def _next_wake(self, now: float) -> float | None:
        deadline = self.scene.next_deadline(now)
        if self.painter is not None and self.shown and self.shown[0]:
            wall = time.time()
            minute = now + CLOCK_PERIOD_S - wall % CLOCK_PERIOD_S + 0.01  # the HUD clock's next change
            deadline = minute if deadline is None else min(deadline, minute)
        return deadline

    def _arm(self, at: float | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if at is not None:
            self.timer = self.node.after(max(0.0, at - time.monotonic()), self._wake)

    def _wake(self) -> None:
        self.timer = None
        self.update()


def open_panel(kind: str, policy, png_path: Path):
    profile, numbers = policy.profile, policy.hardware.display
    if not policy.has_display:
        return NonePanel()
    size = (profile.panel_width, profile.panel_height)
    if kind == "real":
        return FbPanel(numbers.fb_device, *size, numbers.fb_bits_per_pixel, numbers.backlight_dir)
    if kind == "none":
        return NonePanel()
    return SimPanel(png_path, *size)


M_MMAP_THRESHOLD = -3  # mallopt's parameter, from glibc's malloc.h


def give_frames_back() -> None:
    """Frame-sized blocks (a composite, its blending temporaries, a PNG) as their own mappings, unmapped
    when freed. glibc otherwise raises its mmap threshold to the largest block freed, after which every
    frame comes from the heap and the heap keeps its high-water mark: 5 MiB of displayd's RSS, for a
    process that renders only when something changed (an mmap per render costs nothing it would notice)."""
    import ctypes  # already loaded by numpy

    try:
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        pass  # not glibc: another allocator, its own rules


def main(argv: list[str] | None = None) -> int:
    args = service.arguments(ROW.module, __doc__, backends=ROW.backends,
                             state_dir="the cards kept across a restart").parse_args(argv)
    give_frames_back()
    with service.exits_on(ROW.name, PolicyError):
        policy = load(args.policy_dir, args.model)
    numbers = policy.hardware.display
    with service.node(ROW.name, args) as node:
        with service.exits_on(ROW.name, PanelError):
            panel = open_panel(args.backend, policy, node.runtime.path("display.png"))
        size = (panel.width, panel.height)  # a real framebuffer's own geometry wins over the profile's
        painter = None if isinstance(panel, NonePanel) else Painter(*size, numbers.font)
        kept = Kept(state_dir(args.state_dir, node.runtime.dir), "displayd", KEPT)
        displayd = Displayd(node, panel, painter, Scene(numbers.cards_per_app), size,
                            policy.profile.refresh_hz, kept)
        displayd.restore()
        node.start()
        displayd.live = True
        displayd.update()
        node.run()
        panel.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
