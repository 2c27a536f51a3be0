"""The notifications app: the phone's notifications as a toast and a chime, and a list on demand.

A notification from the phone (``phone.notification``) becomes a toast over
whatever is shown (transient display focus at the ``notification`` class;
spoken on G1) and a chime that ducks the music under it (transient_may_duck
on audio_out, given back when the chime has played). The count and the
unread count are latched on ``notifications.state`` for the HUD. "Read my
notifications" (the assistant) or a swipe while in front shows the list
(G1: reads it) and marks everything read.

A phone (or an app: any node may publish ``phone.notification``) can send
faster than toasts and chimes go by: what arrives is only kept (the newest
``KEEP``, each field cut to ``LIMITS``) and one alert (count, toast, chime)
is made for all that came meanwhile, from the loop once the backlog is in.
A flood costs a few kilobytes, not a toast and a chime each.

The list and the unread count are kept (``bus.kept``, in the app's own state
directory) at each alert and each reading: a restarted app, or the glasses
after a reboot, still has them.
"""

from __future__ import annotations

from collections import deque

from apps.sdk.app import App, Refused
from bus.envelope import Message
from bus.errors import BusError

KEEP = 50
LIMITS = {"id": 64, "source": 64, "title": 200, "body": 1000}  # characters kept of each field
CLASS = "notification"  # policies/focus.toml [roles]: over the foreground app, under the assistant
KEPT = {"items": "list[dict]", "unread": "int"}
UNREAD_MAX = 2**31 - 1


class Notifications(App):
    def __init__(self, app_id: str, runtime=None, apps=None):
        super().__init__(app_id, runtime, apps)
        self.items: deque[dict] = deque(maxlen=KEEP)
        self.unread = 0
        self.chiming = False
        self.arrived = 0  # since the last alert
        self.node.subscribe("phone.notification", self.on_notification)
        self.node.subscribe("audio.played", self.on_played)
        self.store = self.kept(KEPT)
        self.restore(self.store.load() or {})

    def restore(self, kept: dict) -> None:
        """What the last process of this app kept, each item cut to LIMITS again (the file is input too)."""
        for item in reversed((kept.get("items") or [])[:KEEP]):
            if type(item) is dict and all(type(item.get(k)) is str for k in ("source", "title")):
                self.items.appendleft({k: v[:LIMITS[k]] for k, v in item.items() if k in LIMITS and type(v) is str})
        # Not cut to the list: 1,000 unread of which the newest KEEP are listed stay 1,000 unread (what the live
        # app said); bounded only so that a hostile file cannot make a number the bus cannot carry.
        self.unread = min(max(0, kept.get("unread") or 0), UNREAD_MAX)

    def on_start(self) -> None:
        self.publish_state()

    def on_notification(self, msg: Message) -> None:
        self.items.appendleft({k: v[:LIMITS[k]] for k, v in msg.payload.items() if k in LIMITS and v is not None})
        self.unread += 1
        self.arrived += 1
        if self.arrived == 1:
            self.node.after(0.0, self.alert)  # after what has already arrived: one alert for all of it

    def alert(self) -> None:
        latest, more, self.arrived = self.items[0], self.arrived - 1, 0
        self.publish_state()
        self.chime()
        title = f"{latest['source']}: {latest['title']}" + (f" (+{more} more)" if more else "")
        try:
            self.toast(title, latest.get("body"), cls=CLASS)
        except (Refused, BusError):
            self.speak(title)  # never silent: said when it cannot be shown

    def chime(self) -> None:
        try:
            self.focus("audio_out", "transient_may_duck", "chime", cls=CLASS)
            self.play("chime", "chime")
            self.chiming = True
        except (Refused, BusError):
            self._release_quietly("audio_out")  # no chime this time; the toast still says it

    def on_played(self, msg: Message) -> None:
        p = msg.payload
        if p["owner"] == self.id and p["id"] == "chime" and self.chiming:
            self.chiming = False
            self._release_quietly("audio_out")  # the music comes back up

    def on_assistant(self, action: str, args: dict) -> str | None:
        self.show_list()  # the list shown (G1: read) is the answer
        return None

    def on_gesture(self, gesture: str) -> None:
        if gesture in ("swipe_forward", "swipe_back", "tap"):
            self.show_list()

    def show_list(self) -> None:
        items = list(self.items)
        self.unread = 0
        self.publish_state()
        if not items:
            self.toast("No notifications", cls=CLASS)
            return
        if not self.has_display:
            self.speak(". ".join(f"{i['source']}: {i['title']}" for i in items[:5]))
            return
        try:
            self.focus("display", "transient", "the list", cls=CLASS)
            self.card("list", f"{len(items)} notifications", items=[f"{i['source']}: {i['title']}"
                                                                    for i in items[:8]], ttl_s=8.0)
            self.node.after(8.0, lambda: self._release_quietly("display"))
        except (Refused, BusError) as exc:
            self.speak(f"{len(items)} notifications; cannot show them: {exc}")

    def publish_state(self) -> None:
        self.store.save({"items": list(self.items), "unread": self.unread})
        latest = f"{self.items[0]['source']}: {self.items[0]['title']}" if self.items else None
        self.node.publish("notifications.state", count=len(self.items), unread=self.unread, latest=latest)


def main() -> int:
    Notifications("notifications").run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
