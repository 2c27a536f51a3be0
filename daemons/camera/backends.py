"""camerad's frame sources: a V4L2 camera (through linuxpy), and a synthetic or folder-fed one.

A source fills an RGB24 numpy array of the ring's shape; camerad copies it
into the ring. The V4L2 source asks for YUYV (what sensors and UVC cameras
all offer) and converts with numpy.

Pillow is imported where a frame becomes or comes from a picture (a photo,
a video segment, a picture shown to the simulated camera, its frame
counter), not at start: camerad waits with its camera off most of its life,
and Pillow with its codecs is 3.7 MiB of a 35 MiB budget (issue 6).
"""

from __future__ import annotations

import select
from pathlib import Path

import numpy as np

from frames.held_up import held_up


class CameraError(Exception):
    """The camera cannot be opened or read; the message says why."""


def yuyv_to_rgb(data, height: int, width: int, out: np.ndarray | None = None) -> np.ndarray:
    """YUYV 4:2:2 (Y0 U Y1 V per two pixels, BT.601 limited range) to RGB24."""
    raw = np.frombuffer(data, dtype=np.uint8, count=height * width * 2).reshape(height, width // 2, 4)
    y = raw[:, :, (0, 2)].astype(np.float32).reshape(height, width) - 16.0
    u = np.repeat(raw[:, :, 1].astype(np.float32) - 128.0, 2, axis=1)
    v = np.repeat(raw[:, :, 3].astype(np.float32) - 128.0, 2, axis=1)
    y *= 255.0 / 219.0
    rgb = np.stack((y + 1.596 * v, y - 0.392 * u - 0.813 * v, y + 2.017 * u), axis=-1)
    if out is None:
        out = np.empty((height, width, 3), dtype=np.uint8)
    np.clip(np.rint(rgb, out=rgb), 0, 255, out=rgb)
    out[...] = rgb
    return out


FRAME_WAIT_S = 2.0  # a sensor that gives no frame this long after asked is not giving one


class V4l2Camera:
    """A V4L2 capture device (the glasses' sensor behind its ISP, or a UVC camera on a laptop)."""

    name = "real"

    def __init__(self, device: str, width: int, height: int, fps: float):
        from linuxpy.video.device import Device, VideoCapture

        self.width, self.height = width, height
        try:
            self.device = Device(device, blocking=False)
            self.device.open()
            self.capture = VideoCapture(self.device, size=4)
            self.capture.set_format(width, height, "YUYV")
            self.capture.set_fps(fps)
            fmt = self.capture.get_format()
            if (fmt.width, fmt.height) != (width, height):
                raise CameraError(f"{device} gives {fmt.width}x{fmt.height}, not {width}x{height}")
        except CameraError:
            raise
        except Exception as exc:  # linuxpy raises OSError and its own V4L2Error
            raise CameraError(f"{device}: {exc}") from None
        self.streaming = False

    def fileno(self) -> int:
        """Readable when a frame is ready: camerad waits on it in its one poll."""
        return self.device.fileno()

    def start(self) -> None:
        if not self.streaming:
            self.capture.open()
            self.streaming = True

    def stop(self) -> None:
        if self.streaming:
            self.capture.close()
            self.streaming = False

    def grab(self, frame_id: int, out: np.ndarray) -> np.ndarray:
        """The next frame. A photo taken while nothing streams opens the stream for that one frame: the
        device is non-blocking and had no buffers then, so a photo alone failed on the board ('NoneType'
        object has no attribute 'raw_read', seen in the booted image)."""
        once = not self.streaming
        try:
            if once:
                self.start()
            if not select.select([self.device.fileno()], [], [], FRAME_WAIT_S)[0]:
                raise CameraError(f"no frame within {FRAME_WAIT_S:g} s")
            frame = self.capture.buffer.raw_read()
        except CameraError:
            raise
        except Exception as exc:
            raise CameraError(f"reading a frame: {exc}") from None
        finally:
            if once:
                self.stop()
        return yuyv_to_rgb(frame.data, self.height, self.width, out)

    def close(self) -> None:
        self.stop()
        self.device.close()


class SimCamera:
    """A moving colour pattern with the frame number drawn in, or the images of a folder in turn."""

    name = "sim"

    def __init__(self, width: int, height: int, folder: str = ""):
        self.width, self.height = width, height
        self.base: np.ndarray | None = None  # the pattern, made while capturing only (6 MiB at 1080p)
        self.images = self._load(Path(folder)) if folder else []
        self.shown: np.ndarray | None = None  # a picture held in front of the camera (`lens camera show`)

    def _load(self, folder: Path) -> list[np.ndarray]:
        images = [self._picture(path) for path in sorted(folder.glob("*"))
                  if path.suffix.lower() in (".png", ".jpg", ".jpeg")]
        if not images:
            raise CameraError(f"no PNG or JPEG images in {folder}")
        return images

    def _picture(self, path: Path, scale: float = 1.0, rotate: float = 0.0, tilt: float = 0.0) -> np.ndarray:
        from PIL import Image

        with Image.open(path) as image:
            return np.asarray(held_up(image, self.width, self.height, scale, rotate, tilt))

    def show(self, path: str | None, scale: float = 1.0, rotate: float = 0.0, tilt: float = 0.0) -> str:
        """Hold a picture in front of the camera (None: take it away); CameraError when it is no picture."""
        if path is None:
            self.shown = None
            return "the folder" if self.images else "the pattern"
        if not 0.05 <= scale <= 4 or not -80 <= tilt <= 80:
            raise CameraError(f"cannot show {path}: scale must be 0.05..4 and tilt -80..80 degrees")
        try:
            self.shown = self._picture(Path(path), scale, rotate, tilt)
        except (OSError, ValueError) as exc:
            raise CameraError(f"cannot show {path}: {exc}") from None
        return path

    def fileno(self) -> None:
        return None  # frames come from camerad's timer

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.base = None

    def _pattern(self) -> np.ndarray:
        """Red across, green down, blue along the diagonal; built by broadcasting, with no full-size
        index grids (two int64 planes: 33 MiB at 1080p) on the way."""
        x = np.arange(self.width, dtype=np.uint32)[None, :]
        y = np.arange(self.height, dtype=np.uint32)[:, None]
        base = np.empty((self.height, self.width, 3), dtype=np.uint8)
        base[..., 0] = x * 255 // max(self.width - 1, 1)
        base[..., 1] = y * 255 // max(self.height - 1, 1)
        base[..., 2] = (x + y) * 255 // max(self.width + self.height - 2, 1)
        return base

    def grab(self, frame_id: int, out: np.ndarray) -> np.ndarray:
        if self.shown is not None:
            out[...] = self.shown
        elif self.images:
            out[...] = self.images[(frame_id // 30) % len(self.images)]  # a second per image at 30 fps
        else:
            shift = (frame_id * 8) % self.width
            if self.base is None:
                self.base = self._pattern()
            out[:, :self.width - shift] = self.base[:, shift:]
            out[:, self.width - shift:] = self.base[:, :shift]
        from PIL import Image, ImageDraw

        stamp = Image.new("RGB", (12 * 9, 22), (0, 0, 0))
        ImageDraw.Draw(stamp).text((4, 4), f"#{frame_id:07d}", fill=(255, 255, 255))
        h, w = min(22, self.height), min(12 * 9, self.width)
        out[:h, :w] = np.asarray(stamp)[:h, :w]
        return out

    def close(self) -> None:
        pass
