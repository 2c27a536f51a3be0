"""Does the pack the features found look like itself? Its picture and the view warped back onto it through the
homography, compared cell by cell in grey pattern and in colour.

A pack not in the catalog that shares a word or a shape with one that is (another brand's cola) gathers
inliers on them, and looks like itself nowhere else: the share of cells alike is the evidence of that.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

THUMB = (96, 128)  # the pack and the view warped onto it are compared at this size...
CELLS = (6, 8)  # ...cell by cell (a cell hidden by a hand disagrees; the rest still agree)
ALIKE = 0.5  # normalised cross-correlation for a cell to agree...
HUE = 0.06  # ...and at most this far apart in red and green shares
SEEN_LEAST = 0.4  # of its cells, or its look is no evidence


@dataclass(frozen=True)
class Look:
    """One catalog picture's look, cell by cell."""
    thumb: np.ndarray  # its grey picture at THUMB, blurred a little, float32
    hues: np.ndarray  # its chromaticity (r, g shares of r + g + b) per cell, CELLS[1] x CELLS[0] x 2
    solid: np.ndarray  # per cell, the share of it that is the pack, not the cut-out's surround

    @classmethod
    def of(cls, pixels: np.ndarray, grey: np.ndarray, solid: np.ndarray | None) -> "Look":
        """pixels: the RGB picture, grey: the same in grey, solid: where it is the pack (None: all of it)."""
        small = cv2.resize(np.ascontiguousarray(pixels[..., :3]), THUMB, interpolation=cv2.INTER_AREA)
        thumb = cv2.GaussianBlur(cv2.resize(grey, THUMB, interpolation=cv2.INTER_AREA), (3, 3), 0)
        solid = np.ones(grey.shape, bool) if solid is None else solid
        return cls(thumb.astype(np.float32), _hues(small),
                   _cells(cv2.resize(solid.astype(np.float32), THUMB, interpolation=cv2.INTER_AREA)))


def _cells(values: np.ndarray) -> np.ndarray:
    """The mean of a THUMB-sized picture (any channels) per cell: CELLS[1] x CELLS[0] (x channels)."""
    cw, ch = THUMB[0] // CELLS[0], THUMB[1] // CELLS[1]
    cut = values[:ch * CELLS[1], :cw * CELLS[0]].astype(np.float32)
    return cut.reshape(CELLS[1], ch, CELLS[0], cw, *values.shape[2:]).mean(axis=(1, 3))


def _hues(small: np.ndarray) -> np.ndarray:
    """Per cell, the mean share of red and of green in r + g + b: what a change of light leaves alone."""
    mean = _cells(small)
    return mean[..., :2] / np.maximum(mean.sum(axis=2, keepdims=True), 1.0)


def looks_alike(look: Look, size: tuple[int, int], view: np.ndarray, colour: np.ndarray | None,
                homography: np.ndarray) -> float:
    """The share of the pack's cells seen in the view that the view, warped back onto the pack, resembles: in
    its grey pattern, and in its colour where the view has one that light has not clipped.

    A cell is not seen when it falls outside the frame (a pack held close), where the view is flat but the
    pack is not and light burnt it out, or where the pack's cut-out shows what is behind it: those cells are
    evidence of nothing, and counting them as disagreeing made a pack over-exposed, or on clutter, "not sure"
    with a hundred inliers. Other brands' packs of the same goods still disagree where they are seen."""
    w, h = size
    scale = np.diag([w / THUMB[0], h / THUMB[1], 1.0])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    seen = cv2.warpPerspective(view, homography @ scale, THUMB, flags=flags, borderMode=cv2.BORDER_CONSTANT)
    seen = cv2.GaussianBlur(seen, (3, 3), 0).astype(np.float32)
    inside = cv2.warpPerspective(np.full(view.shape[:2], 255, np.uint8), homography @ scale, THUMB, flags=flags,
                                 borderMode=cv2.BORDER_CONSTANT)
    cw, ch = THUMB[0] // CELLS[0], THUMB[1] // CELLS[1]
    hue_ok = np.ones((CELLS[1], CELLS[0]), bool)
    clipped = np.zeros((CELLS[1], CELLS[0]), bool)
    if colour is not None:
        warped = cv2.warpPerspective(np.ascontiguousarray(colour[..., :3]), homography @ scale, THUMB, flags=flags)
        hue_ok = np.abs(_hues(warped) - look.hues).max(axis=2) < HUE
        clipped = _cells(warped.min(axis=2) >= 250) > 0.2  # burnt white: all three channels
    agree = counted = 0
    for y in range(CELLS[1]):
        for x in range(CELLS[0]):
            if inside[y * ch:(y + 1) * ch, x * cw:(x + 1) * cw].mean() < 0.7 * 255:
                continue  # outside the frame
            if look.solid[y, x] < 0.5:
                continue  # mostly the cut-out's surround: whatever is behind the pack shows there
            a = look.thumb[y * ch:(y + 1) * ch, x * cw:(x + 1) * cw].ravel()
            b = seen[y * ch:(y + 1) * ch, x * cw:(x + 1) * cw].ravel()
            a, b = a - a.mean(), b - b.mean()
            na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
            flat_a, flat_b = na < 2.0 * a.size ** 0.5, nb < 2.0 * b.size ** 0.5
            if flat_b and not flat_a and clipped[y, x]:
                continue  # burnt out: not seen (a flat hand over it is not told from another pack's plain side)
            counted += 1
            if not hue_ok[y, x] and not clipped[y, x]:
                continue
            if flat_a or flat_b:
                agree += flat_a and flat_b
            else:
                agree += float(a @ b) / (na * nb) > ALIKE
    if counted < SEEN_LEAST * np.count_nonzero(look.solid >= 0.5):
        return 0.0  # too little of it seen to say it looks like itself
    return agree / counted
