"""Hello: the smallest app worth copying. Copy this directory to apps/<id>/ (or to $LENS_APPS_DIR/<id>/),
rename the id in manifest.toml and below, and `lens app start <id>`."""

from apps.sdk.app import App, Refused
from bus.errors import BusError


class Hello(App):
    taps = 0

    def on_foreground(self):
        try:
            self.take_display("hello")                  # granted, queued, or Refused with why
            self.card("hello", "Hello", "Tap me.")      # on the G1, displayd says it instead
        except (Refused, BusError) as exc:
            self.speak(f"Hello cannot show itself: {exc}")

    def on_gesture(self, gesture):                      # only while in the foreground
        if gesture == "tap":
            self.taps += 1
            self.card("hello", "Hello", f"Tapped {self.taps} time{'s' if self.taps > 1 else ''}.")

    def on_stop(self):                                  # `lens app stop hello`: save what must not be lost
        pass


if __name__ == "__main__":
    Hello("hello").run()
