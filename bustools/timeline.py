"""A trace as a timeline: which process did which hop, when, and where the work waited (`lens trace`).

The hops are messages that carry one trace id (bus.tracing), from a live bus or a recording. Each carries
the time its own process published it (the envelope's mono_ns: one machine's monotonic clock, so hops of
different processes compare). A run of the same process's same topic (the mic's blocks, 50 a second) is
one line with its count and span; the gap before each line is the wait, and the longest is marked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bus.envelope import Message

RUN_TOPICS = ("audio.mic", "audio.vad", "display.frame", "camera.frame", "assistant.partial")  # folded into runs


@dataclass
class Hop:
    source: str
    topic: str
    start_ns: int
    end_ns: int
    count: int = 1
    summary: str = ""
    gap_ns: int = 0  # since the end of the hop before: where the work waited

    def as_json(self, origin_ns: int) -> dict:
        return {"source": self.source, "topic": self.topic, "at_ms": round((self.start_ns - origin_ns) / 1e6, 1),
                "span_ms": round((self.end_ns - self.start_ns) / 1e6, 1), "gap_ms": round(self.gap_ns / 1e6, 1),
                "count": self.count, "summary": self.summary}


@dataclass
class Trace:
    trace: int
    messages: list[Message] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.trace:016x}"

    def hops(self) -> list[Hop]:
        hops: list[Hop] = []
        for msg in sorted(self.messages, key=lambda m: m.mono_ns):
            last = hops[-1] if hops else None
            if last and msg.topic in RUN_TOPICS and (last.source, last.topic) == (msg.source, msg.topic):
                last.end_ns, last.count = msg.mono_ns, last.count + 1
                continue
            gap = msg.mono_ns - max(h.end_ns for h in hops) if hops else 0
            hops.append(Hop(msg.source, msg.topic, msg.mono_ns, msg.mono_ns, summary=summary(msg),
                            gap_ns=max(0, gap)))
        return hops

    def as_json(self) -> dict:
        hops = self.hops()
        origin = hops[0].start_ns if hops else 0
        return {"trace": self.id, "hops": [h.as_json(origin) for h in hops],
                "took_ms": round((max(h.end_ns for h in hops) - origin) / 1e6, 1) if hops else 0.0,
                "processes": sorted({h.source for h in hops})}

    def lines(self) -> list[str]:
        hops = self.hops()
        if not hops:
            return [f"trace {self.id}: no hops"]
        origin, end = hops[0].start_ns, max(h.end_ns for h in hops)
        longest = max(hops[1:], key=lambda h: h.gap_ns, default=None)
        out = [f"trace {self.id}: {len(self.messages)} messages, {len(hops)} hops in "
               f"{len({h.source for h in hops})} processes over {(end - origin) / 1e6:.0f} ms"]
        width = max(len(h.source) for h in hops)
        for hop in hops:
            at = f"+{(hop.start_ns - origin) / 1e6:7.1f} ms"
            run = f" x{hop.count} over {(hop.end_ns - hop.start_ns) / 1e6:.0f} ms" if hop.count > 1 else ""
            waited = f"  <- waited {hop.gap_ns / 1e6:.0f} ms" if hop is longest and hop.gap_ns > 0 else ""
            out.append(f"  {at}  {hop.source:<{width}}  {hop.topic}{run}  {hop.summary}{waited}".rstrip())
        return out


SUMMARY_FIELDS = ("gesture", "resource", "status", "reason", "on", "lit", "phase", "text", "action", "title",
                  "id", "n", "intent", "speech", "session")


def summary(msg: Message, limit: int = 60) -> str:
    """A few fields a reader of the timeline looks for, never bytes (no audio, no pictures)."""
    payload = msg.payload
    if msg.topic.endswith(".reply"):
        payload = payload.get("result") or {"error": payload.get("error")}
    parts = [f"{k}={payload[k]!r}" if isinstance(payload[k], str) else f"{k}={payload[k]}"
             for k in SUMMARY_FIELDS if k in payload and not isinstance(payload[k], (bytes, dict, list))]
    text = " ".join(parts)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Collector:
    """Messages grouped by trace as they come; a trace is complete once quiet for ``quiet_ns``."""

    def __init__(self, quiet_s: float):
        self.quiet_ns = int(quiet_s * 1e9)
        self.open: dict[int, Trace] = {}
        self.last_ns: dict[int, int] = {}

    def add(self, msg: Message, now_ns: int) -> None:
        if msg.trace and not msg.latched:  # a latched copy is the present replayed, not a hop now
            self.open.setdefault(msg.trace, Trace(msg.trace)).messages.append(msg)
            self.last_ns[msg.trace] = now_ns

    def complete(self, now_ns: int) -> list[Trace]:
        done = [t for t, at in self.last_ns.items() if now_ns - at >= self.quiet_ns]
        for t in done:
            del self.last_ns[t]
        return sorted((self.open.pop(t) for t in done), key=lambda tr: min(m.mono_ns for m in tr.messages))
