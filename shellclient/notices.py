"""What a client of the shell keeps of what the shell told it, for apps (apps/sdk) and assistantd alike.

A client asks for focus and then waits for the notice that answers it: the
capture grant (the LED confirmed) comes later than the reply, as a
``shell.capture.notice``. "The notice since I asked" needs a mark that
stays true however many notices came and were forgotten meanwhile: a list
index does not (the list is trimmed, and an index past its end finds
nothing ever after). Here the mark is a count of every notice ever added.

Here, not in a daemon or the SDK: no daemon imports another's code and
apps import no daemon, so the one copy both use lives in the shell's client library.
"""

from __future__ import annotations

from collections import deque

CAPTURE_NOTICE = "shell.capture.notice"


class Notices:
    """What the bus told a client, newest last, the oldest forgotten past ``keep``; ``mark`` and ``since``
    find what came after a moment however much was forgotten meanwhile."""

    def __init__(self, keep: int = 100):
        self._kept: deque[dict] = deque(maxlen=keep)
        self._count = 0  # every notice ever added

    def add(self, notice: dict) -> None:
        self._kept.append(notice)
        self._count += 1

    def mark(self) -> int:
        return self._count

    def since(self, mark: int) -> list[dict]:
        """The notices added after ``mark`` that are still kept, oldest first."""
        newer = self._count - mark
        return list(self._kept)[-newer:] if newer > 0 else []

    def seen(self, mark: int, topic: str, **match) -> dict | None:
        """The first notice on ``topic`` since ``mark`` whose fields match."""
        for notice in self.since(mark):
            if notice["topic"] == topic and all(notice.get(k) == v for k, v in match.items()):
                return notice
        return None

    def capture(self, mark: int, resource: str) -> dict | None:
        """The shell's word on capturing ``resource`` since ``mark``: granted, refused or revoked (None: not yet)."""
        return self.seen(mark, CAPTURE_NOTICE, resource=resource)

    def __len__(self) -> int:
        return len(self._kept)
