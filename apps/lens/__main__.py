"""The lens app: point at an item, tap (or ask "what is this?"), see its name and price (heard on G1).

One look takes camera focus (the LED lit first), reads a preview frame
straight from the shared-memory ring (a grey copy is all it keeps), and
gives the camera back before the answer is worked out. The offline catalog
(apps/lens/catalog, indexed once at start and again whenever catalog.toml
changes, as `lens lens index` makes it) answers unless an online shopping
API is configured there; below the catalog's confidence it says "not sure"
rather than guess.
"""

from __future__ import annotations

import io
import logging
import os
import threading

import numpy as np
from PIL import Image

from apps.lens.catalog import Answer, Catalog, load, open_backend
from apps.sdk.app import App, Refused
from bus.errors import BusError
from frames.ring import FrameOverrun
from policies.checker import PolicyError

log = logging.getLogger("lens")
TRIES = 5  # frames tried when the writer keeps overtaking the reader
SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
SPOKEN = {"CNY": "yuan", "USD": "dollars", "EUR": "euros", "GBP": "pounds", "JPY": "yen"}
# The card's preview of what the camera saw: small enough for a corner of the card and a few KiB of JPEG on
# the bus (displayd takes at most 320x240), big enough to see which thing was outlined.
PREVIEW_WIDTH = 240
PREVIEW_QUALITY = 75


def price_text(answer: Answer) -> str:
    return f"{SYMBOLS.get(answer.currency, answer.currency + ' ')}{answer.price:.2f}"


class Preview:
    """What the camera saw, as the card shows it: a small JPEG, and the scale from the view to it."""

    def __init__(self, pixels: np.ndarray):
        height, width = pixels.shape[:2]
        self.scale = PREVIEW_WIDTH / width
        size = (PREVIEW_WIDTH, max(1, round(height * self.scale)))
        small = Image.fromarray(np.ascontiguousarray(pixels[..., :3])).resize(size, Image.BOX)
        out = io.BytesIO()
        small.save(out, "JPEG", quality=PREVIEW_QUALITY)
        self.jpeg = out.getvalue()

    def card(self, outline: tuple = ()) -> dict:
        """The card's image, and the outline (view pixels) of what was recognised over it, when it was."""
        fields = {"image": self.jpeg}
        if outline:
            fields["outline"] = [round(c * self.scale, 1) for point in outline for c in point]
        return fields


class Lens(App):
    def __init__(self, app_id: str, catalog: Catalog, runtime=None, apps=None):
        super().__init__(app_id, runtime, apps)
        self.catalog = catalog
        self.backend = open_backend(catalog)
        self.looking = False

    def fresh(self) -> None:
        """The catalog indexed again if catalog.toml changed since (`lens lens index` checks it first)."""
        path = self.catalog.path
        try:
            if path is None or os.stat(path).st_mtime == self.catalog.stamp:
                return
            catalog = load(path.parent)
        except (OSError, PolicyError) as exc:
            log.warning("the catalog changed but cannot be read; the old one answers: %s", exc)
            return
        self.catalog, self.backend = catalog, open_backend(catalog)
        log.info("catalog indexed again: %d items, %d skipped", len(catalog.items), len(catalog.skipped))

    def on_foreground(self) -> None:
        if not self.has_display:
            return  # G1: the answer is what is worth hearing, not the instructions each time
        try:
            self.focus("display", reason="the lens")
            self.card("lens", "Lens", "Point at an item and tap.")
        except (Refused, BusError) as exc:
            log.warning("cannot show the lens: %s", exc)

    def on_gesture(self, gesture: str) -> None:
        if gesture == "tap":
            self.look()

    def on_assistant(self, action: str, args: dict) -> str | None:
        if action != "identify":
            return None
        self.come_forward()
        self.look()  # what it shows (G1: says) is the answer
        return None

    def look(self) -> None:
        if self.looking:
            self.card("lens", "Looking…", "Already looking: hold still.")
            return
        self.looking = True
        try:
            if self.has_display:
                self.card("lens", "Looking…", "Hold still.")
            self.fresh()
            seen, preview = self.glance()
            # Off the loop: an online shop may take seconds, and the app must keep beating meanwhile.
            answer = self.work(self.backend.identify, seen, timeout=self.backend.patience_s, what="the answer")
        except (Refused, BusError, TimeoutError) as exc:
            self.card("lens", "Cannot look", str(exc))
            return
        finally:
            self.looking = False
        if answer is None:  # what it saw, to aim better by, but no outline: nothing was recognised
            self.card("lens", "Not sure", "Not sure what this is. Hold it closer, in good light, and tap again.",
                      **(preview.card() if self.has_display else {}))
            return
        self.publish_answer(answer, preview)

    def glance(self) -> tuple[object, Preview]:
        """What the backend needs from one frame, read in place on the ring, and the card's preview of it; the
        camera given back after."""
        self.open_camera("the lens: what is this?")
        try:
            for _ in range(TRIES):
                try:
                    with self.next_frame() as pixels:
                        seen, preview = self.backend.look(pixels), Preview(pixels)
                    return seen, preview
                except FrameOverrun:
                    continue  # the frame changed under us: what was worked out from it is thrown away
            raise Refused(f"every one of {TRIES} frames was overwritten while it was read")
        finally:
            self.close_camera()

    def publish_answer(self, answer: Answer, preview: Preview) -> None:
        sure = f"{round(answer.confidence * 100)}% sure" if answer.source == "catalog" else "from the shop"
        sure += {"barcode": ", by its barcode", "text": ", by its name", "features+text": ", by its look and name"}.get(
            answer.how, "")
        log.info("%s at %s", answer.name, answer.outline)
        if self.has_display:
            self.card("lens", answer.name, f"{price_text(answer)} {answer.currency}  ·  {sure}",
                      **preview.card(answer.outline))
        else:  # the card is said on G1: make it sound like speech
            words = SPOKEN.get(answer.currency, answer.currency)
            self.card("lens", answer.name, f"{answer.price:.2f} {words}.")


def main() -> int:
    try:
        catalog = load()
    except PolicyError as exc:
        print(f"lens: {exc}")
        return 2
    # Tesseract's models (a few hundred ms to load, seconds on a loaded machine) are loaded beside the loop
    # now, not in the first look that needs them; that look waits on the reader's lock if it comes first.
    threading.Thread(target=warm, args=(catalog,), name="lens-ocr-warm", daemon=True).start()
    Lens("lens", catalog).run()
    return 0


def warm(catalog: Catalog) -> None:
    if catalog.index.reader is not None:
        catalog.index.reader.read(np.full((32, 32), 255, np.uint8))


if __name__ == "__main__":
    raise SystemExit(main())
