"""What the wearer should see now, decided from the bus, without drawing anything.

Apps post cards; the shell's latched state says who holds display focus.
The rule is the focus stack's (shell.state focus.display, top first):

- the top claim is what is shown: an exclusive holder's card fills the
  view; a transient holder's card is a toast over the view of the
  exclusive owner beneath it (suspended, still visible under the toast),
  for as long as the claim lasts (or its own ttl_s), and it goes with
  the claim: what the panel shows is what the focus says;
- a claim of class system_alert is shown as an alert, on top of all;
- an app not in the stack keeps its cards, shown when it gets focus.

On top of that, displayd's own alerts come from the system's state, not
from any app: the capture LED failed, a battery is out (with the bridge
time left, powerd's number as everyone shows it), the system is shutting down. Missing daemons are named on the
HUD. Time is passed in (monotonic for expiry, wall for the clock).
"""

from __future__ import annotations

import io
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from daemons.display.render import ICONS

TITLE_MAX, BODY_MAX, ITEM_MAX, ITEMS_MAX = 80, 600, 80, 20
# A card's picture is a thumbnail (the lens app's preview of what the camera saw), not a photo viewer: its
# size is checked in its header before a pixel is decoded, so a hostile PNG cannot make displayd allocate more.
IMAGE_MAX = (320, 240)
IMAGE_FORMATS = ("PNG", "JPEG")
OUTLINE_POINTS = (3, 16)


class CardError(ValueError):
    """A card the display cannot show (bad icon, too long, bad progress)."""


@dataclass
class Card:
    app: str
    id: str
    title: str
    body: str = ""
    icon: str | None = None
    items: list[str] = field(default_factory=list)
    selected: int | None = None
    progress: float | None = None
    expires: float | None = None  # monotonic; None: until replaced or cleared
    seq: int = 0  # posting order: an app's newest card is its view
    with_claim: bool = False  # posted under a transient claim (a toast, an alert): goes when the claim does
    image: np.ndarray | None = None  # decoded RGB, height x width x 3
    outline: tuple[tuple[float, float], ...] = ()  # a polygon over the image, in its pixels

    def as_dict(self) -> dict:
        """What is kept across displayd's restart (bus.kept): its picture is not. The picture may be what the
        camera saw (the lens app's preview), which is not written to disk, and a few of them would pass the
        kept file's size limit and lose every card with it; the card comes back without it."""
        return {"title": self.title, "body": self.body, "icon": self.icon, "items": self.items,
                "selected": self.selected, "progress": self.progress}

    def drawn(self) -> dict:
        """What the painter draws."""
        return dict(self.as_dict(), image=self.image, outline=self.outline)

    def speech(self) -> str:
        parts = [self.title, self.body, *(f"{i + 1}: {item}" for i, item in enumerate(self.items))]
        # Each part ends in its own stop (a question keeps its mark, an ellipsis is not doubled).
        return " ".join(p if p[-1] in ".?!…" else p + "." for p in (q.strip() for q in parts if q) if p)


def card_from(app: str, p: dict, now: float, seq: int) -> Card:
    title, body = p["title"].strip(), (p.get("body") or "").strip()
    items = list(p.get("items") or [])
    if not title or len(title) > TITLE_MAX:
        raise CardError(f"title must be 1..{TITLE_MAX} characters (got {len(title)})")
    if len(body) > BODY_MAX:
        raise CardError(f"body is {len(body)} characters; at most {BODY_MAX}")
    if len(items) > ITEMS_MAX or any(len(i) > ITEM_MAX for i in items):
        raise CardError(f"at most {ITEMS_MAX} items of {ITEM_MAX} characters each")
    if p.get("icon") is not None and p["icon"] not in ICONS:
        raise CardError(f"unknown icon {p['icon']!r} (known: {', '.join(ICONS)})")
    selected = p.get("selected")
    if selected is not None and not 0 <= selected < len(items):
        raise CardError(f"selected {selected} is not one of the {len(items)} items")
    progress = p.get("progress")
    if progress is not None and not 0.0 <= progress <= 1.0:
        raise CardError(f"progress {progress} is outside 0..1")
    ttl = p.get("ttl_s")
    if ttl is not None and not 0.0 < ttl <= 3600.0:
        raise CardError(f"ttl_s {ttl} is outside 0..3600")
    image = _picture(p["image"]) if p.get("image") is not None else None
    outline = _outline(p.get("outline"), image)
    return Card(app, p["id"], title, body, p.get("icon"), items, selected, progress,
                None if ttl is None else now + ttl, seq, image=image, outline=outline)


