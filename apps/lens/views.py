"""Views of catalog packs the way the glasses' camera sees them, for the benchmark and the tests (the app
never uses this): held up by a hand at any size, turned, tilted, stretched, blurred, noisy, compressed, in
poor light, partly covered, in front of clutter; and scenes with no catalog pack in them.

Each condition is a function (pack, rng) -> 640x480 RGB array; CONDITIONS is their table.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from frames.held_up import held_up

WIDTH, HEIGHT = 640, 480


def clutter(rng: np.random.Generator) -> Image.Image:
    """A busy shelf or desk: blocks, discs and lines of every colour, some text."""
    image = Image.new("RGB", (WIDTH, HEIGHT), tuple(int(c) for c in rng.integers(40, 200, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(25, 60))):
        x0, y0 = int(rng.integers(-40, WIDTH)), int(rng.integers(-40, HEIGHT))
        x1, y1 = x0 + int(rng.integers(10, 180)), y0 + int(rng.integers(10, 180))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(4)
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif kind == 1:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif kind == 2:
            draw.line((x0, y0, x1, y1), fill=fill, width=int(rng.integers(2, 10)))
        else:
            draw.text((x0, y0), "".join(chr(int(c)) for c in rng.integers(65, 91, 8)), fill=fill)
    return image


def _frame(pack: Image.Image, rng, scale=(0.7, 1.0), rotate=8.0, tilt=8.0, background=None, shift=30):
    frame = held_up(pack, WIDTH, HEIGHT, float(rng.uniform(*scale)), float(rng.uniform(-rotate, rotate)),
                    float(rng.uniform(-tilt, tilt)))
    if background is not None:  # the pack (not the wall around it) over the background, a little off centre
        wall = np.all(np.asarray(frame) == (96, 96, 96), axis=2)
        out = np.asarray(background).copy()
        dx, dy = (int(d) for d in rng.integers(-shift, shift + 1, 2))
        src = np.roll(np.asarray(frame), (dy, dx), axis=(0, 1))
        keep = ~np.roll(wall, (dy, dx), axis=(0, 1))
        out[keep] = src[keep]
        return out
    return np.asarray(frame)


def _light(pixels: np.ndarray, gain: float, rng) -> np.ndarray:
    return np.clip(pixels.astype(np.float32) * gain + rng.normal(0, 3, pixels.shape), 0, 255).astype(np.uint8)


def plain(pack, rng):
    return _frame(pack, rng)


def scale(pack, rng):
    return _frame(pack, rng, scale=(0.25, 1.5))


def rotation(pack, rng):
    return _frame(pack, rng, rotate=45)


def perspective(pack, rng):
    return _frame(pack, rng, tilt=40)


def stretch(pack, rng):
    w, h = pack.size
    k = float(rng.uniform(0.7, 1.4))
    return _frame(pack.resize((max(1, round(w * k)), h)), rng)


def blur(pack, rng):
    """Motion blur: a line kernel at a random angle, 5 to 11 pixels long."""
    import cv2
    length = int(rng.integers(5, 12))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2] = 1.0 / length
    turn = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1)
    kernel = cv2.warpAffine(kernel, turn, (length, length))
    return cv2.filter2D(_frame(pack, rng), -1, kernel / max(kernel.sum(), 1e-6))


def noise(pack, rng):
    pixels = _frame(pack, rng).astype(np.float32)
    return np.clip(pixels + rng.normal(0, rng.uniform(8, 20), pixels.shape), 0, 255).astype(np.uint8)


def jpeg(pack, rng):
    out = io.BytesIO()
    Image.fromarray(_frame(pack, rng)).save(out, "JPEG", quality=int(rng.integers(15, 40)))
    return np.asarray(Image.open(out).convert("RGB"))


def dim(pack, rng):
    return _light(_frame(pack, rng), float(rng.uniform(0.25, 0.45)), rng)


def bright(pack, rng):
    return _light(_frame(pack, rng), float(rng.uniform(1.4, 1.9)), rng)


def occluded(pack, rng):
    """Up to 40 % of the pack behind a hand or another thing, from one side."""
    pixels = _frame(pack, rng).copy()
    wall = np.all(pixels == (96, 96, 96), axis=2)
    ys, xs = np.nonzero(~wall)
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    share = float(rng.uniform(0.15, 0.4))
    colour = rng.integers(0, 256, 3)
    side = rng.integers(4)
    if side == 0:
        pixels[top:top + int((bottom - top) * share)] = colour
    elif side == 1:
        pixels[bottom - int((bottom - top) * share):bottom + 1] = colour
    elif side == 2:
        pixels[:, left:left + int((right - left) * share)] = colour
    else:
        pixels[:, right - int((right - left) * share):right + 1] = colour
    return pixels


def cluttered(pack, rng):
    return _frame(pack, rng, scale=(0.4, 0.9), background=clutter(rng), shift=60)


def everything(pack, rng):
    """A bit of each at once: smaller, turned, tilted, on clutter, noisy, compressed."""
    pixels = _frame(pack, rng, scale=(0.4, 1.1), rotate=25, tilt=25, background=clutter(rng), shift=40)
    pixels = _light(pixels, float(rng.uniform(0.6, 1.3)), rng)
    out = io.BytesIO()
    Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(0.8)).save(out, "JPEG", quality=50)
    return np.asarray(Image.open(out).convert("RGB"))


CONDITIONS = {f.__name__: f for f in (plain, scale, rotation, perspective, stretch, blur, noise, jpeg, dim, bright,
                                      occluded, cluttered, everything)}


def nothing(rng: np.random.Generator, stranger: Image.Image | None = None) -> np.ndarray:
    """No catalog pack: clutter, a bare wall, or a pack the catalog does not have (drawn alike)."""
    if stranger is not None:
        return _frame(stranger, rng, scale=(0.5, 1.2), rotate=20, tilt=20, background=clutter(rng))
    if rng.random() < 0.2:
        return _light(np.full((HEIGHT, WIDTH, 3), 96, np.uint8), 1.0, rng)
    return np.asarray(clutter(rng))
