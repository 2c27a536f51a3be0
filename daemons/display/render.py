"""Drawing the wearer's view: layers painted with Pillow, composited with numpy.

Each layer (the status HUD, the app's card, a toast, a system alert) is
painted into an RGBA image of its own and kept until what it shows changes;
the compositor blends the kept layers, in order, into the panel's RGB
framebuffer. A micro-OLED in glasses is see-through where it is black, so
the background is black and everything drawn is light.

Text goes through a real font (FreeType via Pillow): the wearer reads it
at a glance, in any language the font covers.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger("displayd")

WHITE, GREY, GREEN = (235, 235, 235, 255), (150, 150, 150, 255), (90, 230, 140, 255)
# A toast's or an alert's panel is opaque: what is under it (a card's text, its progress bar) must not show
# through the panel's own text.
AMBER, RED, PANEL = (255, 190, 60, 255), (255, 70, 60, 255), (28, 32, 36, 255)
LISTENING_MARK = "hey lens?"  # the HUD's words while the wake-phrase spotter listens (beside a green ring)
# What a system alert leaves of the light of the content under it: enough to see that the card is still
# there, too little to read across the alert.
UNDER_ALERT = 0.25
DIMMED_BY_ALERT = ("card", "toast")
ICONS = ("info", "warning", "check", "camera", "mic", "battery", "cart", "music", "message", "navigation")


@dataclass(frozen=True)
class Layer:
    name: str
    pixels: np.ndarray  # height x width x 4, uint8 RGBA: only the box where something was drawn
    x: int
    y: int
    bottom: int  # the last row its canvas laid out, drawn on or not: what goes below starts there


class Painter:
    def __init__(self, width: int, height: int, font_path: str):
        self.width, self.height = width, height
        self.unit = height / 480  # sizes below are for a 480-line panel
        self.font_name = font_path
        sizes = {"small": 20, "body": 26, "title": 34, "clock": 26}
        faces = {size: self._font(font_path, size) for size in sorted(set(sizes.values()))}  # one a size:
        self.fonts = {name: faces[size] for name, size in sizes.items()}  # each face maps the file again

    def _font(self, path: str, size: int) -> ImageFont.FreeTypeFont:
        px = max(8, round(size * self.unit))
        try:
            return ImageFont.truetype(path, px)
        except OSError:
            if self.font_name == path:
                log.warning("font %s cannot be read; using Pillow's own", path)
                self.font_name = "pillow-default"
            return ImageFont.load_default(px)

    def u(self, value: float) -> int:
        return round(value * self.unit)

    # --- the layers ------------------------------------------------------------------
    def hud(self, clock: str, batteries: list[str], capture: str | None, notice: str | None,
            unread: str | None = None, listening: bool = False) -> Layer:
        """The top bar: clock and unread notifications, the capture indicator's mirror (a red dot and what is
        captured) or, while the wake-phrase spotter hears the mic, its own mark (a green ring, "hey lens?":
        heard, not recorded); the batteries; a notice line under it."""
        bar = self.u(44)
        height = bar + (self.u(30) if notice else 0)
        image, draw = self._canvas(self.width, height)
        pad = self.u(12)
        draw.text((pad, bar // 2), clock, font=self.fonts["clock"], fill=WHITE, anchor="lm")
        if unread:
            left = pad + round(self.fonts["clock"].getlength(clock)) + self.u(16)
            draw.text((left, bar // 2), unread, font=self.fonts["small"], fill=AMBER, anchor="lm")
        right = self.width - pad
        for text in reversed(batteries):
            draw.text((right, bar // 2), text, font=self.fonts["small"], fill=GREY if "--" in text else WHITE,
                      anchor="rm")
            right -= round(self.fonts["small"].getlength(text)) + self.u(14)
        if capture:
            dot = self.u(9)
            cx = self.width // 2 - round(self.fonts["small"].getlength(capture)) // 2
            draw.ellipse((cx - 2 * dot - self.u(6), bar // 2 - dot, cx - self.u(6), bar // 2 + dot), fill=RED)
            draw.text((cx, bar // 2), capture, font=self.fonts["small"], fill=RED, anchor="lm")
        elif listening:
            dot, text = self.u(9), LISTENING_MARK
            cx = self.width // 2 - round(self.fonts["small"].getlength(text)) // 2
            draw.ellipse((cx - 2 * dot - self.u(6), bar // 2 - dot, cx - self.u(6), bar // 2 + dot), outline=GREEN,
                         width=max(1, self.u(3)))
            draw.text((cx, bar // 2), text, font=self.fonts["small"], fill=GREEN, anchor="lm")
        if notice:
            draw.text((pad, bar + self.u(14)), self._fit(notice, self.fonts["small"], self.width - 2 * pad),
                      font=self.fonts["small"], fill=AMBER, anchor="lm")
        return self._layer("hud", image, 0, 0)

    def card(self, card: dict, top: int) -> Layer:
        """The app's view: icon, title, body, a list with the selected item marked, progress."""
        pad = self.u(24)
        width, height = self.width, self.height - top
        image, draw = self._canvas(width, height)
        x, y = pad, self.u(12)
        if card.get("icon"):
            size = self.u(44)
            self._icon(draw, card["icon"], (x, y, x + size, y + size), GREEN)
            x += size + self.u(16)
        for line in self._wrap(card["title"], self.fonts["title"], width - x - pad, 2):
            draw.text((x, y), line, font=self.fonts["title"], fill=WHITE)
            y += self.u(42)
        y = max(y, self.u(64)) + self.u(6)
        for line in self._wrap(card.get("body") or "", self.fonts["body"], width - 2 * pad, 6):
            draw.text((pad, y), line, font=self.fonts["body"], fill=WHITE)
            y += self.u(32)
        if card.get("image") is not None:
            room = height - y - self.u(12) - (self.u(40) if card.get("progress") is not None else 0)
            y += self._picture(image, card["image"], card.get("outline") or (), (pad, y + self.u(6)),
                               width - 2 * pad, room) + self.u(12)
        selected = card.get("selected")
        for index, item in enumerate(card.get("items") or []):
            if y > height - self.u(70):
                break
            mark = index == selected
            if mark:
                draw.rounded_rectangle((pad - self.u(8), y - self.u(2), width - pad, y + self.u(32)),
                                       radius=self.u(6), outline=GREEN, width=max(1, self.u(2)))
            draw.text((pad, y), self._fit(item, self.fonts["body"], width - 3 * pad), font=self.fonts["body"],
                      fill=GREEN if mark else WHITE)
            y += self.u(38)
        if card.get("progress") is not None:
            bar_y = height - self.u(36)
            self._progress(draw, (pad, bar_y, width - pad, bar_y + self.u(14)), card["progress"])
        return self._layer("card", image, 0, top)

    def toast(self, card: dict) -> Layer:
        """A short message over the bottom of the view; its progress, if it has one, under its text."""
        pad, height = self.u(16), self.u(84)
        bar_y = height - self.u(6)
        if card.get("progress") is not None:
            height += self.u(16)
        width = self.width - 2 * self.u(24)
        image, draw = self._canvas(width, height)
        draw.rounded_rectangle((0, 0, width - 1, height - 1), radius=self.u(14), fill=PANEL)
        x = pad
        if card.get("icon"):
            size = self.u(36)
            self._icon(draw, card["icon"], (x, (height - size) // 2, x + size, (height + size) // 2), GREEN)
            x += size + self.u(12)
        draw.text((x, self.u(12)), self._fit(card["title"], self.fonts["body"], width - x - pad),
                  font=self.fonts["body"], fill=WHITE)
        if card.get("body"):
            draw.text((x, self.u(46)), self._fit(card["body"], self.fonts["small"], width - x - pad),
                      font=self.fonts["small"], fill=GREY)
        if card.get("progress") is not None:
            self._progress(draw, (x, bar_y, width - pad, bar_y + self.u(8)), card["progress"])
        return self._layer("toast", image, self.u(24), self.height - height - self.u(16))

    def alert(self, title: str, body: str, tone: str = "warning") -> Layer:
        """A system alert: on top of everything, in the middle, framed in its tone."""
        colour = RED if tone == "danger" else AMBER
        width = self.width - 2 * self.u(40)
        lines = self._wrap(body, self.fonts["body"], width - 2 * self.u(24), 4)
        height = self.u(96) + self.u(32) * len(lines)
        image, draw = self._canvas(width, height)
        draw.rounded_rectangle((0, 0, width - 1, height - 1), radius=self.u(16), fill=PANEL, outline=colour,
                               width=max(2, self.u(3)))
        size = self.u(40)
        self._icon(draw, "warning", (self.u(20), self.u(18), self.u(20) + size, self.u(18) + size), colour)
        draw.text((self.u(76), self.u(38)), self._fit(title, self.fonts["title"], width - self.u(100)),
                  font=self.fonts["title"], fill=colour, anchor="lm")
        y = self.u(76)
        for line in lines:
            draw.text((self.u(24), y), line, font=self.fonts["body"], fill=WHITE)
            y += self.u(32)
        return self._layer("alert", image, self.u(40), (self.height - height) // 2)

    # --- helpers ----------------------------------------------------------------------
    def _picture(self, canvas: Image.Image, pixels: np.ndarray, outline, at: tuple[int, int], width: int,
                 room: int) -> int:
        """A card's picture at the panel's scale, smaller if it does not fit, its outline drawn over it (and
        cut off at its edges, as the thing outlined is); returns the height it took."""
        h, w = pixels.shape[:2]
        k = min(self.unit, width / w, max(room, 0) / h)
        size = (round(w * k), round(h * k))
        if min(size) < 1:
            return 0
        picture = Image.fromarray(pixels).resize(size, Image.BILINEAR)
        if outline:
            ImageDraw.Draw(picture).polygon([(x * k, y * k) for x, y in outline], outline=GREEN[:3],
                                            width=max(2, self.u(3)))
        canvas.paste(picture, at)
        return size[1]

    def _progress(self, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], progress: float) -> None:
        x0, y0, x1, y1 = box
        radius = (y1 - y0) // 2
        draw.rounded_rectangle(box, radius=radius, outline=GREY, width=max(1, self.u(2)))
        filled = x0 + round((x1 - x0) * max(0.0, min(1.0, progress)))
        if filled > x0 + self.u(4):
            draw.rounded_rectangle((x0, y0, filled, y1), radius=radius, fill=GREEN)

    def _canvas(self, width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        return image, ImageDraw.Draw(image)

    def _layer(self, name: str, image: Image.Image, x: int, y: int) -> Layer:
        # Kept until what it shows changes, so only what was drawn is kept: a card of two lines of text
        # is a tenth of the panel, not all of it (1.1 MiB at 640x480).
        box = image.getbbox() or (0, 0, 0, 0)  # RGBA: the box of every pixel that is not transparent
        return Layer(name, np.asarray(image.crop(box)), x + box[0], y + box[1], y + image.height)

    def _fit(self, text: str, font, width: int) -> str:
        if font.getlength(text) <= width:
            return text
        while text and font.getlength(text + "…") > width:
            text = text[:-1]
        return text + "…"

    def _wrap(self, text: str, font, width: int, max_lines: int) -> list[str]:
        lines: list[str] = []
        for paragraph in text.splitlines() or [""]:
            line = ""
            for word in paragraph.split():
                candidate = f"{line} {word}".strip()
                if font.getlength(candidate) <= width or not line:
                    line = candidate
                else:
                    lines.append(line)
                    line = word
            lines.append(line)
        if len(lines) > max_lines:
            lines = lines[:max_lines]
            lines[-1] = self._fit(lines[-1] + " …", font, width)
        return [self._fit(line, font, width) for line in lines if line or len(lines) == 1]

    def _icon(self, draw: ImageDraw.ImageDraw, name: str, box: tuple[int, int, int, int], colour) -> None:
        """A few plain pictograms, drawn so they need no icon font."""
        x0, y0, x1, y1 = box
        w = max(2, (x1 - x0) // 12)
        cx, cy, r = (x0 + x1) // 2, (y0 + y1) // 2, (x1 - x0) // 2
        if name == "warning":
            draw.polygon([(cx, y0), (x1, y1), (x0, y1)], outline=colour, width=w)
            draw.line((cx, y0 + r * 0.7, cx, y1 - r * 0.6), fill=colour, width=w)
            draw.ellipse((cx - w, y1 - r * 0.4 - w, cx + w, y1 - r * 0.4 + w), fill=colour)
        elif name == "check":
            draw.line([(x0 + r * 0.3, cy), (cx - r * 0.2, y1 - r * 0.4), (x1 - r * 0.2, y0 + r * 0.4)],
                      fill=colour, width=w * 2, joint="curve")
        elif name == "camera":
            draw.rounded_rectangle((x0, y0 + r * 0.5, x1, y1 - r * 0.2), radius=w * 2, outline=colour, width=w)
            draw.ellipse((cx - r * 0.4, cy - r * 0.1, cx + r * 0.4, cy + r * 0.7), outline=colour, width=w)
        elif name == "mic":
            draw.rounded_rectangle((cx - r * 0.35, y0, cx + r * 0.35, cy + r * 0.3), radius=r * 0.35,
                                   outline=colour, width=w)
            draw.arc((cx - r * 0.7, cy - r * 0.4, cx + r * 0.7, cy + r * 0.7), 0, 180, fill=colour, width=w)
            draw.line((cx, cy + r * 0.7, cx, y1), fill=colour, width=w)
        elif name == "battery":
            draw.rectangle((x0, y0 + r * 0.5, x1 - r * 0.25, y1 - r * 0.5), outline=colour, width=w)
            draw.rectangle((x1 - r * 0.25, cy - r * 0.2, x1, cy + r * 0.2), fill=colour)
        elif name == "cart":
            draw.line([(x0, y0 + r * 0.3), (x0 + r * 0.4, y0 + r * 0.3), (x0 + r * 0.7, cy + r * 0.4),
                       (x1 - r * 0.2, cy + r * 0.4), (x1, y0 + r * 0.6), (x0 + r * 0.5, y0 + r * 0.6)],
                      fill=colour, width=w)
            for wx in (x0 + r * 0.8, x1 - r * 0.4):
                draw.ellipse((wx - w * 1.5, y1 - r * 0.4 - w * 1.5, wx + w * 1.5, y1 - r * 0.4 + w * 1.5), fill=colour)
        elif name == "music":
            draw.line((cx + r * 0.3, y0 + r * 0.2, cx + r * 0.3, y1 - r * 0.5), fill=colour, width=w)
            draw.ellipse((cx - r * 0.4, y1 - r * 0.8, cx + r * 0.35, y1 - r * 0.2), fill=colour)
        elif name == "message":
            draw.rectangle((x0, y0 + r * 0.4, x1, y1 - r * 0.4), outline=colour, width=w)
            draw.line([(x0, y0 + r * 0.4), (cx, cy + r * 0.1), (x1, y0 + r * 0.4)], fill=colour, width=w)
        elif name == "navigation":
            angle = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi * 0.75, math.pi / 4)]
            draw.polygon(angle, fill=colour)
        else:  # info
            draw.ellipse(box, outline=colour, width=w)
            draw.line((cx, cy - r * 0.1, cx, cy + r * 0.5), fill=colour, width=w)
            draw.ellipse((cx - w, cy - r * 0.45 - w, cx + w, cy - r * 0.45 + w), fill=colour)


def compose(layers: list[Layer], width: int, height: int, brightness: float = 1.0) -> np.ndarray:
    """Blend layers, first at the bottom, over black into a new height x width x 3 uint8 frame. Under a
    system alert the card and the toast keep only UNDER_ALERT of their light (the HUD all of it)."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    alerting = any(layer.name == "alert" for layer in layers)
    for layer in layers:
        h, w = layer.pixels.shape[:2]
        y0, x0 = max(0, layer.y), max(0, layer.x)
        y1, x1 = min(height, layer.y + h), min(width, layer.x + w)
        if y1 <= y0 or x1 <= x0:
            continue
        src = layer.pixels[y0 - layer.y: y1 - layer.y, x0 - layer.x: x1 - layer.x]
        alpha = src[..., 3:4].astype(np.uint16)
        colour = src[..., :3]
        if alerting and layer.name in DIMMED_BY_ALERT:  # the colour, not the alpha: a dimmed toast still hides
            colour = (colour * UNDER_ALERT).astype(np.uint8)  # the card under it
        dst = frame[y0:y1, x0:x1]
        dst[...] = ((colour * alpha + dst * (255 - alpha) + 127) // 255).astype(np.uint8)
    if brightness < 1.0:
        np.multiply(frame, max(0.0, brightness), out=frame, casting="unsafe")
    return frame
