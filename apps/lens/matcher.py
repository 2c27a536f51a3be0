"""What is the wearer looking at? Colour and shape signatures of the frame's centre against a catalog's.

Two cues, each cheap in numpy and each blind where the other sees:

- colour: a hue/saturation histogram (greys binned by brightness instead),
  weighted towards the centre of the view, where the wearer points, and
  compared by histogram intersection. Robust to position, size and a
  change of light; blind to shape (a green and a blue bottle differ only here).
- shape: a 3 x 3 grid of gradient-orientation histograms (HOG-like),
  compared by cosine. Robust to colour and light; tells a can from a box.

The score is their weighted sum. An answer needs a score above the
threshold and a margin over the runner-up; anything else is "not sure",
never a guess. The catalog's pictures are product shots on a plain
backdrop: the backdrop is masked out of their signatures, so only the
product counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

VIEW = 64  # the centre square of the view is looked at at this size
SIDE = 48  # the object, cut out and squared, at this size
HUES, GREYS = 12, 4
BINS = 2 * HUES + GREYS
COLOUR_WEIGHT = 0.6
RING = 5  # pixels of the view's edge taken as the background
RARE = 0.01  # a colour this rare at the edge belongs to the object
MIN_OBJECT = 0.03  # less of the view than this is nothing at all


@dataclass(frozen=True)
class Signature:
    colour: np.ndarray  # BINS, summing to 1 (all zero: nothing there)
    shape: np.ndarray  # 3 * 3 * 8 orientation bins, unit length
    coverage: float  # how much of the view the object takes


@dataclass(frozen=True)
class Match:
    id: str | None  # None: not sure
    score: float
    runner_up: float
    scores: dict[str, float]


def centre(pixels: np.ndarray, side: int = VIEW) -> np.ndarray:
    """The centre square of a frame at side x side, as floats in 0..1 (one small copy; the frame is a view)."""
    h, w = pixels.shape[:2]
    edge = min(h, w)
    y0, x0 = (h - edge) // 2, (w - edge) // 2
    square = Image.fromarray(np.ascontiguousarray(pixels[y0:y0 + edge, x0:x0 + edge, :3]))
    return np.asarray(square.resize((side, side), Image.BILINEAR), dtype=np.float32) / 255.0


def colour_bins(small: np.ndarray) -> np.ndarray:
    """Each pixel's bin: hue x two saturations, or (too pale or dark for a hue) one of the grey levels."""
    high, low = small.max(axis=2), small.min(axis=2)
    saturation = (high - low) / np.maximum(high, 1e-6)
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    chroma = np.maximum(high - low, 1e-6)
    hue = np.where(high == r, (g - b) / chroma % 6, np.where(high == g, (b - r) / chroma + 2, (r - g) / chroma + 4))
    hue_bin = np.minimum((hue / 6 * HUES).astype(int), HUES - 1)
    grey = (saturation < 0.25) | (high < 0.15)
    return np.where(grey, 2 * HUES + np.minimum((high * GREYS).astype(int), GREYS - 1),
                    hue_bin * 2 + (saturation >= 0.6))


def object_mask(small: np.ndarray, bins: np.ndarray, backdrop: tuple[int, int, int] | None) -> np.ndarray:
    """Where the object is. A catalog shot: whatever is not its backdrop. A view: the colours that are
    rare along its edge (the background runs out of the picture; what is held up does not)."""
    if backdrop is not None:
        return np.abs(small - np.array(backdrop, dtype=np.float32) / 255).max(axis=2) > 0.08
    edge = np.concatenate([bins[:RING].ravel(), bins[-RING:].ravel(), bins[:, :RING].ravel(),
                           bins[:, -RING:].ravel()])
    share = np.bincount(edge, minlength=BINS) / edge.size
    return share[bins] < RARE


def _bounds(mask: np.ndarray) -> tuple[slice, slice]:
    """The object's box, ignoring stray rows and columns of a few pixels."""
    def span(counts: np.ndarray) -> slice:
        rows = np.flatnonzero(counts >= max(2, 0.15 * counts.max()))
        return slice(rows[0], rows[-1] + 1)
    return span(mask.sum(axis=1)), span(mask.sum(axis=0))


def _square(array: np.ndarray, mode: str) -> np.ndarray:
    image = Image.fromarray((array * 255).astype(np.uint8), mode)
    return np.asarray(image.resize((SIDE, SIDE), Image.BILINEAR), dtype=np.float32) / 255


def shape_histogram(grey: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(grey)
    magnitude = np.hypot(gx, gy)
    orientation = ((np.arctan2(gy, gx) % np.pi) / np.pi * 8).astype(int) % 8  # light on dark = dark on light
    cells = (np.arange(SIDE) // (SIDE // 3)).clip(0, 2)
    index = (cells[:, None] * 3 + cells[None, :]) * 8 + orientation
    hist = np.bincount(index.ravel(), weights=magnitude.ravel(), minlength=72)
    return hist / max(np.linalg.norm(hist), 1e-9)


def signature(pixels: np.ndarray, backdrop: tuple[int, int, int] | None = None) -> Signature:
    small = centre(pixels)
    bins = colour_bins(small)
    mask = object_mask(small, bins, backdrop)
    coverage = float(mask.mean())
    if coverage < MIN_OBJECT:
        return Signature(np.zeros(BINS), np.zeros(72), coverage)
    rows, cols = _bounds(mask)
    colour = np.bincount(bins[rows, cols][mask[rows, cols]], minlength=BINS).astype(np.float64)
    # The object cut out, squared and scaled to SIDE: its silhouette and markings, wherever it was held.
    grey = (small[rows, cols] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)) * mask[rows, cols]
    return Signature(colour / colour.sum(), shape_histogram(_square(grey, "L")), coverage)


def similarity(a: Signature, b: Signature) -> float:
    colour = float(np.minimum(a.colour, b.colour).sum())
    shape = float(a.shape @ b.shape)
    return COLOUR_WEIGHT * colour + (1 - COLOUR_WEIGHT) * shape


def best(seen: Signature, catalog: dict[str, Signature], threshold: float, margin: float) -> Match:
    scores = {item: round(similarity(seen, sig), 4) for item, sig in catalog.items()}
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    top, score = ranked[0] if ranked else (None, 0.0)
    runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
    sure = score >= threshold and score - runner_up >= margin
    return Match(top if sure else None, score, runner_up, scores)
