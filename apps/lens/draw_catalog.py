"""Draws the sample catalog's product images (apps/lens/catalog/*.png) with Pillow.

The shipped catalog is made, not downloaded: flat product shots of six
made-up goods. Run `python -m apps.lens.draw_catalog` to draw them again;
the PNGs are committed so the app needs nothing at run time.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SIZE = 240
HERE = Path(__file__).resolve().parent / "catalog"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def _font(size: int):
    try:
        return ImageFont.truetype(FONT, size)
    except OSError:
        return ImageFont.load_default()


def can(d, body, band, word):
    d.rounded_rectangle((60, 20, 180, 220), 18, fill=body)
    d.rectangle((60, 95, 180, 140), fill=band)
    d.ellipse((60, 10, 180, 34), fill=(200, 200, 205))
    d.text((120, 118), word, fill=body, font=_font(26), anchor="mm")


def box(d, body, mark, word, ink):
    d.rectangle((40, 15, 200, 225), fill=body)
    d.ellipse((70, 90, 170, 190), fill=mark)
    d.text((120, 55), word, fill=ink, font=_font(30), anchor="mm")


def bottle(d, body, label, word, ink):
    d.rectangle((100, 10, 140, 50), fill=body)
    d.rounded_rectangle((70, 45, 170, 228), 24, fill=body)
    d.rectangle((70, 110, 170, 170), fill=label)
    d.text((120, 140), word, fill=ink, font=_font(24), anchor="mm")


def bar(d, body, stripe, word):
    d.rectangle((20, 70, 220, 170), fill=body)
    for x in range(20, 220, 40):
        d.polygon([(x, 70), (x + 20, 70), (x + 40, 170), (x + 20, 170)], fill=stripe)
    d.rectangle((70, 100, 170, 140), fill=(245, 240, 230))
    d.text((120, 120), word, fill=body, font=_font(24), anchor="mm")


def bag(d, body, stripe, word):
    d.polygon([(50, 30), (190, 30), (205, 225), (35, 225)], fill=body)
    d.rectangle((42, 120, 198, 150), fill=stripe)
    d.text((120, 80), word, fill=stripe, font=_font(26), anchor="mm")


DRAWINGS = {
    "cola": lambda d: can(d, (200, 20, 30), (250, 250, 250), "COLA"),
    "oats": lambda d: box(d, (240, 200, 40), (150, 90, 40), "OATS", (120, 60, 20)),
    "green-tea": lambda d: bottle(d, (40, 150, 60), (240, 240, 220), "TEA", (30, 110, 40)),
    "water": lambda d: bottle(d, (60, 140, 230), (200, 230, 250), "AQUA", (20, 70, 160)),
    "chocolate": lambda d: bar(d, (100, 40, 130), (140, 80, 170), "CHOC"),
    "coffee": lambda d: bag(d, (90, 55, 30), (240, 140, 30), "COFFEE"),
}


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, draw in DRAWINGS.items():
        image = Image.new("RGB", (SIZE, SIZE), (235, 235, 235))  # a product shot on a light backdrop
        draw(ImageDraw.Draw(image))
        image.save(HERE / f"{name}.png", optimize=True)


if __name__ == "__main__":
    main()
