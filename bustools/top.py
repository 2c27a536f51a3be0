"""The numbers behind `lens bus top`: per-topic rate, bandwidth, drops, publishers, age.

Rates are counted over the current window; drops and malformed counts come
from the sniffing node's own intake (sequence gaps it saw), so they are what
a subscriber of that topic would have lost.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from bus.envelope import Message
from bus.intake import Intake
from bus.topics import TOPICS


@dataclass
class _Row:
    total: int = 0
    window_count: int = 0
    window_bytes: int = 0
    drops: int = 0
    malformed: int = 0
    publishers: set[str] = field(default_factory=set)
    last_seen: float | None = None


class TopView:
    def __init__(self):
        self.rows: dict[str, _Row] = defaultdict(_Row)
        self.window_start = time.monotonic()

    def on_message(self, msg: Message) -> None:
        row = self.rows[msg.topic]
        if not msg.latched:
            row.window_count += 1
            row.window_bytes += msg.size
        row.total += 1
        row.publishers.add(msg.source)
        row.last_seen = time.monotonic()

    def merge_counters(self, intake: Intake) -> None:
        for topic, counters in intake.counters.items():
            row = self.rows[topic]
            row.drops = counters.drops
            row.malformed = counters.malformed

    def reset_window(self) -> None:
        self.window_start = time.monotonic()
        for row in self.rows.values():
            row.window_count = row.window_bytes = 0

    def snapshot(self) -> dict:
        now = time.monotonic()
        elapsed = max(now - self.window_start, 1e-6)
        out = {}
        for name, row in sorted(self.rows.items()):
            if not (row.total or row.drops or row.malformed):
                continue  # e.g. probe topics nobody sent while we watched
            spec = TOPICS.get(name)
            out[name] = {
                "kind": spec.kind.value if spec else "unknown",
                "nominal_hz": spec.rate_hz if spec else None,
                "hz": round(row.window_count / elapsed, 2),
                "bytes_per_s": round(row.window_bytes / elapsed, 1),
                "messages": row.total,
                "drops": row.drops,
                "malformed": row.malformed,
                "publishers": sorted(row.publishers),
                "age_s": round(now - row.last_seen, 3) if row.last_seen is not None else None,
            }
        return {"window_s": round(elapsed, 3), "topics": out}

    def render(self) -> str:
        snap = self.snapshot()
        lines = [f"{'TOPIC':26} {'KIND':7} {'HZ':>8} {'NOMINAL':>7} {'BW':>10} {'MSGS':>7} "
                 f"{'DROPS':>6} {'BAD':>5} {'AGE':>7}  PUBLISHERS"]
        for name, r in snap["topics"].items():
            nominal = f"{r['nominal_hz']:g}" if r["nominal_hz"] else "-"
            age = f"{r['age_s']:.1f}s" if r["age_s"] is not None else "-"
            lines.append(f"{name[:26]:26} {r['kind']:7} {r['hz']:8.1f} {nominal:>7} {_bandwidth(r['bytes_per_s']):>10} "
                         f"{r['messages']:7d} {r['drops']:6d} {r['malformed']:5d} {age:>7}  {', '.join(r['publishers'])}")
        lines.append(f"window {snap['window_s']:.1f} s")
        return "\n".join(lines)


def _bandwidth(bytes_per_s: float) -> str:
    for unit, scale in (("MB/s", 1e6), ("kB/s", 1e3)):
        if bytes_per_s >= scale:
            return f"{bytes_per_s / scale:.1f} {unit}"
    return f"{bytes_per_s:.0f} B/s"