def _picture(data: bytes) -> np.ndarray:
    """A card's PNG or JPEG, decoded whole here: a truncated or lying file is the poster's error, not a
    crash of displayd when it is drawn."""
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # the header only
    except (OSError, ValueError) as exc:
        raise CardError(f"image is not a PNG or JPEG: {exc}") from None
    with image:
        if image.width > IMAGE_MAX[0] or image.height > IMAGE_MAX[1]:
            raise CardError(f"image is {image.width}x{image.height}; at most {IMAGE_MAX[0]}x{IMAGE_MAX[1]}")
        try:
            return np.asarray(image.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise CardError(f"image cannot be decoded: {exc}") from None


def _outline(flat: list | None, image: np.ndarray | None) -> tuple:
    """x, y, x, y... as points; over the image or a little past its edges (a pack held close is partly out
    of view, and its outline with it), never a stray number far off."""
    if flat is None:
        return ()
    if image is None:
        raise CardError("an outline is drawn over the card's image: it has none")
    low, high = OUTLINE_POINTS
    if len(flat) % 2 or not low <= len(flat) // 2 <= high:
        raise CardError(f"outline must be {low}..{high} points as x, y pairs (got {len(flat)} numbers)")
    h, w = image.shape[:2]
    points = tuple((float(x), float(y)) for x, y in zip(flat[::2], flat[1::2]))
    if not all(math.isfinite(x) and math.isfinite(y) and -w <= x <= 2 * w and -h <= y <= 2 * h for x, y in points):
        raise CardError(f"outline points must lie within a picture's size of its {w}x{h} pixels")
    return points


@dataclass(frozen=True)
class View:
    on: bool
    brightness: float
    hud: tuple  # (clock, batteries, capture, notice, unread): a key as well as the content
    card: Card | None
    toast: Card | None
    alert: tuple | None  # (title, body, tone)
    alert_app: str | None = None  # the app whose card is the alert, if it is one

    def shows(self, app: str) -> bool:
        return self.on and (app == self.alert_app or any(c is not None and c.app == app
                                                         for c in (self.card, self.toast)))

    @property
    def layers(self) -> list[str]:
        names = ["hud"] if self.on else []
        return names + [name for name in ("card", "toast", "alert") if self.on and getattr(self, name)]


class Scene:
    def __init__(self, cards_per_app: int):
        self.cards_per_app = cards_per_app
        self.cards: dict[str, OrderedDict[str, Card]] = {}
        self.seq = 0
        self.shell: dict = {"state": "booting", "focus": {}, "degraded": [], "brightness": 1.0, "foreground": None,
                            "display_on": True}
        self.notifications: dict = {"unread": 0}  # the notifications app's count, for the HUD
        self.user_level = 1.0  # the wearer's own brightness, times what the shell's state allows
        self.power: dict | None = None
        self.led: dict = {"lit": False, "fault": None}
        self.capture: dict = {"grants": [], "fault": None}
        self.wall_offset = time.time() - time.monotonic()  # expiries are kept as wall times: a restart's clock

    # --- what a restarted displayd takes back (bus.kept) ----------------------------------------
    def export(self) -> dict:
        cards = [{"app": c.app, "id": c.id, **c.as_dict(), "seq": c.seq, "with_claim": c.with_claim,
                  "expires_wall": None if c.expires is None else round(c.expires + self.wall_offset, 3)}
                 for cards in self.cards.values() for c in cards.values()]
        return {"cards": sorted(cards, key=lambda c: c["seq"]), "user_level": self.user_level}

    def restore(self, kept: dict, now: float) -> list[str]:
        """A predecessor's cards, each checked again as a posted card is; returns why any was left out."""
        refused = []
        self.user_level = min(1.0, max(0.1, float(kept.get("user_level") or 1.0)))
        for data in kept.get("cards") or []:
            try:
                expires = data.get("expires_wall")
                left = None if expires is None else expires - self.wall_offset - now
                if left is not None and left <= 0:
                    continue  # it would have gone meanwhile
                card = card_from(str(data["app"]), dict(data, ttl_s=None if left is None else min(left, 3600.0)),
                                 now, int(data["seq"]))
            except (CardError, KeyError, TypeError, ValueError, AttributeError) as exc:
                refused.append(f"{data.get('app') if isinstance(data, dict) else '?'}: {exc}")
                continue
            card.with_claim = bool(data.get("with_claim"))
            self.cards.setdefault(card.app, OrderedDict())[card.id] = card
            self.seq = max(self.seq, card.seq)
        return refused

    # --- cards ------------------------------------------------------------------------
    def post(self, app: str, payload: dict, now: float) -> Card:
        self.seq += 1
        card = card_from(app, payload, now, self.seq)
        card.with_claim = self._claim_of(app, transient=True) is not None  # a toast or an alert
        cards = self.cards.setdefault(app, OrderedDict())
        cards.pop(card.id, None)
        cards[card.id] = card
        while len(cards) > self.cards_per_app:
            cards.popitem(last=False)
        return card

    def clear(self, app: str, card_id: str | None) -> int:
        cards = self.cards.get(app, {})
        if card_id is None:
            return len(self.cards.pop(app, {}))
        return 1 if cards.pop(card_id, None) is not None else 0

    def drop_app(self, app: str) -> bool:
        """The app's process is gone: its content goes with it."""
        return self.cards.pop(app, None) is not None

    def expire(self, now: float) -> bool:
        """Cards past their ttl_s, and toasts and alerts whose claim has gone."""
        changed = False
        for app, cards in list(self.cards.items()):
            claimed = self._claim_of(app, transient=True) is not None
            for card_id in [c.id for c in cards.values() if c.expires is not None and c.expires <= now
                            or c.with_claim and not claimed]:
                del cards[card_id]
                changed = True
            if not cards:
                del self.cards[app]
        return changed

    def next_deadline(self, now: float) -> float | None:
        times = [c.expires for cards in self.cards.values() for c in cards.values() if c.expires is not None]
        return min(times, default=None)

    # --- what to show -----------------------------------------------------------------
    def view(self, now: float, wall: float) -> View:
        on = self.shell["display_on"]
        card = toast = None
        stack = self.shell["focus"].get("display", {}).get("stack", [])
        if stack:
            top = stack[0]
            if top["kind"] == "exclusive":
                card = self.newest(top["owner"])
            else:
                toast = self.newest(top["owner"])
                below = next((c for c in stack[1:] if c["kind"] == "exclusive"), None)
                card = self.newest(below["owner"]) if below else None
        alert, alert_app = self._system_alert(now), None
        if alert is None and (alerting := self._alert_card()) is not None:
            alert, alert_app = (alerting.title, alerting.body, "warning"), alerting.app
            toast = None if toast is alerting else toast
            card = None if card is alerting else card
        brightness = float(self.shell.get("brightness", 1.0)) * self.user_level
        return View(on, brightness, self._hud(wall), card, toast, alert, alert_app)

    def newest(self, app: str) -> Card | None:
        cards = self.cards.get(app)
        return max(cards.values(), key=lambda c: c.seq) if cards else None

    def _alert_card(self) -> Card | None:
        stack = self.shell["focus"].get("display", {}).get("stack", [])
        if stack and stack[0].get("class") == "system_alert":
            return self.newest(stack[0]["owner"])
        return None

    def _claim_of(self, app: str, transient: bool) -> dict | None:
        for claim in self.shell["focus"].get("display", {}).get("stack", []):
            if claim["owner"] == app and (claim["kind"] != "exclusive") == transient:
                return claim
        return None

    def _system_alert(self, now: float) -> tuple | None:
        fault = self.capture.get("fault") or self.led.get("fault")
        if fault:
            return ("Camera and mic off", f"The capture light is not working ({fault}), so nothing can be "
                                          "recorded until it is fixed.", "danger")
        if self.shell.get("shutting_down"):
            return ("Shutting down", "The battery is empty. What you were doing is saved and comes back "
                                     "at the next start.", "danger")
        if self.shell.get("swapping"):
            return ("Swap battery", f"Insert a charged battery. {self.bridge_left(now)} on the internal "
                                    "battery.", "warning")
        return None

    def bridge_left(self, now: float) -> str:
        """powerd's latest word, as `lens status` and the live view show it: it counts down by itself,
        once a second, while the bridge carries the glasses (a countdown of our own ran on while it did not)."""
        left = (self.power or {}).get("bridge", {}).get("time_s")
        if left is None:
            return "Time unknown"
        seconds = max(0, int(left))
        return f"{seconds // 60}:{seconds % 60:02d} left"

    def _hud(self, wall: float) -> tuple:
        clock = time.strftime("%H:%M", time.localtime(wall))
        batteries = []
        for battery in (self.power or {}).get("batteries", []):
            side = battery.get("side", "?")[:1].upper()
            if not battery["present"]:
                batteries.append(f"{side} --")
            else:
                batteries.append(f"{side} {battery['percent']:.0f}%{'+' if battery.get('charging') else ''}")
        capture = None
        if self.led.get("lit"):
            kinds = sorted({g.rsplit(":", 1)[-1] for g in self.capture.get("grants", [])})
            capture = " + ".join(kinds) if kinds else "indicator"
        degraded = self.shell.get("degraded") or []
        notice = f"Running without {', '.join(degraded)}" if degraded else None
        ended = (self.shell.get("privacy") or {}).get("ended")  # a capture the system stopped: the shell's word
        if ended:
            notice = f"{ended['resource'].capitalize()} stopped: {ended['why']}"
        unread = self.notifications.get("unread", 0)
        # The wake-phrase spotter hears the mic (the shell's word): a mark of its own, never taken for capture.
        listening = bool(self.capture.get("listening")) and capture is None
        return clock, tuple(batteries), capture, notice, f"{unread} new" if unread else None, listening
