"""Waiting for a condition while a node's loop keeps running: one helper for apps and tests alike."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             poll: Callable[[float], None] | None = None, error: type[Exception] = TimeoutError) -> Any:
    """The first truthy ``condition()``; ``poll(seconds)`` runs a node loop meanwhile (else a short sleep).
    ``error`` with what was waited for when ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise error(f"timed out after {timeout:g} s waiting for {what}")
        if poll is not None:
            poll(min(remaining, 0.05))
        else:
            time.sleep(min(remaining, 0.01))
