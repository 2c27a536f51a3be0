"""What a client waits for after asking the shell for a resource: one rule for the SDK and assistantd.

The shell's reply to ``shell.focus.request`` is granted, queued or denied. Denied is a refusal, with the
shell's reason. Queued means a transient holder is above the asker: its focus notice (granted) comes when
that holder is done, and a client that needs the resource now waits for it; a capture always does, since
nothing can be captured without it. The camera and the mic then need the capture grant, which the shell
sends only once the LED is confirmed lit (or its refusal). A client that stops waiting gives the resource
back: its claim would otherwise stay in the shell's stack, granted later to nobody who uses it.

The two clients wait in their own ways (the SDK runs its loop until a condition holds, assistantd's session
is a generator of steps), so the rule is the data: ``steps`` says what to wait for, in order.
"""

from __future__ import annotations

from shellclient.notices import Notices

CAPTURED = ("camera", "mic")  # what only the shell's capture grant, after the LED, lets a client use
FOCUS_NOTICE = "shell.focus.notice"


def steps(status: str, resource: str, needed_now: bool) -> tuple[str, ...]:
    """After a reply of ``status`` (not denied): what to wait for, in order: "focus" (the queued claim
    granted), "capture" (the LED-confirmed capture grant). ``needed_now``: the client cannot go on
    without the resource (assistantd's session); an app's display or speaker claim may wait in the stack."""
    waits = []
    if status == "queued" and (needed_now or resource in CAPTURED):
        waits.append("focus")
    if resource in CAPTURED:
        waits.append("capture")
    return tuple(waits)


def focus_granted(notices: Notices, mark: int, resource: str) -> dict | None:
    """The queued claim's grant since ``mark``, or None."""
    return notices.seen(mark, FOCUS_NOTICE, resource=resource, status="granted")
