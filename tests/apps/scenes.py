"""Camera scenes for the lens app: catalog products held up in front of a background, and scenes with no
product in them, drawn with numpy and Pillow and varied by a seeded random generator."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT = 640, 480


def background(kind: str, rng: np.random.Generator) -> Image.Image:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    if kind == "table":  # warm wood grain
        base = np.array([150, 110, 80], np.float32) * (0.85 + 0.1 * np.sin(y / 9 + rng.uniform(0, 6)))[..., None]
    elif kind == "desk":  # dark grey with a light fall-off
        base = np.array([60, 62, 66], np.float32) * (1.2 - x / WIDTH * 0.4)[..., None]
    elif kind == "wall":  # plain off-white wall
        base = np.full((HEIGHT, WIDTH, 3), (200, 196, 188), np.float32)
    elif kind == "outdoors":  # sky over grass
        base = np.where((y < HEIGHT * 0.55)[..., None], np.array([120, 170, 230], np.float32),
                        np.array([70, 140, 60], np.float32)) * np.ones((HEIGHT, WIDTH, 1), np.float32)
    elif kind == "clutter":  # shapes of every colour
        image = Image.new("RGB", (WIDTH, HEIGHT), (90, 90, 90))
        draw = ImageDraw.Draw(image)
        for _ in range(40):
            x0, y0 = rng.integers(0, WIDTH), rng.integers(0, HEIGHT)
            draw.rectangle((x0, y0, x0 + rng.integers(20, 160), y0 + rng.integers(20, 160)),
                           fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        return image
    else:
        raise ValueError(kind)
    noise = rng.normal(0, 6, (HEIGHT, WIDTH, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def held_up(product: Image.Image, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The product in the middle of the view, a little off centre, bigger or smaller, in other light."""
    scene = background(kind, rng)
    side = int(HEIGHT * rng.uniform(0.65, 0.85))
    item = product.resize((side, side), Image.BILINEAR)
    backdrop = np.asarray(item, np.int16)
    mask = Image.fromarray(((np.abs(backdrop - 235).max(axis=2) > 20) * 255).astype(np.uint8))
    dx, dy = rng.integers(-30, 31, 2)
    scene.paste(item, ((WIDTH - side) // 2 + int(dx), (HEIGHT - side) // 2 + int(dy)), mask)
    pixels = np.asarray(scene, np.float32) * rng.uniform(0.8, 1.15) + rng.normal(0, 4, (HEIGHT, WIDTH, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def nothing(kind: str, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(background(kind, rng))
