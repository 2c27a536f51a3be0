"""The capture LED and who may capture: the shell's side of the privacy handshake.

Capture (camera or mic) is granted only while the LED driver has confirmed
the LED lit, and never while it reports a fault. The order is always: the
shell asks for the LED, the driver confirms, then the grant. When the last
capture stops the LED stays lit for the policy hold time. A fault (driver
error, or the read-back disagreeing with what the shell asked for) revokes
every grant at once and refuses new ones until the LED works again.

Pure logic with time passed in: the shell's daemon feeds it bus events and
publishes what it returns, and the exhaustive test drives it directly.
"""

from __future__ import annotations

from dataclasses import dataclass

CAPTURE_RESOURCES = ("camera", "mic")


@dataclass(frozen=True)
class CaptureNotice:
    """status: granted (capture may start), refused, revoked."""
    owner: str
    resource: str
    status: str
    reason: str


class Privacy:
    def __init__(self, hold_s: float, confirm_timeout_s: float):
        self.hold_s = hold_s
        self.confirm_timeout_s = confirm_timeout_s
        self.led_on = False  # what the shell asks of the LED driver
        self.led_lit = False  # what the driver last confirmed (read back)
        self.fault: str | None = None
        self.granted: dict[tuple[str, str], str] = {}  # (owner, resource) -> reason
        self.pending: dict[tuple[str, str], tuple[str, float]] = {}  # -> (reason, deadline)
        # Capture done on someone's behalf is theirs: (owner, resource) -> the app the owner captures for.
        self.behalf: dict[tuple[str, str], str] = {}
        self.hold_until: float | None = None
        # The wake-phrase spotter, while it is up and the policy lets it run: the one process that may hear the
        # mic with the LED off, and then only while nobody captures or waits to capture the mic (listening()).
        self.listener: str | None = None

    @property
    def confirmed(self) -> bool:
        return self.led_on and self.led_lit and self.fault is None

    def listening(self, allowed: bool) -> str | None:
        """Who hears the mic now without a capture grant: the listener, where ``allowed`` (the system state's
        say) and while the mic is nobody's capture, granted or waiting for the LED. The mic has one reader at a
        time: from the moment the assistant is granted mic focus, the spotter hears nothing more."""
        if not allowed or any(resource == "mic" for _, resource in [*self.granted, *self.pending]):
            return None
        return self.listener

    def want(self, owner: str, resource: str, reason: str, now: float,
             behalf: str | None = None) -> list[CaptureNotice]:
        """Focus for camera or mic was granted: capture follows once the LED confirms. ``behalf``: the app
        the owner captures for, named beside it wherever the capture is accounted for."""
        key = (owner, resource)
        if behalf:
            self.behalf[key] = behalf
        else:
            self.behalf.pop(key, None)
        if self.fault is not None:
            return [CaptureNotice(owner, resource, "refused", f"the capture LED is not working: {self.fault}")]
        # Asked again while capturing (a new session of the same owner) is granted again below, as grants
        # exist only while the LED is confirmed: it must hear its grant, not wait for one already sent.
        if not self.led_on:
            self.led_lit = False  # a read-back taken before this command says nothing about it
        self.led_on = True
        self.hold_until = None
        if self.confirmed:
            self.granted[key] = reason
            return [CaptureNotice(owner, resource, "granted", "LED confirmed lit")]
        self.pending[key] = (reason, now + self.confirm_timeout_s)
        return []

    def stop(self, owner: str, resource: str, now: float, why: str = "focus ended") -> list[CaptureNotice]:
        """Focus ended (released, lost, owner gone): capture must stop."""
        key = (owner, resource)
        notices = []
        if self.granted.pop(key, None) is not None:
            notices.append(CaptureNotice(owner, resource, "revoked", why))
        self.pending.pop(key, None)
        self.behalf.pop(key, None)
        self._start_hold(now)
        return notices

    def resumed(self, now: float) -> None:
        """A crashed shell's successor takes this up at ``now``: a capture waiting for the LED gets its whole
        confirmation time again, which the restart (7-10 s on the board) would have outlived."""
        self.pending = {key: (reason, max(deadline, now + self.confirm_timeout_s))
                        for key, (reason, deadline) in self.pending.items()}

    def led_report(self, lit: bool, fault: str | None, now: float) -> list[CaptureNotice]:
        """The LED driver's read-back."""
        self.led_lit = lit
        if fault is None and self.led_on and not lit and self.granted:
            # It was confirmed lit (there are grants) and now reads off: a mismatch, not a delay.
            fault = "LED reads back off while it should be lit"
        if fault is not None:
            return self._fail(fault, now)
        self.fault = None
        notices = []
        if self.confirmed:
            for key, (reason, _) in list(self.pending.items()):
                del self.pending[key]
                self.granted[key] = reason
                notices.append(CaptureNotice(*key, "granted", "LED confirmed lit"))
        return notices

    def tick(self, now: float) -> list[CaptureNotice]:
        notices = []
        for key, (_, deadline) in list(self.pending.items()):
            if now >= deadline:
                del self.pending[key]
                notices.append(CaptureNotice(*key, "refused",
                                             f"the LED did not confirm within {self.confirm_timeout_s:g} s"))
        if notices and not self.granted and not self.pending:
            self.led_on = False  # nothing waits for it any more; no hold: nothing was captured
        if self.hold_until is not None and now >= self.hold_until and not self.granted and not self.pending:
            self.led_on = False
            self.hold_until = None
        return notices

    def next_deadline(self) -> float | None:
        deadlines = [d for _, d in self.pending.values()]
        if self.hold_until is not None:
            deadlines.append(self.hold_until)
        return min(deadlines, default=None)

    def snapshot(self) -> dict:
        return {
            "led": "on" if self.led_on else "off",
            "led_confirmed": self.confirmed,
            "fault": self.fault,
            "capture": sorted(f"{owner}:{resource}" for owner, resource in self.granted),
            "behalf": {f"{owner}:{resource}": app for (owner, resource), app in sorted(self.behalf.items())
                       if (owner, resource) in self.granted},
            "waiting_for_led": sorted(f"{owner}:{resource}" for owner, resource in self.pending),
            "hold_until": self.hold_until,
        }

    def _fail(self, fault: str, now: float) -> list[CaptureNotice]:
        self.fault = fault
        why = f"the capture LED failed: {fault}"
        notices = [CaptureNotice(*key, "revoked", why) for key in self.granted]
        notices += [CaptureNotice(*key, "refused", why) for key in self.pending]
        self.granted.clear()
        self.pending.clear()
        if self.hold_until is None:  # capture is over: the LED is asked off after its hold, mended or not
            self._start_hold(now)
        return notices

    def _start_hold(self, now: float) -> None:
        if not self.granted and not self.pending and self.led_on:
            self.hold_until = now + self.hold_s
