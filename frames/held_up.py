"""A picture as a camera sees it when someone holds it up: the simulated camera's view of an item.

camerad's simulated backend shows one (`lens camera show`), and the lens app draws its catalog's items the
same way to learn and test what it recognizes; here, below both, so that neither imports the other (an app
never imports a daemon). Pillow and numpy, imported by whoever calls.
"""

from __future__ import annotations

import numpy as np


WALL = (96, 96, 96)  # what is behind a picture held up to the sim camera


def held_up(image, width: int, height: int, scale: float = 1.0, rotate: float = 0.0, tilt: float = 0.0):
    """A picture as a camera sees it held up: fitted into width x height and centred, never stretched (a
    stretched product is not one any shelf shows), at `scale` of that fit, turned `rotate` degrees
    anticlockwise and tilted `tilt` degrees away about its upright axis (right edge farther)."""
    from PIL import Image

    k = min(width / image.width, height / image.height) * scale
    picture = image.convert("RGBA").resize((max(1, round(image.width * k)), max(1, round(image.height * k))),
                                           Image.BILINEAR)
    if tilt:
        picture = _tilted(picture, tilt)
    if rotate:
        picture = picture.rotate(rotate, Image.BILINEAR, expand=True)
    frame = Image.new("RGB", (width, height), WALL)
    frame.paste(picture, ((width - picture.width) // 2, (height - picture.height) // 2), picture)
    return frame


def _tilted(picture, degrees: float):
    """A pinhole camera's view of the picture turned about its upright axis, seen from 1.5 widths away."""
    from PIL import Image

    w, h = picture.size
    distance, turn = 1.5 * w, np.radians(degrees)
    corners = np.array([(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)])
    depth = distance + corners[:, 0] * np.sin(turn)
    seen = np.stack((corners[:, 0] * np.cos(turn), corners[:, 1]), axis=1) * (distance / depth)[:, None]
    seen -= seen.min(axis=0)
    size = np.ceil(seen.max(axis=0)).astype(int) + 1
    source = corners + (w / 2, h / 2)
    # Pillow maps each output pixel back to the input: solve the homography from the seen quad to the picture.
    rows, rhs = [], []
    for (x, y), (u, v) in zip(seen, source):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    coeffs = np.linalg.solve(np.array(rows), np.array(rhs))
    return picture.transform(tuple(int(n) for n in size), Image.PERSPECTIVE, tuple(coeffs), Image.BILINEAR)
