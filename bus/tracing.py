"""Traces: which messages are hops of one piece of work, across every process that does a part of it.

The wearer holds the temple and asks the time: inputd's gesture, the shell's focus and LED, audiod's mic
blocks, the assistant's words, intent and answer, displayd's card and the frame that showed it, the speech
that said it. Each is a message of a different process, and a developer asking where the seconds went needs
them as one timeline. So a message may carry a trace id (bus.envelope's eighth item), and a node carries it
on the way OpenTelemetry's context propagation does, without any handler passing it along:

- while a handler runs for a traced message, whatever the node publishes or asks carries that trace, and so
  do the replies to what it serves and the callbacks of what it asked (bus.loop, bus.calls);
- a one-shot timer armed in a traced handler keeps the trace (``Node.after``), a periodic one does not (its
  later beats are nobody's hop);
- a message of a topic the table marks ``starts_trace`` (a gesture, the wake phrase, a question to the
  assistant) published outside any trace starts a new one: the root;
- where work waits on something that is not a message (audiod's mic blocks, displayd's next frame), the
  daemon holds on to the trace it was asked under and publishes in ``node.tracing(trace)``.

Each hop keeps its own process's timestamps (the envelope's mono_ns and wall_ns, one machine's clocks), so
the timeline a tool builds from them (cli/trace.py: `lens trace`) says which process took how long and where
the work waited. Recordings keep the bodies as they were, trace ids and all: a replay shows the same timeline.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator

from bus.envelope import MAX_TRACE


def new_trace() -> int:
    """A fresh trace id: 63 random bits, never 0 (0 is no trace)."""
    return int.from_bytes(os.urandom(8), "little") % MAX_TRACE + 1


class Tracing:
    """The trace a node is working for (a part of bus.node.Node, which holds the state: ``trace``)."""

    @contextlib.contextmanager
    def tracing(self, trace: int) -> Iterator[int]:
        """Publish and ask as a hop of ``trace`` (0: of none) inside the block; returns to the trace before."""
        before, self.trace = self.trace, trace
        try:
            yield trace
        finally:
            self.trace = before

    def carry(self, callback: Callable) -> Callable:
        """``callback``, to run later as a hop of the trace current now (itself, when there is none): for
        one-shot timers and other work the node does later on a traced handler's behalf."""
        trace = self.trace
        if not trace:
            return callback

        def in_trace(*args):
            with self.tracing(trace):
                return callback(*args)
        return in_trace
