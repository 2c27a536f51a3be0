"""Receipts: an app is told when the wearer really saw its card, and when the card stopped being seen.

A card's request is answered at once (``shown``: whether it is up now, or kept for when its app has the
display), but what the wearer saw is decided later, frame by frame: the card is drawn in the next frame,
or covered when another app takes the display or the panel goes dark. So after each frame displayd compares
the cards in view with the last frame's and tells each app whose card came into view (the frame's number
and time: ``display.shown``, shown true) or went out of view while still posted (shown false, and why). A
card taken down (cleared, timed out) gets no receipt: its app knows, or asked for it. Only the app itself
reads its receipts (the topic's readers).
"""

from __future__ import annotations

from daemons.display.scene import Scene, View


class Receipts:
    def __init__(self):
        self.seen: dict[str, tuple[str, int]] = {}  # app -> (card id, card seq) in view at the last frame

    def after_frame(self, view: View, scene: Scene) -> list[dict]:
        """The receipts this frame makes: {app, id, shown, why}; the caller adds the frame and its time."""
        visible = {c.app: (c.id, c.seq) for c in (view.card, view.toast) if c is not None and view.on}
        receipts = [{"app": app, "id": key[0], "shown": True, "why": "shown"}
                    for app, key in visible.items() if self.seen.get(app) != key]
        for app, (card_id, _) in self.seen.items():
            if app not in visible and card_id in scene.cards.get(app, {}):
                receipts.append({"app": app, "id": card_id, "shown": False, "why": covered(view)})
        self.seen = visible
        return receipts


def covered(view: View) -> str:
    if not view.on:
        return "the display is off"
    if view.alert is not None:
        return "covered by an alert"
    return "the display went to another app"
