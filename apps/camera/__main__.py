"""The camera app: press the capture button (or tap) for a photo, hold it to start or stop a video.

While it records, its card shows a timer (S1; G1 says when it starts and
stops). What the shell refuses (low power, a call holding the camera, an LED
that cannot be confirmed) is shown with the reason; a battery swap is the
shell's and camerad's business: the recording is checkpointed and goes on.
A recording someone else ends (an LED fault, camerad gone, a full disk) is
said to the wearer with why, and the timer stops.
"""

from __future__ import annotations

import logging
import time

from apps.sdk.app import App, Refused
from bus.errors import BusError

log = logging.getLogger("camera")
PHOTO = ("tap", "button")
VIDEO = ("button_long",)


class Camera(App):
    global_gestures = ("button", "button_long")  # the capture button works from anywhere
    recording_since: float | None = None
    timer = None

    def on_foreground(self) -> None:
        try:
            self.take_display("viewfinder")
            self.show("Camera", "Press for a photo, hold to record.")
        except Refused as exc:
            self.show("Camera", f"Cannot show the camera: {exc}")

    def on_gesture(self, gesture: str) -> None:
        if not self.foreground:
            try:
                self.come_forward()
            except (Refused, BusError) as exc:
                log.warning("cannot come forward: %s", exc)
                self.speak(f"Camera: {exc}")
                return
        if gesture in PHOTO and self.recording_since is None:
            self.take_photo()
        elif gesture in VIDEO:
            self.stop_video() if self.recording_since is not None else self.start_video()

    def take_photo(self) -> None:
        try:
            path = self.photo()
        except (Refused, BusError) as exc:
            log.warning("no photo: %s", exc)
            self.toast("No photo", str(exc))
            return
        self.toast("Photo saved", path.rsplit("/", 1)[-1])

    def start_video(self) -> None:
        try:
            self.focus("camera", "exclusive", "video", purpose="video")
            self.ask("camera.control.request", mode="video")
        except (Refused, BusError) as exc:
            self._release_quietly("camera")
            self.show("Camera", f"Not recording: {exc}")
            return
        self.recording_since = time.monotonic()
        self.show("● REC 0:00", "Hold to stop.")
        if self.has_display:  # G1 would say the time every second
            self.timer = self.node.every(1.0, self.tick)

    def tick(self) -> None:
        seconds = int(time.monotonic() - self.recording_since)
        self.show(f"● REC {seconds // 60}:{seconds % 60:02d}", "Hold to stop.")

    def stop_video(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.recording_since = None
        try:
            self.ask("camera.control.request", mode="off")
        except (Refused, BusError) as exc:
            self.show("Camera", f"Stopping: {exc}")
        self._release_quietly("camera")
        self.show("Camera", "Video saved.")

    def on_focus(self, notice: dict) -> None:
        if notice["resource"] == "camera" and notice["status"] in ("lost", "suspended") and \
                self.recording_since is not None:
            self.recording_ended(notice["reason"])

    def recording_ended(self, why: str) -> None:
        """The recording was stopped by someone else (an LED fault, camerad gone, a full disk, another's
        photo): what was written is saved; the wearer hears or sees why, and the camera is given back."""
        log.warning("recording stopped: %s", why)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.recording_since = None
        self._release_quietly("camera")  # a suspended claim must not come back to a camera nobody uses
        if self.has_display:  # no "● REC" left on its card (G1 has none: the toast is said)
            self.show("Camera", f"Recording stopped: {why}")
        try:
            self.toast("Recording stopped", why)
        except (Refused, BusError) as exc:
            log.warning("cannot tell the wearer: %s", exc)
            self.speak(f"Recording stopped. {why}")

    def on_stop(self) -> None:
        if self.recording_since is not None:
            self.stop_video()  # the segment is closed and fsync'ed before the app goes

    def show(self, title: str, body: str) -> None:
        try:
            self.card("camera", title, body)
        except (Refused, BusError) as exc:
            self.speak(f"{title}. {exc}")


def main() -> int:
    Camera("camera").run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
