"""Where displayd's frames go: the board's framebuffer, a PNG for the live view, or nowhere (G1).

Each panel takes an RGB frame (height x width x 3, uint8) and can give back
what it shows now, which is what `lens display snapshot` saves.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

from bus.runtime import write_atomically


class PanelError(RuntimeError):
    """The panel cannot be opened or driven."""


class FbPanel:
    """A Linux framebuffer (/dev/fbN), mapped and written in its own pixel format.

    On a character device the geometry and pixel format come from the
    driver (FBIOGET_VSCREENINFO/FSCREENINFO through linuxpy); a plain file
    (an emulator's, a test's) is taken to be the model's panel at ``bpp``.
    Brightness goes to the backlight when the board has one; otherwise
    displayd dims the pixels."""

    name = "fb"

    def __init__(self, path: str, width: int, height: int, bpp: int, backlight_dir: str = ""):
        try:
            self.fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise PanelError(f"cannot open the framebuffer {path}: {exc.strerror}") from None
        try:
            if stat.S_ISCHR(os.fstat(self.fd).st_mode):
                width, height, bpp, stride = self._geometry()
            else:
                stride = width * bpp // 8
            if bpp not in (16, 32):
                raise PanelError(f"{path}: {bpp} bits per pixel is not supported (16 or 32)")
            size = os.fstat(self.fd).st_size or stride * height  # a device reports 0
            if size < stride * height:
                raise PanelError(f"{path} is {size} bytes; a {width}x{height} panel at {bpp} bpp needs "
                                 f"{stride * height}")
            self.map = mmap.mmap(self.fd, stride * height)
        except BaseException:
            os.close(self.fd)
            raise
        self.width, self.height, self.bpp = width, height, bpp
        self.pixels = np.frombuffer(self.map, dtype=np.uint8).reshape(height, stride)
        self.backlight = Path(backlight_dir) if backlight_dir else None
        self.hardware_brightness = self.backlight is not None
        if self.backlight is not None:
            try:
                self.max_brightness = int((self.backlight / "max_brightness").read_text())
            except (OSError, ValueError) as exc:
                self.close()
                raise PanelError(f"{backlight_dir}: no usable max_brightness ({exc})") from None

    def _geometry(self) -> tuple[int, int, int, int]:
        from linuxpy.fb import device as fb

        try:
            var, fix = fb.get_raw_var_screen_info(self.fd), fb.get_raw_fix_screen_info(self.fd)
        except OSError as exc:
            raise PanelError(f"not a framebuffer: {exc.strerror}") from None
        return var.xres, var.yres, var.bits_per_pixel, fix.line_length

    def show(self, frame: np.ndarray) -> None:
        row = self.width * self.bpp // 8
        target = self.pixels[:, :row]
        if self.bpp == 32:  # XRGB8888, little-endian in memory: B, G, R, X
            view = target.reshape(self.height, self.width, 4)
            view[..., 0], view[..., 1], view[..., 2], view[..., 3] = frame[..., 2], frame[..., 1], frame[..., 0], 0
        else:  # RGB565
            r, g, b = (frame[..., i].astype(np.uint16) for i in range(3))
            target.view(np.uint16)[:] = ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3)

    def brightness(self, level: float) -> None:
        if self.backlight is not None:
            try:
                (self.backlight / "brightness").write_text(str(round(self.max_brightness * level)))
            except OSError as exc:
                raise PanelError(f"backlight: {exc.strerror or exc}") from None

    def snapshot(self) -> np.ndarray:
        """What the panel holds now, read back from the framebuffer itself."""
        row = self.width * self.bpp // 8
        if self.bpp == 32:
            view = self.pixels[:, :row].reshape(self.height, self.width, 4)
            return view[..., 2::-1].copy()
        value = self.pixels[:, :row].view(np.uint16)
        rgb = np.empty((self.height, self.width, 3), dtype=np.uint8)
        rgb[..., 0] = ((value >> 11) & 0x1F) << 3
        rgb[..., 1] = ((value >> 5) & 0x3F) << 2
        rgb[..., 2] = (value & 0x1F) << 3
        return rgb

    def close(self) -> None:
        if getattr(self, "map", None) is not None:
            del self.pixels
            self.map.close()
            self.map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class SimPanel:
    """The development panel: every frame is kept and written as a PNG for the live view."""

    name = "sim"
    hardware_brightness = False

    def __init__(self, png_path: Path, width: int, height: int):
        self.path, self.width, self.height = png_path, width, height
        self.frame = np.zeros((height, width, 3), dtype=np.uint8)

    def show(self, frame: np.ndarray) -> None:
        self.frame = frame.copy()
        write_atomically(self.path, png(self.frame, fast=True), durable=False)

    def brightness(self, level: float) -> None:
        pass

    def snapshot(self) -> np.ndarray:
        return self.frame

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


class NonePanel:
    """The display-less G1: nothing is drawn; displayd speaks cards instead."""

    name = "none"
    hardware_brightness = False
    width = height = 0

    def show(self, frame: np.ndarray) -> None:
        pass

    def brightness(self, level: float) -> None:
        pass

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        pass


def png(frame: np.ndarray, fast: bool = False) -> bytes:
    """An RGB frame as a PNG: one IDAT, every row unfiltered. Written with zlib rather than Pillow's
    ``save``, which loads five image plugins (and subprocess, decimal, locale) on its first call: 1.9 MiB
    of a daemon held to 35 MiB, for what is a header, a deflate stream and a checksum per chunk."""
    height, width = frame.shape[:2]
    rows = np.zeros((height, 1 + width * 3), dtype=np.uint8)  # column 0: each row's filter type, 0 (none)
    rows[:, 1:] = frame.reshape(height, width * 3)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, deflate, no interlace
    return b"".join((b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", header),
                     _chunk(b"IDAT", zlib.compress(rows, 1 if fast else 6)), _chunk(b"IEND", b"")))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))
