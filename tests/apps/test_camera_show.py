"""`lens camera show`: a picture as a camera sees it held up, fitted and centred, never stretched; scaled,
turned and tilted for demos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from daemons.camera.backends import CameraError, SimCamera
from frames.held_up import WALL, held_up


def box_of(frame: np.ndarray) -> tuple[int, int, int, int]:
    """Top, bottom, left, right of what is not the wall."""
    ys, xs = np.nonzero(np.any(np.abs(frame.astype(int) - WALL).max(axis=2, keepdims=True) > 20, axis=2))
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


def red(width: int, height: int) -> Image.Image:
    return Image.new("RGB", (width, height), (220, 30, 30))


def test_a_picture_is_fitted_and_centred_never_stretched():
    frame = np.asarray(held_up(red(240, 240), 640, 480))
    assert box_of(frame) == (0, 480, 80, 560)  # a square stays square, the wall either side
    frame = np.asarray(held_up(red(400, 100), 640, 480))
    assert box_of(frame) == (160, 320, 0, 640)  # a wide one fills the width, centred
    top, bottom, left, right = box_of(np.asarray(held_up(red(240, 240), 640, 480, scale=0.5)))
    assert (bottom - top, right - left) == (240, 240) and (top + bottom, left + right) == (480, 640)


def test_it_can_be_turned_and_tilted():
    top, bottom, left, right = box_of(np.asarray(held_up(red(400, 100), 640, 480, scale=0.5, rotate=90)))
    assert abs((bottom - top) - 320) <= 2 and abs((right - left) - 80) <= 2  # 320 x 80, on its side
    frame = np.asarray(held_up(red(200, 200), 640, 480, scale=0.8, tilt=40))
    mask = np.abs(frame.astype(int) - WALL).max(axis=2) > 20
    cols = np.flatnonzero(mask.any(axis=0))
    near, far = mask[:, cols[2]].sum(), mask[:, cols[-3]].sum()
    assert far < 0.85 * near  # the right edge turned away is the shorter
    assert cols.size < 0.95 * 0.8 * 480  # and the whole is narrower than face on


def test_the_sim_camera_shows_a_file_fitted_and_refuses_nonsense(tmp_path):
    red(240, 240).save(tmp_path / "item.png")
    camera = SimCamera(640, 480)
    assert camera.show(str(tmp_path / "item.png")) == str(tmp_path / "item.png")
    frame = camera.grab(3, np.empty((480, 640, 3), np.uint8))
    assert tuple(frame[240, 320]) == (220, 30, 30) and tuple(frame[240, 40]) == WALL
    for bad in ({"scale": 0.0}, {"tilt": 89.0}):
        with pytest.raises(CameraError, match="cannot show"):
            camera.show(str(tmp_path / "item.png"), **bad)
    with pytest.raises(CameraError, match="cannot show"):
        camera.show(str(tmp_path / "missing.png"))
