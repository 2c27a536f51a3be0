"""The privacy log's file: append-only JSON lines, each fsync'ed before the capture it records may go on.

Written by the shell for every capture it grants, and by a recorder that keeps capture content itself
(bustools.capture_content); read by `lens privacy log`. Here, below both, so that neither imports the other:
the log's format is shared data, not the shell's code. A torn last line (power lost mid-write) never
swallows the next record and is skipped when read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class AuditLog:
    """Append-only JSON lines, each write fsync'ed before capture is allowed to go on."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict) -> None:
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a torn last line (power lost mid-write) must not swallow this one
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> list[dict]:
        """Every record; a torn last line (power lost mid-write) is skipped, not fatal."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def sessions(self) -> list[dict]:
        """Start and end records joined into one row per capture session (end None while open)."""
        rows: dict[str, dict] = {}
        for record in self.records():
            sid = record.get("session")
            if record.get("event") == "start":
                rows[sid] = {k: record.get(k) for k in ("session", "owner", "behalf", "resource", "reason")}
                rows[sid].update(start=record.get("wall"), end=None, frames=0, blocks=0, audio_s=0.0, seconds=0.0,
                                 why_ended=None)
            elif record.get("event") == "end" and sid in rows:
                rows[sid].update(end=record.get("wall"), seconds=record.get("seconds", 0.0),
                                 why_ended=record.get("why"))
            elif record.get("event") == "counted" and sid in rows:  # the capturing daemon's tally
                rows[sid]["frames"] += record.get("frames", 0)  # camera
                rows[sid]["blocks"] += record.get("blocks", 0)  # mic
                rows[sid]["audio_s"] = round(rows[sid]["audio_s"] + record.get("audio_s", 0.0), 3)  # mic
        return list(rows.values())
