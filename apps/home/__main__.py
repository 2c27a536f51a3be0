"""The home app: the resting view (time, both batteries, notifications, the capture LED) and the launcher.

Swipe forward or back to open the launcher and move through the apps this
model offers; tap opens the one chosen, double tap closes the list. On S1
the resting view is a card, kept current while home is in front; on G1,
which has no display, the launcher is spoken one app at a time and the
resting view stays silent (the wearer asks the assistant for the time).
"""

from __future__ import annotations

import time

from apps.sdk.app import App, Refused
from bus.envelope import Message
from bus.errors import BusError

CLOCK_PERIOD_S = 60.0  # the card shows HH:MM
MINUTE_LATE_S = 0.05  # the card's minute turns this long after the wall clock's (the timer's slack)
MOVES = {"swipe_forward": 1, "swipe_back": -1}


def until_next_minute(wall: float) -> float:
    """Seconds from ``wall`` until just after the minute shown changes: home's clock wakes once a minute,
    when the card would change, not every 20 s in case it had."""
    return CLOCK_PERIOD_S - wall % CLOCK_PERIOD_S + MINUTE_LATE_S


def battery_line(power: dict) -> str:
    """Both batteries, with the time each has left: more than the HUD's corner has room for."""
    parts = []
    for b in power.get("batteries", []):
        side = b.get("side", b["name"]).title()
        if not b["present"]:
            parts.append(f"{side}: out")
            continue
        left = b.get("time_to_empty_s")
        hours = f", {int(left // 3600)} h {int(left % 3600 // 60):02d}" if left else ""
        parts.append(f"{side} {round(b['percent'])}%{' charging' if b.get('charging') else hours}")
    return "  ·  ".join(parts) or "Batteries unknown"


class Home(App):
    def __init__(self, app_id: str, runtime=None, apps=None):
        super().__init__(app_id, runtime, apps)
        self.latest: dict[str, dict] = {}
        self.choice: int | None = None  # the launcher's selection; None: the resting view
        self.clock = None
        self.shown: tuple | None = None  # the card last sent: a battery tick that changes nothing sends nothing
        for topic in ("shell.apps", "power.state", "notifications.state", "privacy.indicator"):
            self.node.subscribe(topic, self.on_news)

    def launchable(self) -> list[tuple[str, str]]:
        apps = (self.latest.get("shell.apps") or {}).get("apps", {})
        return [(app, a["name"]) for app, a in apps.items() if app != self.id and a["state"] != "hidden"]

    def on_news(self, msg: Message) -> None:
        self.latest[msg.topic] = msg.payload
        if self.foreground and self.has_display and msg.topic != "shell.apps":
            self.show()

    def on_foreground(self) -> None:
        self.choice = self.shown = None
        if not self.has_display:
            return
        try:
            self.take_display("home")
        except (Refused, BusError) as exc:
            self.speak(f"Home: {exc}")
            return
        self.tick()

    def tick(self) -> None:
        self.show()
        self.clock = self.node.after(until_next_minute(time.time()), self.tick)

    def on_background(self) -> None:
        if self.clock is not None:
            self.clock.cancel()
            self.clock = None
        self.choice = None

    def on_gesture(self, gesture: str) -> None:
        apps = self.launchable()
        if gesture in MOVES and apps:
            self.choice = 0 if self.choice is None else (self.choice + MOVES[gesture]) % len(apps)
            self.show()
        elif gesture == "tap" and self.choice is not None and apps:
            app, name = apps[min(self.choice, len(apps) - 1)]
            self.choice = None
            try:
                self.start_app(app)
            except (Refused, BusError) as exc:
                self.toast(f"Cannot open {name}", str(exc))
        elif gesture == "double_tap" and self.choice is not None:
            self.choice = None
            self.show()

    def show(self) -> None:
        try:
            if self.choice is not None:
                apps = self.launchable()
                app, name = apps[self.choice % len(apps)]
                if not self.has_display:
                    self.speak(f"{name}. Tap to open.", interrupt=True)
                    return
                self.put("Apps", None, items=[n for _, n in apps], selected=self.choice % len(apps))
            elif self.has_display:
                self.put(time.strftime("%H:%M"), self.resting_body())
        except (Refused, BusError) as exc:
            self.speak(f"Home: {exc}")

    def put(self, title: str, body: str | None, **extra) -> None:
        card = (title, body, tuple(extra.get("items", ())), extra.get("selected"))
        if card != self.shown:
            self.card("home", title, body, **extra)
            self.shown = card

    def resting_body(self) -> str:
        lines = [battery_line(self.latest.get("power.state") or {})]
        notes = self.latest.get("notifications.state") or {}
        if notes.get("unread"):
            lines.append(f"{notes['unread']} new: {notes['latest']}")
        if (self.latest.get("privacy.indicator") or {}).get("on"):
            lines.append("● camera or mic in use")
        return "\n".join(lines)


def main() -> int:
    Home("home").run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
